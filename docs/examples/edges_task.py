"""A worked example of adding a task (docs/tasks.md): an image-edges anchor.

Its labels are the Sobel edge magnitude of the example's own image, so they exist for
free in both domains (no builder change at all). Copy this file to
``tada_keras/tasks/edges.py`` and ``--anchor=edges`` is a valid anchor of every command
(``tests/test_architecture.py`` does exactly that and trains with it):

    python -m tada_keras.train --flagfile=configs/tiny.flags --anchor=edges \
        --method=mtl_both --model_dir=runs/edges

Nothing outside this file changes: the network gets its output layer from
``build_outputs``, the loss from ``loss_terms``, the pipeline its labels from
``read_dense`` / ``make_labels`` (resized, cropped and flipped with the image).
"""

from __future__ import annotations

import keras
from keras import ops

from tada_keras import conventions as C
from tada_keras.tasks import register
from tada_keras.tasks.base import Task, float32_output, resize_to

EDGES = "edges"  # float32 (B, h, w): Sobel magnitude of the grey image, in [0, ~1.4]


@register
class EdgesTask(Task):
    """Per-pixel regression of the image's edge strength (L1 loss)."""

    name = EDGES
    label_keys = (EDGES,)
    features = (C.IMAGE,)  # what check_data requires of a dataset: the image only
    roles = ("anchor",)

    def build_outputs(self, fine_features, mid_features):
        # Outputs are at 1/2 input size: up-sample the 1/4-size decoder features once.
        out = keras.layers.Conv2DTranspose(1, 4, strides=2, padding="same",
                                           name=EDGES)(fine_features)
        return {EDGES: float32_output(out, EDGES)}

    def loss_terms(self, y, y_pred):
        labels = ops.cast(y[EDGES], "float32")
        pred = resize_to(ops.cast(y_pred[EDGES], "float32"), ops.shape(labels)[1],
                         ops.shape(labels)[2])[..., 0]
        return [(ops.abs(pred - labels), ops.ones_like(labels), 1.0)]

    def read_dense(self, example):
        import tensorflow as tf

        grey = tf.image.rgb_to_grayscale(tf.cast(example[C.IMAGE], tf.float32) / 255.0)
        sobel = tf.image.sobel_edges(grey[None])[0, :, :, 0, :]  # (H, W, 2): dy, dx
        return {EDGES: tf.norm(sobel, axis=-1, keepdims=True) / 4.0}

    def make_labels(self, example, dense, geometry):
        return {EDGES: dense[EDGES][..., 0]}
