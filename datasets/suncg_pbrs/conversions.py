"""Pure conversions for SUNCG physically-based renderings (PBRS, Zhang et al. 2017).

numpy and strings only, so tests feed known geometry straight in. The project's normal
frame (``tada_keras.conventions``): x right, y up, z toward the camera, unit length,
zeros where invalid.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

# ``_norm_camera.png`` channels (verified in yindaz/pbrs matlab/convert_camera_normal.m,
# which builds R_c2w = [towards × up, towards, up]): R = right, G = forward (into the
# scene), B = up; n = v / max · 2 − 1. Output axis k = sign · stored channel i, so
# x = R, y = B, z = −G.
PBRS_NORMAL_AXES = "+0,+2,-1"

# convert_camera_normal.m marks |‖n‖² − 1| > 0.1 invalid; we apply the same test.
UNIT_NORM_TOLERANCE = 0.1

# Paper split (90/5/5), by house.
SPLIT_PERCENTS = (("train", 90), ("validation", 5), ("test", 5))

_GOODLIST_LINE = re.compile(r"^([0-9A-Za-z_\-]+)/([0-9A-Za-z_\-]+)$")


def parse_axes(spec: str) -> tuple[tuple[int, float], ...]:
    """Parses ``"+0,+2,-1"`` into ((channel, sign), ...) for output axes x, y, z."""
    tokens = [t.strip() for t in str(spec).split(",")]
    ok = len(tokens) == 3 and all(len(t) == 2 and t[0] in "+-" and t[1] in "012" for t in tokens)
    if not ok or sorted(int(t[1]) for t in tokens) != [0, 1, 2]:
        raise ValueError(f"normal_axes {spec!r}: expected a signed permutation like '+0,+2,-1'")
    return tuple((int(t[1]), 1.0 if t[0] == "+" else -1.0) for t in tokens)


def decode_pbrs_normals(
    png: np.ndarray, valid_png: np.ndarray | None = None, axes: str = PBRS_NORMAL_AXES
):
    """``_norm_camera.png`` (uint16, or uint8 in some copies) [+ ``_valid.png``] ->
    (float32 unit normals in the project frame, zeros where invalid; bool mask).

    The scale follows the array's dtype (65535 or 255), so 8-bit copies decode too.
    """
    png = np.asarray(png)
    if png.ndim != 3 or png.shape[-1] < 3:
        raise ValueError(f"normal image must be (H, W, 3), got shape {png.shape}")
    scales = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
    if png.dtype not in scales:
        raise ValueError(f"normal image must be uint8 or uint16, got {png.dtype}")
    stored = png[..., :3].astype(np.float32) / scales[png.dtype] * 2.0 - 1.0
    vectors = np.stack([sign * stored[..., c] for c, sign in parse_axes(axes)], axis=-1)
    sq_norm = np.sum(vectors * vectors, axis=-1)
    mask = np.abs(sq_norm - 1.0) <= UNIT_NORM_TOLERANCE
    if valid_png is not None:
        valid_png = np.asarray(valid_png)
        if valid_png.shape[:2] != png.shape[:2]:
            raise ValueError(f"valid mask shape {valid_png.shape} != normals {png.shape}")
        mask &= (valid_png > 0) if valid_png.ndim == 2 else np.any(valid_png > 0, axis=-1)
    norm = np.sqrt(np.maximum(sq_norm, 1e-12))[..., None]
    normals = np.where(mask[..., None], vectors / norm, 0.0).astype(np.float32)
    return normals, mask


def check_category40(category: np.ndarray) -> np.ndarray:
    """``_category40.png`` -> uint8 (H, W) NYU-40 ids (0 = void); ValueError if not 0..40."""
    category = np.asarray(category)
    if category.ndim == 3 and category.shape[-1] == 1:
        category = category[..., 0]
    if category.ndim != 2 or category.dtype.kind not in "ui":
        raise ValueError(
            f"category image must be single-channel integer, got {category.shape} {category.dtype}"
        )
    if category.size and int(category.max()) > 40:
        raise ValueError(f"category id {int(category.max())} is not an NYU-40 id (0..40)")
    return category.astype(np.uint8)


def parse_goodlist_line(line: str, line_number: int = 0):
    """``"<house>/<view>"`` -> (house, view); None for a blank line; ValueError otherwise."""
    text = line.strip()
    if not text:
        return None
    match = _GOODLIST_LINE.match(text)
    if not match:
        raise ValueError(f"line {line_number}: {text!r} is not '<house>/<view>'")
    return match.group(1), match.group(2)


def _digest(key: str) -> int:
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:12], 16)


def split_of_house(house: str, percents=SPLIT_PERCENTS) -> str:
    """Deterministic split of a house id (every view of a house goes to the same split)."""
    bucket = _digest(house) % 100
    total = 0
    for name, percent in percents:
        total += percent
        if bucket < total:
            return name
    raise ValueError(f"split percents {percents} do not add up to 100")


def subset_rank(house: str, view: str) -> int:
    """Order used to pick a ``max_examples`` subset: stable, spread over all houses."""
    return _digest(f"{house}/{view}")


def select_subset(views, max_examples: int | None) -> set:
    """The ``max_examples`` views of lowest subset_rank (all views when None)."""
    views = list(views)
    if max_examples is None or max_examples >= len(views):
        return set(views)
    return set(sorted(views, key=lambda hv: subset_rank(*hv))[:max_examples])
