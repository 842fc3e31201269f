"""Small layers used by tada-keras models."""

from tada_keras.layers.gradient_reversal import GradientReversal
from tada_keras.layers.preprocessing import ImagePreprocessing

__all__ = ["GradientReversal", "ImagePreprocessing"]
