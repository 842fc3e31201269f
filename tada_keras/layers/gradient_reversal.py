"""Gradient reversal layer (Ganin & Lempitsky, 2015) for every Keras backend."""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.ops.custom_gradient
def _reverse_gradient(x, lam):
    # `x * 1` is an exact identity in IEEE arithmetic; `keras.ops.identity` is not
    # guaranteed to be one on every backend.
    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        return -ops.cast(lam, upstream.dtype) * upstream, ops.zeros_like(lam)

    return x * ops.cast(1, x.dtype), grad


@keras.saving.register_keras_serializable(package="tada_keras")
class GradientReversal(keras.layers.Layer):
    """Identity in the forward pass, multiplies the gradient by ``-lam`` backwards.

    ``lam`` lives in a non-trainable variable, so a schedule (see ``dann_lambda``) can
    change it while training without retracing a compiled step.

    Args:
        lam: initial reversal strength.

    Example:
    ```python
    grl = GradientReversal(lam=0.5)
    features = grl(features)          # forward: unchanged
    grl.lam.assign(1.0)               # takes effect at the next step
    ```

    Reference:
        Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015.
    """

    def __init__(self, lam: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_lam = float(lam)
        self.lam = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.initial_lam),
            trainable=False,
            name="lam",
            dtype="float32",
        )

    def call(self, inputs):
        return _reverse_gradient(inputs, ops.convert_to_tensor(self.lam))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"lam": self.initial_lam})
        return config


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """Ganin's ramp ``2 / (1 + exp(-gamma * p)) - 1`` for training progress p in [0, 1]."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0
