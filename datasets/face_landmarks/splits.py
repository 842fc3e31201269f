"""Deterministic group-wise train/validation/test split (by identity or subject)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def split_groups(
    groups: Iterable[str], fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
) -> dict[str, str]:
    """Maps every group id to "train", "validation" or "test".

    Groups are ordered by the md5 of their id (a fixed pseudo-random order that does not
    depend on which other groups are present on disk or on the folder layout), then cut at
    floor(f_train * n) and floor((f_train + f_val) * n). So the 70/15/15 proportions are
    exact up to rounding, and one group never straddles two splits.
    """
    unique = sorted(set(groups), key=lambda g: (hashlib.md5(g.encode()).hexdigest(), g))
    n = len(unique)
    cut1 = int(fractions[0] * n)
    cut2 = int((fractions[0] + fractions[1]) * n)
    out = {}
    for i, g in enumerate(unique):
        out[g] = "train" if i < cut1 else ("validation" if i < cut2 else "test")
    return out
