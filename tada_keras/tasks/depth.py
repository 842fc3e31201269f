"""Single-view depth: the second main task the paper names (its §1 motivation).

Loss: the scale-invariant log loss of Eigen, Puhrsch & Fergus (NIPS 2014, Eq. 4) with their
training λ = 0.5. With d = log ŷ − log y over the n valid pixels of an image,

    L = 1/n Σ d² − λ/n² (Σ d)²  =  1/n Σ (d² − λ d d̄),   d̄ = 1/n Σ d,

so the per-pixel term ``d² − λ d d̄`` pooled over an image's valid pixels is exactly their
loss (the gradient matches too: ∂/∂d_k Σ d_i d̄ = 2 d̄ = ∂/∂d_k n d̄²). The trainer pools each
loss term over every valid pixel of the batch's examples, so images weigh by their valid
pixel count rather than equally: the only difference from the paper's per-image mean.
Chosen over an L1 on log depth because synthetic and real depth often differ in global
scale (camera intrinsics, units); λ = 0.5 keeps half of the absolute-scale term, so the
network still predicts metric depth and the standard metrics below apply.

The network predicts log depth (one channel at 1/2 input size); ``postprocess`` turns it
into metres (exp, clipped to [min_depth, max_depth]).

Evaluation (Eigen et al. 2014; the metrics every later paper reports), pooled over all
valid pixels of the split at ground-truth resolution (the prediction's log depth is
resized bilinearly): AbsRel, SqRel, RMSE, RMSE-log and δ < 1.25, 1.25², 1.25³. A pixel is
valid where the ground truth is finite and in (min_depth, max_depth] (0 = no measurement,
the project's convention). Predictions are clipped to [min_depth, max_depth] as is
standard; a **non-finite prediction** counts, in each error metric, as the worse of the two
clip limits and never as within a δ threshold, and ``nonfinite_fraction`` reports their
share, so a broken network can only make every metric worse.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tada_keras import conventions as C
from tada_keras.tasks import register
from tada_keras.tasks.base import MetricColumn, Task, float32_output, resize_to

NONFINITE_KEY = "nonfinite_fraction"
THRESHOLDS = {"d1": 1.25, "d2": 1.25 ** 2, "d3": 1.25 ** 3}


@register
class DepthTask(Task):
    """Per-pixel depth along the viewing axis (metres), ``conventions.DEPTH``.

    Args:
        si_lambda: λ of the scale-invariant loss (0: L2 on log depth; 1: fully scale
            invariant).
        min_depth / max_depth: valid ground-truth range and prediction clip (metres;
            10 m is the NYUv2 convention).
    """

    name = "depth"
    label_keys = (C.DEPTH,)
    roles = ("main", "anchor")
    columns = (
        MetricColumn("abs_rel", "AbsRel", False, 3),
        MetricColumn("sq_rel", "SqRel", False, 3),
        MetricColumn("rmse", "RMSE", False, 3),
        MetricColumn("rmse_log", "RMSE log", False, 3),
        MetricColumn("d1", "δ < 1.25", True, 3),
        MetricColumn("d2", "δ < 1.25²", True, 3),
        MetricColumn("d3", "δ < 1.25³", True, 3),
    )
    primary = "abs_rel"
    unit = ""
    caption_note = ("δ: fractions of pixels; AbsRel and SqRel are relative, RMSE in metres, "
                    "RMSE log in natural-log units.")

    def __init__(self, si_lambda: float = 0.5, min_depth: float = 1e-3,
                 max_depth: float = 10.0):
        if not 0.0 <= float(si_lambda) <= 1.0:
            raise ValueError(f"depth: si_lambda must be in [0, 1], got {si_lambda}")
        if not 0.0 < float(min_depth) < float(max_depth):
            raise ValueError(f"depth: expected 0 < min_depth < max_depth, got {min_depth}, "
                             f"{max_depth}")
        super().__init__(si_lambda=float(si_lambda), min_depth=float(min_depth),
                         max_depth=float(max_depth))
        self.si_lambda = float(si_lambda)
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)

    # --- network ------------------------------------------------------------------------
    def build_outputs(self, fine_features, mid_features):
        out = keras.layers.Conv2DTranspose(1, 4, strides=2, padding="same",
                                           name="depth")(fine_features)
        return {"depth": float32_output(out, "depth")}

    def check_labels(self, y, y_pred):
        shape = tuple(y[C.DEPTH].shape)
        if not (len(shape) == 3 or (len(shape) == 4 and shape[-1] == 1)):
            raise ValueError(f"labels['depth']: expected shape (B, H, W) of metres, got "
                             f"{shape}")

    def loss_terms(self, y, y_pred):
        gt = ops.cast(y[C.DEPTH], "float32")
        if len(gt.shape) == 4:
            gt = gt[..., 0]
        height, width = ops.shape(gt)[1], ops.shape(gt)[2]
        log_pred = resize_to(ops.cast(y_pred["depth"], "float32"), height, width)[..., 0]
        valid = ops.logical_and(ops.isfinite(gt), gt > self.min_depth)
        valid = ops.logical_and(valid, gt <= self.max_depth)
        weight = ops.cast(valid, "float32")
        safe = ops.where(valid, gt, ops.ones_like(gt))
        d = (log_pred - ops.log(safe)) * weight
        count = ops.maximum(ops.sum(weight, axis=(1, 2), keepdims=True), 1.0)
        mean = ops.sum(d, axis=(1, 2), keepdims=True) / count
        return [(ops.square(d) - self.si_lambda * d * mean, weight, 1.0)]

    # --- self-training ------------------------------------------------------------------
    def pseudo_reference(self, outputs):
        return ops.zeros_like(ops.cast(outputs["depth"], "float32")[..., 0])

    def pseudo_labels(self, outputs, keep):
        # Metres from the predicted log depth; 0 (invalid, the dataset convention) where
        # not kept. Non-finite or out-of-range predictions are invalid by loss_terms' rule.
        log_depth = ops.cast(outputs["depth"], "float32")[..., 0]
        kept = keep > 0.5
        safe = ops.where(kept, log_depth, ops.zeros_like(log_depth))
        return {C.DEPTH: ops.where(kept, ops.exp(safe), ops.zeros_like(safe))}

    def view_agreement(self, outputs_a, outputs_b, settings):
        """|log d_a - log d_b| <= log(1 + ``settings.depth_tolerance``)."""
        a = ops.cast(outputs_a["depth"], "float32")[..., 0]
        b = ops.cast(outputs_b["depth"], "float32")[..., 0]
        return ops.abs(a - b) <= float(np.log1p(settings.depth_tolerance))

    # --- data ---------------------------------------------------------------------------
    def read_dense(self, example):
        import tensorflow as tf

        if C.DEPTH not in example:
            raise ValueError("The dataset has no 'depth' feature for the depth task.")
        depth = tf.cast(example[C.DEPTH], tf.float32)
        return {C.DEPTH: depth[..., None] if depth.shape.rank == 2 else depth}

    def make_labels(self, example, dense, geometry):
        return {C.DEPTH: dense[C.DEPTH][..., 0]}

    # --- evaluation and figures ---------------------------------------------------------
    def evaluator(self):
        return DepthErrorAccumulator(self.min_depth, self.max_depth)

    def postprocess(self, outputs, size=None):
        """Depth in metres (B, h, w), clipped to [min_depth, max_depth]; with ``size`` =
        (H, W) the log depth is resized bilinearly first."""
        log_depth = np.asarray(outputs["depth"], np.float32)
        if size is not None and tuple(log_depth.shape[1:3]) != tuple(size):
            log_depth = ops.convert_to_numpy(ops.image.resize(log_depth, tuple(size),
                                                              interpolation="bilinear"))
        with np.errstate(over="ignore", invalid="ignore"):
            return np.clip(np.exp(log_depth[..., 0]), self.min_depth, self.max_depth)

    def graph_postprocess(self, outputs, resize=None):
        log_depth = ops.cast(outputs["depth"], "float32")
        if resize is not None:
            log_depth = resize(log_depth)
        return ops.clip(ops.exp(log_depth[..., 0]), self.min_depth, self.max_depth)

    def resize_prediction(self, prediction, size):
        # The log depth is resized, as ``postprocess`` does; a bilinear mix of clipped
        # values stays within the clip range.
        with np.errstate(divide="ignore"):
            log_depth = np.log(np.asarray(prediction, np.float32))[..., None]
        return self.postprocess({"depth": log_depth}, size)

    def as_outputs(self, prediction):
        with np.errstate(divide="ignore"):
            return {"depth": np.log(np.asarray(prediction, np.float32))[..., None]}

    def save_prediction(self, stem, prediction):
        """``<stem>_depth.npy`` (metres, float32) and ``<stem>_depth.png`` (colour map,
        near = bright, scaled to the image's own range)."""
        from matplotlib import colormaps
        from PIL import Image

        paths = super().save_prediction(stem, prediction)
        log_depth = np.log(np.asarray(prediction, np.float64))
        low, high = float(log_depth.min()), float(log_depth.max())
        scaled = (log_depth - low) / max(high - low, 1e-12)
        rgb = (colormaps["magma_r"](scaled)[..., :3] * 255).round().astype(np.uint8)
        Image.fromarray(rgb).save(f"{stem}_depth.png")
        return [f"{stem}_depth.png"] + paths

    def figure_rows(self, prediction, labels):
        gt = np.asarray(labels[C.DEPTH], np.float32)
        if gt.ndim == 3:
            gt = gt[..., 0]
        valid = np.isfinite(gt) & (gt > self.min_depth) & (gt <= self.max_depth)
        pred = self.postprocess({"depth": np.log(prediction)[None, ..., None]}, gt.shape)[0]
        low, high = ((float(gt[valid].min()), float(gt[valid].max())) if valid.any()
                     else (self.min_depth, self.max_depth))
        rel = np.where(valid, np.abs(pred - gt) / np.where(valid, gt, 1.0), np.nan)
        mean = float(np.nanmean(rel)) if valid.any() else float("nan")
        return [
            {"title": "ground truth", "image": np.where(valid, gt, np.nan), "cmap": "magma_r",
             "vmin": low, "vmax": high},
            {"title": "prediction", "image": pred, "cmap": "magma_r", "vmin": low,
             "vmax": high},
            {"title": f"error, AbsRel {mean:.3f}", "image": rel, "cmap": "inferno",
             "vmin": 0.0, "vmax": 0.5, "colorbar": "|pred − gt| / gt"},
        ]

    def output_space(self, outputs):
        return ops.cast(outputs["depth"], "float32")  # log depth


def _pixel_errors(p, g):
    return {"abs_rel": np.abs(p - g) / g, "sq_rel": np.square(p - g) / g,
            "sq": np.square(p - g), "sq_log": np.square(np.log(p) - np.log(g))}


class DepthErrorAccumulator:
    """Streaming pooled depth metrics (float64 sums over every valid pixel of the split)."""

    def __init__(self, min_depth: float = 1e-3, max_depth: float = 10.0):
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.sums = {k: 0.0 for k in ("abs_rel", "sq_rel", "sq", "sq_log", *THRESHOLDS)}
        self.count = 0
        self.nonfinite = 0

    def update(self, outputs, labels):
        gt = np.asarray(labels[C.DEPTH], np.float64)
        if gt.ndim == 4:
            gt = gt[..., 0]
        log_depth = np.asarray(outputs["depth"], np.float32)
        if log_depth.shape[1:3] != gt.shape[1:3]:
            log_depth = ops.convert_to_numpy(ops.image.resize(
                log_depth, gt.shape[1:3], interpolation="bilinear"))
        self.update_metres(np.exp(log_depth[..., 0].astype(np.float64)), gt)

    def update_metres(self, pred, gt):
        """``pred`` and ``gt`` (N, H, W) in metres at the same resolution."""
        pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
        if pred.shape != gt.shape:
            raise ValueError(f"depth: prediction {pred.shape} and ground truth {gt.shape} "
                             "differ in shape")
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(gt) & (gt > self.min_depth) & (gt <= self.max_depth)
        g, p = gt[valid], pred[valid]
        broken = ~np.isfinite(p)
        p = np.clip(np.where(broken, 1.0, p), self.min_depth, self.max_depth)
        errors = _pixel_errors(p, g)
        for limit in (self.min_depth, self.max_depth):  # the worse limit, per metric
            worst = _pixel_errors(np.full_like(g, limit), g)
            errors = {k: np.where(broken, np.maximum(v, worst[k]), v)
                      for k, v in errors.items()}
        ratio = np.where(broken, np.inf, np.maximum(p / g, g / p))
        for key, value in errors.items():
            self.sums[key] += float(np.sum(value))
        for key, threshold in THRESHOLDS.items():
            self.sums[key] += float(np.sum(ratio < threshold))
        self.count += int(g.size)
        self.nonfinite += int(broken.sum())

    def result(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("depth: no valid ground-truth pixel to evaluate (every depth "
                             f"is 0, non-finite or outside ({self.min_depth}, "
                             f"{self.max_depth}] m)")
        n = self.count
        out = {"abs_rel": self.sums["abs_rel"] / n, "sq_rel": self.sums["sq_rel"] / n,
               "rmse": float(np.sqrt(self.sums["sq"] / n)),
               "rmse_log": float(np.sqrt(self.sums["sq_log"] / n))}
        out.update({k: self.sums[k] / n for k in THRESHOLDS})
        out[NONFINITE_KEY] = self.nonfinite / n
        return out


def depth_error_stats(pred, gt, min_depth=1e-3, max_depth=10.0) -> dict[str, float]:
    """The pooled metrics of (N, H, W) predictions in metres against ground truth."""
    acc = DepthErrorAccumulator(min_depth, max_depth)
    acc.update_metres(pred, gt)
    return acc.result()

