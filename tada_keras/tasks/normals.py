"""Surface normals: the main task of the paper. Cosine loss over valid pixels."""

from __future__ import annotations

import keras
from keras import ops

from tada_keras import conventions as C
from tada_keras.tasks import register
from tada_keras.tasks.base import Task, check_rank, finite_mask, float32_output, resize_to


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
