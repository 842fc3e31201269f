"""The compared methods as data: which losses are active, with which weights, per phase.

Loss groups (paper Eq. 1-3, plus the oracle's target main loss):

==============  ============================  =========
group           meaning                        symbol
==============  ============================  =========
source_main     main task on source images     L_Sm
source_anchor   anchor task on source images   L_Sa
target_anchor   anchor task on target images   L_Ta
target_main     main task on target images     L_Tm (oracle only)
target_main_    main task on target images     L_Tp (self-training; no target
pseudo          against the EMA teacher's      main labels are read)
                pseudo-labels, gated by a
                confidence mask
==============  ============================  =========

``target_main_pseudo`` is the self-training group (``tada_keras.training.teacher``,
docs/self_training.md): the student's main-task prediction on a strongly augmented target
view against the mean teacher's prediction on the weak view, through the main task's own
loss; its weight is ramped up over the first part of the phase.
"""

from __future__ import annotations

import dataclasses

LOSS_GROUPS = ("source_main", "source_anchor", "target_anchor", "target_main",
               "target_main_pseudo")


@dataclasses.dataclass(frozen=True)
class LossWeights:
    source_main: float = 0.0
    source_anchor: float = 0.0
    target_anchor: float = 0.0
    target_main: float = 0.0
    target_main_pseudo: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @property
    def uses_target_labels(self) -> bool:
        return self.target_anchor > 0 or self.target_main > 0

    @property
    def uses_pseudo(self) -> bool:
        """Self-training: a mean teacher and pseudo-labels on target images."""
        return self.target_main_pseudo > 0

    @property
    def uses_target_images(self) -> bool:
        return self.uses_target_labels or self.uses_pseudo

    @property
    def uses_anchor(self) -> bool:
        return self.source_anchor > 0 or self.target_anchor > 0


@dataclasses.dataclass(frozen=True)
class Phase:
    """One training phase: its loss weights, whether the head trains, and (once a run's
    step budget is known, see ``RunConfig.resolved_method``) its share of the steps.

    Which data it sees follows from the weights: target images when a target loss is on
    (``weights.uses_target_labels``; with ``--bn_exposure`` always), anchor labels when
    an anchor loss is on (``weights.uses_anchor``)."""

    name: str
    weights: LossWeights
    head_trainable: bool = True
    steps: int | None = None


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    phases: tuple[Phase, ...]
    description: str = ""

    def with_steps(self, steps: dict[str, int]) -> Method:
        """This method with each phase's share of the steps set (``{phase: steps}``)."""
        return dataclasses.replace(self, phases=tuple(
            dataclasses.replace(p, steps=int(steps[p.name])) for p in self.phases))

    @property
    def steps(self) -> dict[str, int | None]:
        return {p.name: p.steps for p in self.phases}

    def as_dict(self) -> dict:
        """JSON form (``config.json``'s ``resolved_method``); ``from_dict`` reads it."""
        return {"name": self.name, "description": self.description,
                "phases": [{"name": p.name, "weights": p.weights.as_dict(),
                            "head_trainable": p.head_trainable, "steps": p.steps}
                           for p in self.phases]}

    @classmethod
    def from_dict(cls, data: dict) -> Method:
        return cls(data["name"], tuple(
            Phase(p["name"], LossWeights(**p["weights"]), bool(p["head_trainable"]),
                  None if p.get("steps") is None else int(p["steps"]))
            for p in data["phases"]), data.get("description", ""))


def _mtl(anchor_weight, src=False, tgt=False, tgt_main=False, pseudo=0.0):
    return LossWeights(source_main=1.0,
                       source_anchor=anchor_weight if src else 0.0,
                       target_anchor=anchor_weight if tgt else 0.0,
                       target_main=1.0 if tgt_main else 0.0,
                       target_main_pseudo=pseudo)


def get_method(name: str, anchor_weight: float = 1.0, pseudo_weight: float = 1.0) -> Method:
    """Returns the method ``name`` with λ = ``anchor_weight`` on the anchor losses and
    μ = ``pseudo_weight`` on the self-training loss (``*_st`` methods, before its ramp-up)."""
    lam = float(anchor_weight)
    if not lam >= 0:
        raise ValueError(f"anchor_weight (λ) must be >= 0, got {anchor_weight}")
    mu = float(pseudo_weight)
    if not mu > 0:
        raise ValueError(f"pseudo_weight (μ) must be > 0, got {pseudo_weight}")
    single = {
        "baseline": (_mtl(lam), "L_Sm: main task on source only"),
        "mtl_src": (_mtl(lam, src=True), "MTL(+src anchor), Eq. 4: L_Sm + λL_Sa"),
        "mtl_tgt": (_mtl(lam, tgt=True), "MTL(+tgt anchor), Eq. 5: L_Sm + λL_Ta"),
        "mtl_both": (_mtl(lam, src=True, tgt=True),
                     "MTL(+both anchor), Eq. 6: L_Sm + λL_Sa + λL_Ta"),
        "oracle": (_mtl(lam, src=True, tgt=True, tgt_main=True),
                   "Oracle: Eq. 6 plus the target main task L_Tm"),
        "self_training": (_mtl(lam, pseudo=mu),
                          "Self-training: L_Sm + μ r(t) L_Tp (EMA teacher's pseudo-labels)"),
        "mtl_both_st": (_mtl(lam, src=True, tgt=True, pseudo=mu),
                        "MTL(+both) with self-training: L_Sm + λL_Sa + λL_Ta + μ r(t) L_Tp"),
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
    if name == "headfreeze_st":
        return Method(name, (
            Phase("phase1", _mtl(lam, src=True), head_trainable=True),
            Phase("phase2", _mtl(lam, src=True, tgt=True, pseudo=mu), head_trainable=False),
        ), "HeadFreeze with self-training: phase 1 as HeadFreeze; phase 2 freezes the head "
           "and trains the encoder with MTL(+both) + μ r(t) L_Tp, the teacher starting "
           "from phase 1's final weights")
    raise ValueError(f"Unknown method {name!r}; expected one of {list(METHOD_NAMES)}.")


METHOD_NAMES = ("baseline", "mtl_src", "mtl_tgt", "mtl_both", "headfreeze", "oracle",
                "self_training", "mtl_both_st", "headfreeze_st")
