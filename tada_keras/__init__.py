"""tada-keras: Task-Assisted Domain Adaptation with anchor tasks (HeadFreeze) for Keras 3."""

from tada_keras import conventions, layers, metrics
from tada_keras.methods import METHOD_NAMES, LossWeights, Method, Phase, get_method
from tada_keras.training import TadaModel, build_model

__version__ = "0.1.0"
__all__ = ["METHOD_NAMES", "LossWeights", "Method", "Phase", "TadaModel", "build_model",
           "conventions", "get_method", "layers", "metrics"]
