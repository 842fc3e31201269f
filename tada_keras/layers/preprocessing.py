"""Input preprocessing inside the model, so saved models take raw RGB in [0, 255]."""

from __future__ import annotations

import keras
from keras import ops

# keras.applications' "caffe" convention (ResNet50 ImageNet weights): BGR, mean-subtracted.
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
# tensorflow/tpu EfficientNet-Lite's input convention: (RGB - 127) / 128.
_LITE_MEAN, _LITE_STD = 127.0, 128.0
MODES = ("caffe", "unit", "lite")


@keras.saving.register_keras_serializable(package="tada_keras")
class ImagePreprocessing(keras.layers.Layer):
    """Maps RGB images in [0, 255] to what the backbone expects.

    Args:
        mode: ``"caffe"`` (BGR minus the ImageNet mean, as keras.applications.ResNet50
            expects), ``"lite"`` ((RGB - 127) / 128, as the EfficientNet-Lite ImageNet
            weights expect) or ``"unit"`` (scale to [-1, 1]; for backbones trained from
            scratch).
    """

    def __init__(self, mode: str = "caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"ImagePreprocessing: mode must be one of {list(MODES)}, "
                             f"got {mode!r}")
        self.mode = mode

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "unit":
            return images / 127.5 - 1.0
        if self.mode == "lite":
            return (images - _LITE_MEAN) / _LITE_STD
        bgr = ops.flip(images, axis=-1)
        return bgr - ops.convert_to_tensor(_CAFFE_BGR_MEAN, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config
