"""tada-keras: Task-Assisted Domain Adaptation with anchor tasks (HeadFreeze) for Keras 3.

The top-level names load lazily: ``from tada_keras import conventions`` (what a TFDS
builder needs) does not import Keras models or the trainer; ``tada_keras.TadaModel`` does.
"""

import importlib

__version__ = "0.1.0"

# name -> module that defines it (a module itself where the name is the module's own)
_EXPORTS = {
    "METHOD_NAMES": "tada_keras.methods",
    "LossWeights": "tada_keras.methods",
    "Method": "tada_keras.methods",
    "Phase": "tada_keras.methods",
    "get_method": "tada_keras.methods",
    "TadaModel": "tada_keras.training",
    "build_model": "tada_keras.training",
    "conventions": None,
    "layers": None,
    "metrics": None,
}
__all__ = sorted(_EXPORTS)

# the modules that register a Keras-serialisable class (tests/test_architecture.py checks
# this list against the source)
_SERIALIZABLES = (
    "tada_keras.adaptation.adversarial",
    "tada_keras.adaptation.discriminators",
    "tada_keras.adaptation.optimizer",
    "tada_keras.layers.batch_normalization",
    "tada_keras.layers.gradient_reversal",
    "tada_keras.layers.preprocessing",
    "tada_keras.tasks.normals",
    "tada_keras.training.tada_model",
)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tada_keras' has no attribute {name!r}")
    source = _EXPORTS[name]
    value = (importlib.import_module(f"tada_keras.{name}") if source is None
             else getattr(importlib.import_module(source), name))
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


def register_serializables() -> None:
    """Imports every module that registers a Keras-serialisable class (layers, models,
    tasks, the TadaModel), so ``keras.saving.load_model`` of a tada-keras file works."""
    for module in _SERIALIZABLES:
        importlib.import_module(module)
