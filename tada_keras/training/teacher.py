"""Self-training with a mean teacher (issue 28; docs/self_training.md).

The teacher θ' is an exponential moving average of the whole network θ (every variable of
the encoder and the head: kernels, biases, batch-norm scales and moving statistics):

    θ'_t = θ'_{t-1} + (1 - m) (θ_{t-1} - θ'_{t-1}),    θ'_0 = θ_0 (the phase's start),

where θ_{t-1} is the student after optimizer step t-1. The update runs at the start of
train step t, inside ``TadaModel.compute_loss`` (DAFormer's order: ``_update_ema`` before
the teacher predicts), so it is part of Keras's own train step on every backend: the
teacher's variables are non-trainable variables of the model, which JAX's stateless step
threads through like batch-norm statistics. Written as ``θ' + (1 - m)(θ - θ')``, a
variable the student does not change (a frozen head) stays bit-identical in the teacher.
After N steps the teacher holds the student up to step N-1 (the last update would happen
at step N+1); a run's last step changes it by (1 - m) of one step at most.

Batch-norm statistics: the teacher predicts in inference mode with its *own* moving mean
and variance, which are the EMA of the student's moving statistics (themselves a momentum
0.99 average of batch statistics). The student's statistics are read after step t's
forward pass updated them (the optimizer does not own them), so they enter one step
earlier than the trainable weights (tests/test_self_training.py checks this closed form).
The frozen head of HeadFreeze phase 2 (weights and statistics) stays bit-identical.

The pseudo-label loss L_Tp (group ``target_main_pseudo``) is the main task's own loss
between the student's prediction on the strong target view (the batch image) and the
teacher's prediction on the weak view (``labels[conventions.PSEUDO_WEAK]``), gradients
stopped at the teacher, pixels outside the confidence mask set invalid in the pseudo-label
dict the task's ``loss_terms`` reads (so they contribute exactly zero). Its weight is
μ · r(t) with the mean-teacher ramp r(t) = exp(-5 (1 - min(t / T, 1))²) over the first
T = ``rampup`` × (the phase's steps) steps (r = 1 when T = 0).

Confidence masks (``SelfTraining.mask``):

* ``none``: every pixel with a finite teacher prediction;
* ``consistency``: the teacher's predictions on two weak views agree (the main task's
  ``view_agreement``: within τ degrees for normals, a relative tolerance for depth);
* ``anchor``: the teacher's anchor prediction on the weak view agrees with the target's
  anchor label (the anchor task's ``anchor_agreement``: the labelled class for
  segmentation, near a visible landmark it locates for keypoints);
* ``both``: the product of the two.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
from keras import ops

from tada_keras import conventions as C
from tada_keras.training.tada_model import pooled_mean

MASKS = ("none", "consistency", "anchor", "both")


@dataclasses.dataclass(frozen=True)
class SelfTraining:
    """Settings of the mean teacher and its pseudo-labels (``--teacher_momentum``,
    ``--pseudo_*`` flags).

    Args:
        momentum: m of the EMA (0: the teacher is the previous step's student).
        rampup: fraction of a pseudo phase's steps over which μ ramps up (0: none).
        mask: ``none``, ``consistency``, ``anchor`` or ``both`` (module doc).
        tau: normals: largest angle (degrees) between the two weak views' predictions.
        depth_tolerance: depth: largest relative difference of the two views' depths.
        anchor_radius: keypoints: radius (fraction of the image size) around a visible
            landmark that the teacher locates within the same radius.
        mask_ratio: MIC-style patch masking of the strong view (fraction of patches).
        patch_size: side of a masked patch, in input pixels.
    """

    momentum: float = 0.999
    rampup: float = 0.2
    mask: str = "none"
    tau: float = 10.0
    depth_tolerance: float = 0.1
    anchor_radius: float = 0.05
    mask_ratio: float = 0.0
    patch_size: int = 32

    def __post_init__(self):
        if self.mask not in MASKS:
            raise ValueError(f"--pseudo_mask={self.mask!r}: expected one of {list(MASKS)}")
        checks = {"teacher_momentum": (self.momentum, 0.0 <= self.momentum < 1.0, "[0, 1)"),
                  "pseudo_rampup": (self.rampup, 0.0 <= self.rampup <= 1.0, "[0, 1]"),
                  "pseudo_tau": (self.tau, 0.0 < self.tau < 180.0, "(0, 180)"),
                  "pseudo_depth_tolerance": (self.depth_tolerance,
                                             self.depth_tolerance > 0, "(0, inf)"),
                  "pseudo_anchor_radius": (self.anchor_radius, self.anchor_radius > 0,
                                           "(0, inf)"),
                  "pseudo_mask_ratio": (self.mask_ratio, 0.0 <= self.mask_ratio < 1.0,
                                        "[0, 1)"),
                  "pseudo_patch_size": (self.patch_size, self.patch_size >= 1, ">= 1")}
        for flag, (value, ok, interval) in checks.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and ok):
                raise ValueError(f"--{flag}={value}: expected a value in {interval}")

    @property
    def second_view(self) -> bool:
        return self.mask in ("consistency", "both")

    @property
    def uses_anchor_labels(self) -> bool:
        return self.mask in ("anchor", "both")


def network_variables(model) -> list:
    """Every variable of the TADA network itself (encoder and head), in a fixed order;
    not those of an attached teacher or adaptation."""
    return list(model.encoder.weights) + list(model.head.weights)


class MeanTeacher(keras.layers.Layer):
    """The EMA teacher of a ``TadaModel``: a copy of its network (``network``, never
    trainable), the phase's step counter and the kept-fraction metric ``pseudo_kept``.

    Attached with ``TadaModel.attach_teacher`` (which starts it from the student's current
    weights); its variables are non-trainable variables of the student, so they are in
    the student's checkpoints and ``save_weights`` files while it is attached, and JAX's
    stateless step carries them. ``TadaModel.detach_teacher`` removes it (the exported
    model never holds it).
    """

    def __init__(self, student, settings: SelfTraining, rampup_steps: int = 0,
                 phase: str = "", **kwargs):
        super().__init__(name=kwargs.pop("name", "mean_teacher"), trainable=False, **kwargs)
        self.settings = settings
        self.rampup_steps = int(rampup_steps)
        self.phase = phase
        # === Teacher network (same architecture, its own variables) ===
        # Under a name scope: its variables' paths ("teacher/...") differ from the
        # student's. PyTorch's Keras layers index their torch parameters by path, and a
        # duplicate would hide a student parameter from zero_grad (gradients accumulate).
        with keras.name_scope("teacher"):
            self.network = type(student).from_config(dict(student.get_config(),
                                                          name="teacher"))
        self.network.trainable = False
        self.step = self.add_weight(shape=(), dtype="float32", initializer="zeros",
                                    trainable=False, name="step")
        self.kept = keras.metrics.Mean(name="pseudo_kept")
        self.built = True
        self.copy_from(student)

    @property
    def metrics(self):
        # Only the kept fraction: the teacher network's own loss trackers never log.
        return [self.kept]

    def _pairs(self, student):
        teacher, own = network_variables(self.network), network_variables(student)
        if len(teacher) != len(own) or any(tuple(t.shape) != tuple(s.shape)
                                           for t, s in zip(teacher, own)):
            raise ValueError("MeanTeacher: the teacher's variables do not match the "
                             "student's (was the student rebuilt after attaching?)")
        return list(zip(teacher, own))

    def copy_from(self, student) -> None:
        """θ' ← θ (eagerly, outside a train step). Through numpy: a copy, never the
        student's buffer (JAX's step donates each state buffer once)."""
        for t, s in self._pairs(student):
            t.assign(np.array(ops.convert_to_numpy(s)))
        self.step.assign(0.0)

    def advance(self, student) -> None:
        """One EMA step θ' ← θ' + (1 - m)(θ - θ') and step += 1 (inside the train step;
        no gradient flows through it)."""
        rate = 1.0 - float(self.settings.momentum)
        for t, s in self._pairs(student):
            value = ops.stop_gradient(ops.convert_to_tensor(s))
            if "int" in str(t.dtype) or "bool" in str(t.dtype):
                t.assign(value)
            else:
                t.assign(t + ops.cast(rate, t.dtype) * (ops.cast(value, t.dtype) - t))
        self.step.assign(self.step + 1.0)

    def ramp(self):
        """r(t) = exp(-5 (1 - min(t / T, 1))²) at the current step t (1 when T = 0)."""
        if self.rampup_steps <= 0:
            return ops.convert_to_tensor(1.0, "float32")
        progress = ops.minimum(ops.convert_to_tensor(self.step) / self.rampup_steps, 1.0)
        return ops.exp(-5.0 * ops.square(1.0 - progress))

    def predict_views(self, y) -> tuple:
        """The teacher's outputs on the weak view (and the second weak view when the mask
        needs it), gradients stopped."""
        def run(images):
            out = self.network(ops.cast(images, "float32"), training=False)
            return {k: ops.stop_gradient(v) for k, v in out.items()}

        first = run(y[C.PSEUDO_WEAK])
        second = run(y[C.PSEUDO_WEAK2]) if self.settings.second_view else None
        return first, second


def confidence_mask(settings: SelfTraining, main, anchor, y, teacher, teacher2=None):
    """(B, h, w) float32 in {0, 1} at the teacher's output resolution: the pixels whose
    pseudo-label is kept (before the pseudo-label's own validity)."""
    reference = main.pseudo_reference(teacher)
    keep = ops.ones_like(reference)
    if settings.second_view:
        if teacher2 is None:
            raise ValueError(f"--pseudo_mask={settings.mask} needs the second weak view "
                             f"(labels[{C.PSEUDO_WEAK2!r}])")
        keep = keep * ops.cast(main.view_agreement(teacher, teacher2, settings), "float32")
    if settings.uses_anchor_labels:
        if anchor is None or not anchor.has_labels(y):
            raise ValueError(f"--pseudo_mask={settings.mask} needs the target's anchor "
                             "labels in the batch")
        agree = ops.cast(anchor.anchor_agreement(y, teacher, settings), "float32")
        present = y.get(f"{anchor.name}_present")
        if present is not None:
            agree = agree * ops.reshape(ops.cast(present, "float32"), (-1, 1, 1))
        keep = keep * agree
    return keep


def pseudo_loss(settings: SelfTraining, main, anchor, y, y_pred, teacher, teacher2=None):
    """``(L_Tp, kept)``: the main task's loss between the student's outputs ``y_pred`` and
    the pseudo-labels from the teacher's outputs, pooled over the target examples' kept
    pixels; ``kept`` is the fraction of the target pixels with a usable pseudo-label."""
    keep = confidence_mask(settings, main, anchor, y, teacher, teacher2)
    pseudo = main.pseudo_labels(teacher, keep)
    domain = ops.reshape(ops.cast(y[C.DOMAIN], "int32"), (-1,))
    selected = ops.cast(domain == C.DOMAIN_TARGET, "float32")
    total = ops.convert_to_tensor(0.0, "float32")
    kept = None
    for loss, weight, coefficient in main.loss_terms(pseudo, y_pred):
        total = total + coefficient * pooled_mean(loss, weight, selected)
        if kept is None:
            w = ops.cast(weight, "float32") * ops.reshape(selected, (-1, 1, 1))
            pixels = ops.sum(ops.ones_like(w) * ops.reshape(selected, (-1, 1, 1)))
            kept = ops.sum(w) / ops.maximum(pixels, 1.0)
    return total, kept
