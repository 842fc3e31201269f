"""Surface normals: the main task of the paper. Cosine loss over valid pixels.

Its metrics (pooled angular error) live here too.

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

from tada_keras import conventions as C
from tada_keras.tasks import register
from tada_keras.tasks.base import (
    MetricColumn,
    Task,
    check_rank,
    finite_mask,
    float32_output,
    resize_to,
)


def normalize(vectors, epsilon=1e-12):
    """Unit-normalises the last axis (float32); zero vectors stay zero."""
    vectors = ops.cast(vectors, "float32")
    norm = ops.sqrt(ops.maximum(ops.sum(ops.square(vectors), axis=-1, keepdims=True), epsilon))
    return vectors / norm


@register
class NormalsTask(Task):
    """Per-pixel surface normals in the camera frame of ``tada_keras.conventions``.

    Loss: ``1 - <normalize(pred), gt>`` averaged over valid pixels, in float32 (also under
    mixed precision). A ground-truth normal that is masked out, non-finite or of (near) zero
    length never reaches the loss.
    """

    name = "normals"
    label_keys = (C.NORMALS, C.NORMALS_MASK)
    roles = ("main",)
    features = (C.NORMALS,)  # the mask is optional: non-zero normals are valid
    # The paper's column order, then 22.5° (which the paper does not report).
    columns = (
        MetricColumn("a11_25", "< 11.25°", True, 3),
        MetricColumn("a30", "< 30°", True, 3),
        MetricColumn("rmse", "RMSE", False, 2),
        MetricColumn("mean", "Mean", False, 2),
        MetricColumn("median", "Median", False, 2),
        MetricColumn("a22_5", "< 22.5°", True, 3),
    )
    primary = "mean"
    unit = "°"
    summary_keys = ("mean", "median", "rmse", "a11_25", "a22_5", "a30")
    caption_note = "Accuracies are fractions of pixels, errors are degrees."
    metrics_title = "pooled angular error"

    def build_outputs(self, fine_features, mid_features):
        out = keras.layers.Conv2DTranspose(3, 4, strides=2, padding="same",
                                           name="normals")(fine_features)
        return {"normals": float32_output(out, "normals")}

    def check_labels(self, y, y_pred):
        check_rank(y, C.NORMALS, 4, 3, "(B, H, W, 3)")
        if C.NORMALS_MASK in y:
            check_rank(y, C.NORMALS_MASK, 3, None, "(B, H, W)")
            if tuple(y[C.NORMALS_MASK].shape)[1:] != tuple(y[C.NORMALS].shape)[1:3]:
                raise ValueError(f"labels['normals_mask'] {tuple(y[C.NORMALS_MASK].shape)} "
                                 f"does not match labels['normals'] {tuple(y[C.NORMALS].shape)}")

    def loss_terms(self, y, y_pred):
        gt = ops.cast(y[C.NORMALS], "float32")
        height, width = ops.shape(gt)[1], ops.shape(gt)[2]
        pred = normalize(resize_to(ops.cast(y_pred["normals"], "float32"), height, width))
        gt, valid = sanitize_normals(gt, y.get(C.NORMALS_MASK))
        loss = 1.0 - ops.sum(pred * gt, axis=-1)
        return [(loss, valid, 1.0)]

    # --- self-training ------------------------------------------------------------------
    def pseudo_reference(self, outputs):
        return ops.zeros_like(ops.cast(outputs["normals"], "float32")[..., 0])

    def pseudo_labels(self, outputs, keep):
        # Unit normals; non-finite ones are made invalid by sanitize_normals in loss_terms.
        return {C.NORMALS: normalize(outputs["normals"]), C.NORMALS_MASK: keep > 0.5}

    def view_agreement(self, outputs_a, outputs_b, settings):
        """The angle between the two unit normals is below ``settings.tau`` degrees."""
        cos = ops.sum(normalize(outputs_a["normals"]) * normalize(outputs_b["normals"]), -1)
        return cos > float(np.cos(np.radians(settings.tau)))

    # --- data ---------------------------------------------------------------------------
    def read_dense(self, example):
        import tensorflow as tf

        if C.NORMALS not in example:
            raise ValueError("The dataset has no 'normals' feature for the normals task.")
        normals = tf.cast(example[C.NORMALS], tf.float32)
        mask = example.get(C.NORMALS_MASK)
        if mask is None:
            mask = tf.reduce_any(tf.not_equal(normals, 0.0), axis=-1)
        return {C.NORMALS: normals, C.NORMALS_MASK: tf.cast(mask, tf.float32)[..., None]}

    def flip_dense(self, dense):
        # Mirroring x -> -x turns a normal (nx, ny, nz) into (-nx, ny, nz).
        normals = dense[C.NORMALS] * [-1.0, 1.0, 1.0]
        return {**dense, C.NORMALS: normals}

    def make_labels(self, example, dense, geometry):
        return {C.NORMALS: dense[C.NORMALS],
                C.NORMALS_MASK: dense[C.NORMALS_MASK][..., 0] > 0.5}

    # --- evaluation and figures ---------------------------------------------------------
    def evaluator(self):
        return _NormalsEvaluator()

    def headline(self, stats):
        return (f"mean {stats['mean']:.2f}° median {stats['median']:.2f}° "
                f"<11.25° {stats['a11_25']:.3f}")

    def postprocess(self, outputs, size=None):
        """Unit normals (B, h, w, 3); with ``size`` = (H, W) resized (bilinear) to it."""
        normals = np.asarray(outputs["normals"], np.float32)
        if size is not None:
            return resize_normals(normals, *size)
        return normals / np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)

    def graph_postprocess(self, outputs, resize=None):
        normals = ops.cast(outputs["normals"], "float32")
        if resize is not None:
            normals = resize(normals)
        norm = ops.sqrt(ops.sum(ops.square(normals), axis=-1, keepdims=True))
        return normals / ops.maximum(norm, 1e-12)

    def resize_prediction(self, prediction, size):
        return resize_normals(prediction, *size)

    def as_outputs(self, prediction):
        return {"normals": np.asarray(prediction, np.float32)}

    def save_prediction(self, stem, prediction):
        from PIL import Image

        paths = super().save_prediction(stem, prediction)
        Image.fromarray(normals_to_rgb(prediction)).save(f"{stem}_normals.png")
        return [f"{stem}_normals.png"] + paths

    def figure_rows(self, prediction, labels):
        gt, mask = labels[C.NORMALS], labels[C.NORMALS_MASK]
        err = angular_error_map(prediction, gt, mask)
        return [
            {"title": "ground truth", "image": normals_to_rgb(gt, mask)},
            {"title": "prediction", "image": normals_to_rgb(self.postprocess(
                {"normals": prediction[None]}, gt.shape[:2])[0])},
            {"title": f"error, mean {np.nanmean(err):.1f}°", "image": err,
             "cmap": "inferno", "vmin": 0, "vmax": 60, "colorbar": "degrees"},
        ]

    def valid_region(self, y):
        return y[C.NORMALS_MASK]

    def output_space(self, outputs):
        # Paper, appendix A.1: normals are normalised to unit length before D.
        n = ops.cast(outputs["normals"], "float32")
        return n * ops.rsqrt(ops.maximum(ops.sum(n * n, axis=-1, keepdims=True), 1e-12))


class _NormalsEvaluator:
    def __init__(self):
        self.accumulator = NormalErrorAccumulator()

    def update(self, outputs, labels):
        self.accumulator.update(outputs["normals"], labels[C.NORMALS], labels[C.NORMALS_MASK])

    def result(self):
        return self.accumulator.result()


def normals_to_rgb(normals, mask=None):
    """Camera-frame normals -> RGB uint8 ((n + 1) / 2, invalid pixels black)."""
    rgb = np.clip((np.asarray(normals, np.float32) + 1.0) * 127.5, 0, 255).astype(np.uint8)
    if mask is not None:
        rgb[~np.asarray(mask, bool)] = 0
    return rgb


def angular_error_map(pred, gt, mask):
    """Per-pixel angular error (degrees) of one (h, w, 3) prediction at the ground truth's
    resolution; NaN outside ``mask``."""
    pred = resize_normals(pred[None], gt.shape[0], gt.shape[1])[0]
    cos = np.clip(np.sum(pred * gt, -1) / np.maximum(np.linalg.norm(gt, axis=-1), 1e-6), -1, 1)
    err = np.degrees(np.arccos(cos))
    return np.where(mask, err, np.nan)


def sanitize_normals(gt, mask=None):
    """Returns (safe unit normals, float mask): invalid pixels get (0, 0, 1) and weight 0."""
    gt = ops.cast(gt, "float32")
    finite = finite_mask(gt, axis=-1)
    safe = ops.where(finite[..., None], gt, ops.zeros_like(gt))
    length = ops.sqrt(ops.sum(ops.square(safe), axis=-1))
    valid = ops.logical_and(finite, length > 1e-3)
    if mask is not None:
        valid = ops.logical_and(valid, ops.cast(mask, "bool"))
    fallback = ops.zeros_like(safe) + ops.convert_to_tensor([0.0, 0.0, 1.0])
    safe = ops.where(valid[..., None], safe / ops.maximum(length, 1e-3)[..., None], fallback)
    return safe, ops.cast(valid, "float32")


# --- metrics: pooled angular error ----------------------------------------------------
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
