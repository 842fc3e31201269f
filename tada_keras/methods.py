"""The compared methods as data: which losses are active, with which weights, per phase.

Loss groups (paper Eq. 1-3, plus the oracle's target main loss):

==============  ============================  =========
group           meaning                        symbol
==============  ============================  =========
source_main     main task on source images     L_Sm
source_anchor   anchor task on source images   L_Sa
target_anchor   anchor task on target images   L_Ta
target_main     main task on target images     L_Tm (oracle only)
==============  ============================  =========
"""

from __future__ import annotations

import dataclasses

LOSS_GROUPS = ("source_main", "source_anchor", "target_anchor", "target_main")


@dataclasses.dataclass(frozen=True)
class LossWeights:
    source_main: float = 0.0
    source_anchor: float = 0.0
    target_anchor: float = 0.0
    target_main: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @property
    def uses_target_labels(self) -> bool:
        return self.target_anchor > 0 or self.target_main > 0

    @property
    def uses_anchor(self) -> bool:
        return self.source_anchor > 0 or self.target_anchor > 0


@dataclasses.dataclass(frozen=True)
class Phase:
    """One training phase: its loss weights and whether the head trains."""

    name: str
    weights: LossWeights
    head_trainable: bool = True


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    phases: tuple[Phase, ...]
    description: str = ""


def _mtl(anchor_weight, src=False, tgt=False, tgt_main=False):
    return LossWeights(source_main=1.0,
                       source_anchor=anchor_weight if src else 0.0,
                       target_anchor=anchor_weight if tgt else 0.0,
                       target_main=1.0 if tgt_main else 0.0)


def get_method(name: str, anchor_weight: float = 1.0) -> Method:
    """Returns the method ``name`` with λ = ``anchor_weight`` on the anchor losses."""
    lam = float(anchor_weight)
    if not lam >= 0:
        raise ValueError(f"anchor_weight (λ) must be >= 0, got {anchor_weight}")
    single = {
        "baseline": (_mtl(lam), "L_Sm: main task on source only"),
        "mtl_src": (_mtl(lam, src=True), "MTL(+src anchor), Eq. 4: L_Sm + λL_Sa"),
        "mtl_tgt": (_mtl(lam, tgt=True), "MTL(+tgt anchor), Eq. 5: L_Sm + λL_Ta"),
        "mtl_both": (_mtl(lam, src=True, tgt=True),
                     "MTL(+both anchor), Eq. 6: L_Sm + λL_Sa + λL_Ta"),
        "oracle": (_mtl(lam, src=True, tgt=True, tgt_main=True),
                   "Oracle: Eq. 6 plus the target main task L_Tm"),
    }
    if name in single:
        weights, desc = single[name]
        return Method(name, (Phase("train", weights),), desc)
    if name == "headfreeze":
        return Method(name, (
            Phase("phase1", _mtl(lam, src=True), head_trainable=True),
            Phase("phase2", _mtl(lam, src=True, tgt=True), head_trainable=False),
        ), "HeadFreeze: MTL(+src) to near convergence, then freeze the head and train "
           "the encoder with MTL(+both)")
    raise ValueError(f"Unknown method {name!r}; expected one of {list(METHOD_NAMES)}.")


METHOD_NAMES = ("baseline", "mtl_src", "mtl_tgt", "mtl_both", "headfreeze", "oracle")
