"""Semantic segmentation anchor: cross-entropy with an ignore label."""

from __future__ import annotations

import keras
from keras import ops

from tada_keras import conventions as C
from tada_keras.tasks import register
from tada_keras.tasks.base import Task, float32_output, resize_to


@register
class SegmentationTask(Task):
    """Per-pixel classification; label ``ignore_label`` (void) never reaches the loss.

    Args:
        num_classes: number of logits, including the void id (never trained).
        ignore_label: label id excluded from loss and metrics.
    """

    name = "segmentation"
    label_keys = (C.SEGMENTATION,)

    def __init__(self, num_classes: int = C.NYU40_NUM_CLASSES,
                 ignore_label: int = C.SEGMENTATION_IGNORE_LABEL):
        if int(num_classes) < 2:
            raise ValueError(f"segmentation: num_classes must be >= 2, got {num_classes}")
        super().__init__(num_classes=int(num_classes), ignore_label=int(ignore_label))
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)

    def build_outputs(self, fine_features, mid_features):
        out = keras.layers.Conv2DTranspose(self.num_classes, 4, strides=2, padding="same",
                                           name="segmentation")(fine_features)
        return {"segmentation": float32_output(out, "segmentation")}

    def check_labels(self, y, y_pred):
        shape = tuple(y[C.SEGMENTATION].shape)
        if not (len(shape) == 3 or (len(shape) == 4 and shape[-1] == 1)):
            raise ValueError(f"labels['segmentation']: expected shape (B, H, W) or "
                             f"(B, H, W, 1) of class ids, got {shape}")

    def loss_terms(self, y, y_pred):
        labels = y[C.SEGMENTATION]
        if len(labels.shape) == 4:
            labels = labels[..., 0]
        labels = ops.cast(labels, "int32")
        height, width = ops.shape(labels)[1], ops.shape(labels)[2]
        logits = resize_to(ops.cast(y_pred["segmentation"], "float32"), height, width)
        valid = ops.logical_and(labels != self.ignore_label, labels >= 0)
        valid = ops.logical_and(valid, labels < self.num_classes)
        safe = ops.where(valid, labels, ops.zeros_like(labels))
        loss = keras.losses.sparse_categorical_crossentropy(safe, logits, from_logits=True)
        return [(loss, ops.cast(valid, "float32"), 1.0)]
