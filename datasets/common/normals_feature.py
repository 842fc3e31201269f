"""``UnitNormals``: a TFDS feature that stores unit normals as a 16-bit PNG, reads float32.

Consumers see what ``tada_keras.conventions`` promises: float32 (H, W, 3), unit length,
(0, 0, 0) where invalid. On disk each component is quantised to 16 bits,
v = round((n + 1) / 2 · 65535), with (0, 0, 0) reserved for invalid pixels (no unit
vector maps there). The round trip changes a normal by less than 0.05°, and the files
are about 30× smaller than ZLIB-compressed float32 (this matters for the 500K PBRS views).

The same file exists in ``suncg_pbrs/`` and ``nyu_depth_v2_normals/``; keep them identical.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

_SCALE = 65535.0


def encode_unit_normals(normals: np.ndarray) -> np.ndarray:
    """float32 (H, W, 3) unit normals, zeros where invalid -> uint16 (H, W, 3)."""
    normals = np.asarray(normals, np.float32)
    valid = np.sum(normals * normals, axis=-1) > 0.25
    quantised = np.clip(np.round((normals + 1.0) * 0.5 * _SCALE), 0, _SCALE).astype(np.uint16)
    return np.where(valid[..., None], quantised, 0).astype(np.uint16)


def decode_unit_normals_np(stored: np.ndarray) -> np.ndarray:
    """uint16 (H, W, 3) as written by encode_unit_normals -> float32 unit normals."""
    stored = np.asarray(stored)
    invalid = np.all(stored == 0, axis=-1, keepdims=True)
    vectors = stored.astype(np.float32) / _SCALE * 2.0 - 1.0
    norm = np.sqrt(np.maximum(np.sum(vectors * vectors, axis=-1, keepdims=True), 1e-12))
    return np.where(invalid, 0.0, vectors / norm).astype(np.float32)


class UnitNormals(tfds.features.Image):
    """Unit surface normals: float32 (H, W, 3) to users, 16-bit PNG on disk."""

    def __init__(
        self,
        *,
        shape=(None, None, 3),
        dtype=None,
        encoding_format=None,
        use_colormap=False,
        doc=None,
    ):
        # dtype / encoding_format / use_colormap are accepted for from_json_content; the
        # storage is always uint16 PNG.
        del dtype, encoding_format, use_colormap
        if tuple(shape)[-1] != 3:
            raise ValueError(f"UnitNormals needs 3 channels, got shape {shape}")
        super().__init__(shape=shape, dtype=np.uint16, encoding_format="png", doc=doc)

    def get_tensor_info(self):
        return tfds.features.TensorInfo(shape=self._shape, dtype=np.float32)

    def encode_example(self, normals):
        normals = np.asarray(normals)
        if normals.dtype != np.float32:
            raise ValueError(f"UnitNormals expects float32 normals, got {normals.dtype}")
        return super().encode_example(encode_unit_normals(normals))

    def decode_example(self, example):
        stored = super().decode_example(example)
        invalid = tf.reduce_all(tf.equal(stored, 0), axis=-1, keepdims=True)
        vectors = tf.cast(stored, tf.float32) / _SCALE * 2.0 - 1.0
        normals = tf.math.l2_normalize(vectors, axis=-1, epsilon=1e-12)
        return tf.where(invalid, tf.zeros_like(normals), normals)

    def decode_example_np(self, example: bytes) -> np.ndarray:
        # PIL reads 16-bit RGB PNGs as 8-bit, so decode with TensorFlow.
        stored = tf.io.decode_png(example, channels=3, dtype=tf.uint16).numpy()
        return decode_unit_normals_np(stored)

    def repr_html(self, ex: np.ndarray) -> str:
        colours = ((np.asarray(ex) + 1.0) * 127.5).astype(np.uint8)
        return tfds.features.Image(shape=self._shape).repr_html(colours)
