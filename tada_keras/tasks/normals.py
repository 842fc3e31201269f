"""Surface normals: the main task of the paper. Cosine loss over valid pixels."""

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
        from tada_keras.metrics import resize_normals

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
        from tada_keras.metrics import resize_normals

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

    def output_space(self, outputs):
        # Paper, appendix A.1: normals are normalised to unit length before D.
        n = ops.cast(outputs["normals"], "float32")
        return n * ops.rsqrt(ops.maximum(ops.sum(n * n, axis=-1, keepdims=True), 1e-12))


class _NormalsEvaluator:
    def __init__(self):
        from tada_keras.metrics import NormalErrorAccumulator

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
    from tada_keras.metrics import resize_normals

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
