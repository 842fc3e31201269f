"""Evaluation metrics: pooled angular error of normals, mIoU, keypoint NME.

Angular statistics follow the literature's consensus (MarrRevisited, FrameNet, Bae et
al.): predictions are resized to the ground-truth resolution and renormalised, the error
is ``arccos(clip(<pred, gt>, -1, 1))`` in degrees, and every statistic is **pooled over
all valid pixels of the split**, never a mean of per-image means.

Three forms give the same numbers:

* ``normal_error_stats(pred, gt, mask)``: exact, numpy, for arrays that fit in memory;
* ``NormalErrorAccumulator``: streaming numpy (float64 sums, a 0.005° histogram for the
  median, which is then within 0.005° of the exact one; thresholds are exact);
* ``AngularErrorMetric``: the same histogram as a ``keras.metrics.Metric`` for
  ``model.evaluate()``.

**Non-finite predictions** (NaN/inf, e.g. from a diverged network) at a valid ground-truth
pixel count as the worst error, 180°, in every form, and ``nonfinite_fraction`` reports the
share of valid pixels they hold: a broken prediction can only make every statistic worse.
(Dropping them instead would let a model that outputs NaN score better.)
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

THRESHOLDS = {"a11_25": 11.25, "a22_5": 22.5, "a30": 30.0}
STAT_KEYS = ("mean", "median", "rmse", "a11_25", "a22_5", "a30")
NONFINITE_KEY = "nonfinite_fraction"
NONFINITE_ERROR = 180.0  # degrees given to a non-finite prediction at a valid pixel
BIN_WIDTH = 0.005  # degrees; 11.25, 22.5 and 30 are bin edges
NUM_BINS = int(round(180.0 / BIN_WIDTH))


def _check_normal_inputs(pred, gt, mask):
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.ndim != 4 or pred.shape[-1] != 3:
        raise ValueError(f"pred: expected shape (N, H, W, 3), got {pred.shape}")
    if gt.ndim != 4 or gt.shape[-1] != 3:
        raise ValueError(f"gt: expected shape (N, H, W, 3), got {gt.shape}")
    if pred.shape[0] != gt.shape[0]:
        raise ValueError(f"pred and gt hold {pred.shape[0]} and {gt.shape[0]} images")
    mask = np.ones(gt.shape[:3], bool) if mask is None else np.asarray(mask).astype(bool)
    if mask.shape != gt.shape[:3]:
        raise ValueError(f"mask: expected shape {gt.shape[:3]}, got {mask.shape}")
    return pred, gt, mask


def resize_normals(pred, height, width):
    """Bilinearly resizes (N, h, w, 3) predictions to (height, width) and renormalises."""
    pred = np.asarray(pred, np.float32)
    if pred.shape[1:3] != (height, width):
        pred = ops.convert_to_numpy(ops.image.resize(pred, (height, width),
                                                     interpolation="bilinear"))
    norm = np.linalg.norm(pred, axis=-1, keepdims=True)
    return pred / np.maximum(norm, 1e-12)


def angular_errors(pred, gt, mask=None, return_nonfinite=False):
    """Per-pixel angular errors (degrees) of the valid pixels, as a flat float64 array.

    A pixel is valid if ``mask`` is set and the ground truth is finite and non-zero; a
    non-finite prediction there gets ``NONFINITE_ERROR`` (180°). With
    ``return_nonfinite``, also returns how many of the errors are such pixels.
    """
    pred, gt, mask = _check_normal_inputs(pred, gt, mask)
    with np.errstate(invalid="ignore"):
        pred = resize_normals(pred, gt.shape[1], gt.shape[2]).astype(np.float64)
    gt = gt.astype(np.float64)
    finite = np.all(np.isfinite(gt), axis=-1)
    gt = np.where(finite[..., None], gt, 0.0)
    length = np.linalg.norm(gt, axis=-1)
    valid = mask & finite & (length > 1e-3)
    broken = ~np.all(np.isfinite(pred[valid]), axis=-1)
    safe = np.where(broken[:, None], 0.0, pred[valid])
    cos = np.sum(safe * gt[valid], axis=-1) / length[valid]
    errors = np.where(broken, NONFINITE_ERROR, np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    return (errors, int(broken.sum())) if return_nonfinite else errors


def stats_from_errors(errors, nonfinite=0) -> dict[str, float]:
    """Pooled statistics of ``errors``; ``nonfinite`` of them came from non-finite
    predictions (see the module docstring)."""
    errors = np.asarray(errors, np.float64)
    if errors.size == 0:
        raise ValueError("No valid pixels: every ground-truth pixel is masked out.")
    out = {"mean": float(errors.mean()), "median": float(np.median(errors)),
           "rmse": float(np.sqrt(np.mean(errors ** 2)))}
    for key, threshold in THRESHOLDS.items():
        out[key] = float(np.mean(errors < threshold))
    out[NONFINITE_KEY] = float(nonfinite / errors.size)
    return out


def normal_error_stats(pred, gt, mask=None) -> dict[str, float]:
    """Pooled angular error statistics.

    Args:
        pred: (N, h, w, 3) predicted normals (any length; resized to gt size).
        gt: (N, H, W, 3) ground-truth normals in the same frame.
        mask: (N, H, W) validity; None means all pixels.
    Returns:
        ``mean``, ``median``, ``rmse`` in degrees and ``a11_25``, ``a22_5``, ``a30``
        fractions of pixels under the threshold.
    """
    return stats_from_errors(*angular_errors(pred, gt, mask, return_nonfinite=True))


def _bin_index(errors):
    return np.clip(np.floor(errors / BIN_WIDTH), 0, NUM_BINS - 1).astype(np.int64)


def _stats_from_histogram(hist, total, sum_err, sum_sq, nonfinite):
    if total <= 0:
        raise ValueError("No valid pixels: every ground-truth pixel is masked out.")
    cumulative = np.cumsum(hist)
    half = 0.5 * total
    b = int(np.searchsorted(cumulative, half))
    before = cumulative[b - 1] if b > 0 else 0.0
    inside = max(hist[b], 1e-12)
    median = (b + (half - before) / inside) * BIN_WIDTH
    out = {"mean": sum_err / total, "median": float(median),
           "rmse": float(np.sqrt(sum_sq / total))}
    for key, threshold in THRESHOLDS.items():
        out[key] = float(cumulative[int(round(threshold / BIN_WIDTH)) - 1] / total)
    out[NONFINITE_KEY] = nonfinite / total
    return {k: float(v) for k, v in out.items()}


class NormalErrorAccumulator:
    """Streaming pooled angular statistics over batches (numpy)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.hist = np.zeros(NUM_BINS, np.int64)
        self.count = 0
        self.sum_err = 0.0
        self.sum_sq = 0.0
        self.nonfinite = 0

    def update(self, pred, gt, mask=None):
        errors, nonfinite = angular_errors(pred, gt, mask, return_nonfinite=True)
        self.hist += np.bincount(_bin_index(errors), minlength=NUM_BINS)
        self.count += errors.size
        self.nonfinite += nonfinite
        self.sum_err += float(errors.sum())
        self.sum_sq += float(np.square(errors).sum())

    def result(self) -> dict[str, float]:
        return _stats_from_histogram(self.hist.astype(np.float64), self.count,
                                     self.sum_err, self.sum_sq, self.nonfinite)


@keras.saving.register_keras_serializable(package="tada_keras")
class AngularErrorMetric(keras.metrics.Metric):
    """Streaming pooled angular error for ``evaluate()``; ``result()`` is the mean.

    ``update_state(y_true, y_pred, sample_weight)`` takes normals (B, H, W, 3), predictions
    at any resolution (resized to y_true's and renormalised) and the validity mask
    (B, H, W) as ``sample_weight``. ``all_results()`` returns every statistic.
    """

    def __init__(self, name="angular_error", **kwargs):
        super().__init__(name=name, **kwargs)
        self.hist = self.add_variable(shape=(NUM_BINS,), initializer="zeros", name="hist")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.sum_err = self.add_variable(shape=(), initializer="zeros", name="sum_err")
        self.sum_sq = self.add_variable(shape=(), initializer="zeros", name="sum_sq")
        self.nonfinite = self.add_variable(shape=(), initializer="zeros", name="nonfinite")

    def update_state(self, y_true, y_pred, sample_weight=None):
        from tada_keras.tasks.base import resize_to
        from tada_keras.tasks.normals import normalize, sanitize_normals

        gt, valid = sanitize_normals(y_true, sample_weight)
        pred = normalize(resize_to(ops.cast(y_pred, "float32"), ops.shape(gt)[1],
                                   ops.shape(gt)[2], "bilinear"))
        cos = ops.clip(ops.sum(pred * gt, axis=-1), -1.0, 1.0)
        errors = ops.reshape(ops.arccos(cos) * (180.0 / np.pi), (-1,))
        weights = ops.reshape(valid, (-1,))
        broken = ops.logical_not(ops.isfinite(errors))
        errors = ops.where(broken, NONFINITE_ERROR, errors)
        index = ops.clip(ops.cast(ops.floor(errors / BIN_WIDTH), "int32"), 0, NUM_BINS - 1)
        counts = ops.bincount(index, weights=weights, minlength=NUM_BINS)
        self.hist.assign_add(ops.cast(counts[:NUM_BINS], "float32"))
        self.total.assign_add(ops.sum(weights))
        self.sum_err.assign_add(ops.sum(errors * weights))
        self.sum_sq.assign_add(ops.sum(ops.square(errors) * weights))
        self.nonfinite.assign_add(ops.sum(ops.cast(broken, "float32") * weights))

    def result(self):
        return self.sum_err / ops.maximum(self.total, 1.0)

    def all_results(self) -> dict[str, float]:
        return _stats_from_histogram(
            np.asarray(ops.convert_to_numpy(self.hist), np.float64),
            float(ops.convert_to_numpy(self.total)),
            float(ops.convert_to_numpy(self.sum_err)),
            float(ops.convert_to_numpy(self.sum_sq)),
            float(ops.convert_to_numpy(self.nonfinite)))


def confusion_matrix(pred_labels, gt_labels, num_classes, ignore_label=0):
    """(num_classes, num_classes) counts, rows = ground truth, void pixels skipped."""
    gt = np.asarray(gt_labels).reshape(-1).astype(np.int64)
    pred = np.asarray(pred_labels).reshape(-1).astype(np.int64)
    keep = (gt != ignore_label) & (gt >= 0) & (gt < num_classes)
    return np.bincount(gt[keep] * num_classes + pred[keep],
                       minlength=num_classes ** 2).reshape(num_classes, num_classes)


def mean_iou(confusion, ignore_label=0) -> float:
    """Mean IoU over classes that occur in the ground truth (void excluded)."""
    confusion = np.asarray(confusion, np.float64)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = confusion.sum(1) > 0
    present[ignore_label] = False
    if not present.any():
        raise ValueError("mean_iou: no labelled pixels")
    return float(np.mean(tp[present] / union[present]))


def keypoint_nme(pred, gt, visible) -> float:
    """Mean 2D error of visible keypoints / sqrt(area of the GT keypoints' bounding box).

    ``pred`` and ``gt`` are (N, K, >=2) in the same units; ``visible`` is (N, K).
    """
    pred, gt = np.asarray(pred, np.float64)[..., :2], np.asarray(gt, np.float64)[..., :2]
    visible = np.asarray(visible, bool)
    errors = []
    for p, g, v in zip(pred, gt, visible):
        if v.sum() < 2:
            continue
        span = g[v].max(0) - g[v].min(0)
        scale = np.sqrt(max(span[0] * span[1], 1e-12))
        errors.append(np.linalg.norm(p[v] - g[v], axis=-1).mean() / scale)
    if not errors:
        raise ValueError("keypoint_nme: no image with >= 2 visible keypoints")
    return float(np.mean(errors))
