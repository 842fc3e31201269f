"""Small layers used by tada-keras models."""

from tada_keras.layers.batch_normalization import BatchNormalization, fuse_batchnorm
from tada_keras.layers.gradient_reversal import GradientReversal
from tada_keras.layers.preprocessing import ImagePreprocessing

__all__ = ["BatchNormalization", "GradientReversal", "ImagePreprocessing", "fuse_batchnorm"]
