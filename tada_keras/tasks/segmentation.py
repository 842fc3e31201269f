"""Semantic segmentation anchor: cross-entropy with an ignore label."""

from __future__ import annotations

import keras
import numpy as np
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
    roles = ("anchor",)
    anchor_metric = "miou"

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

    def anchor_agreement(self, y, outputs, settings):
        """The teacher's most likely class is the labelled (non-void) class."""
        logits = ops.cast(outputs["segmentation"], "float32")
        labels = y[C.SEGMENTATION]
        if len(labels.shape) == 4:
            labels = labels[..., 0]
        labels = resize_to(ops.cast(labels, "float32")[..., None], ops.shape(logits)[1],
                           ops.shape(logits)[2], interpolation="nearest")[..., 0]
        labels = ops.cast(labels, "int32")
        valid = ops.logical_and(labels != self.ignore_label, labels >= 0)
        valid = ops.logical_and(valid, labels < self.num_classes)
        predicted = ops.cast(ops.argmax(logits, axis=-1), "int32")
        return ops.logical_and(valid, predicted == labels)

    # --- data ---------------------------------------------------------------------------
    @classmethod
    def config_from_info(cls, info):
        feature = info.features[C.SEGMENTATION]
        return {"num_classes": int(getattr(feature, "num_classes", None) or
                                   C.NYU40_NUM_CLASSES)}

    def read_dense(self, example):
        import tensorflow as tf

        if C.SEGMENTATION not in example:
            raise ValueError("The dataset has no 'segmentation' feature for the "
                             "segmentation anchor.")
        seg = tf.cast(example[C.SEGMENTATION], tf.float32)
        return {C.SEGMENTATION: seg if seg.shape.rank == 3 else seg[..., None]}

    def make_labels(self, example, dense, geometry):
        import tensorflow as tf

        return {C.SEGMENTATION: tf.cast(dense[C.SEGMENTATION][..., 0], tf.int32)}

    # --- evaluation and figures ---------------------------------------------------------
    def evaluator(self):
        return _SegmentationEvaluator(self.num_classes)

    def output_space(self, outputs):  # AdaptSegNet's case: class probabilities
        return ops.softmax(ops.cast(outputs["segmentation"], "float32"), axis=-1)

    def feature_locations(self, features, labels):
        return class_centroids(features, labels[C.SEGMENTATION], self.ignore_label)

    def location_names(self, info):
        names = getattr(info.features[C.SEGMENTATION], "names", None) or []
        return {i: f"class {n}" for i, n in enumerate(names)}


class _SegmentationEvaluator:
    """mIoU from a confusion matrix pooled over the split (logits resized bilinearly to the
    ground truth's resolution)."""

    def __init__(self, num_classes):
        self.num_classes = num_classes
        self.confusion = None

    def update(self, outputs, labels):
        if "segmentation" not in outputs:
            return
        gt = labels[C.SEGMENTATION]
        pred = keras.ops.convert_to_numpy(keras.ops.image.resize(
            outputs["segmentation"], gt.shape[1:3], interpolation="bilinear"))
        cm = confusion_matrix(pred.argmax(-1), gt, self.num_classes)
        self.confusion = cm if self.confusion is None else self.confusion + cm

    def result(self):
        return {} if self.confusion is None else {"miou": mean_iou(self.confusion)}


def class_centroids(features: np.ndarray, segmentation: np.ndarray,
                    ignore_label: int = C.SEGMENTATION_IGNORE_LABEL) -> dict[int, np.ndarray]:
    """Mean feature of each class present in one image.

    ``features`` (h, w, D) may be coarser than ``segmentation`` (H, W): every label pixel
    votes for the feature cell that contains it, so a cell counts in proportion to the
    class's area in it.
    """
    h, w, d = features.shape
    seg = np.asarray(segmentation)
    H, W = seg.shape
    rows = np.minimum((np.arange(H) * h) // H, h - 1)
    cols = np.minimum((np.arange(W) * w) // W, w - 1)
    cell = (rows[:, None] * w + cols[None, :]).ravel()
    labels = seg.ravel().astype(np.int64)
    keep = labels != ignore_label
    classes = np.unique(labels[keep])
    if classes.size == 0:
        return {}
    index = np.searchsorted(classes, labels[keep])
    weights = np.zeros((classes.size, h * w))
    np.add.at(weights, (index, cell[keep]), 1.0)
    sums = weights @ features.reshape(h * w, d).astype(np.float64)
    return {int(c): sums[i] / weights[i].sum() for i, c in enumerate(classes)}


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
