"""The TFDS features every face builder shares: image, normals + mask, 3D keypoints."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from tada_keras import conventions as C


def face_features(num_keypoints: int) -> dict:
    """{feature name: tfds feature} of a face example (normals and masks ZLIB-compressed;
    keypoints as in ``tada_keras.conventions``); builders add their own fields."""
    return {
        C.IMAGE: tfds.features.Image(shape=(None, None, 3)),
        C.NORMALS: tfds.features.Tensor(
            shape=(None, None, 3), dtype=np.float32, encoding=tfds.features.Encoding.ZLIB),
        C.NORMALS_MASK: tfds.features.Tensor(
            shape=(None, None), dtype=np.bool_, encoding=tfds.features.Encoding.ZLIB),
        C.KEYPOINTS: tfds.features.Tensor(shape=(num_keypoints, 3), dtype=np.float32),
        C.KEYPOINTS_VISIBLE: tfds.features.Tensor(shape=(num_keypoints,), dtype=np.bool_),
        C.EXAMPLE_ID: tfds.features.Text(),
    }
