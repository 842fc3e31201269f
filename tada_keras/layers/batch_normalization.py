"""Keras's BatchNormalization with TensorFlow's fused kernel where it applies.

Keras 3 computes batch normalisation op by op (moments, then the normalisation, all in
float32 even under ``mixed_bfloat16``); on the TensorFlow backend that is a chain of
memory-bound elementwise ops per layer (keras-team/keras-core#225, "BatchNorm is slow").
TensorFlow's ``FusedBatchNormV3`` does the same work in one kernel (oneDNN on CPUs, cuDNN
on GPUs) and takes bfloat16/float16 activations with float32 statistics.

This layer is ``keras.layers.BatchNormalization`` with the same arguments, weights, names
and semantics, and one more argument, ``fused``. Only ``call`` differs, and only where
the fused kernel computes exactly what Keras's layer computes:

* TensorFlow backend, 4-D NHWC input normalised over the channel axis, no mask, no
  batch renormalisation, not ``synchronized`` (cross-replica statistics need Keras's
  all-reduce), float32 variables, ``epsilon >= 1.001e-5`` (the smallest TensorFlow lets
  cuDNN use), a float input;
* training (``training=True`` and ``trainable``): batch statistics, and the moving
  statistics updated with Keras's formula from the *population* variance (the kernel
  returns the Bessel-corrected one; it is converted back);
* otherwise (inference, or ``trainable=False`` as for HeadFreeze's frozen head): the
  moving statistics, as in Keras.

Everywhere else (other backends included) the call is Keras's own.

The environment variable ``TADA_FUSED_BATCHNORM=0`` turns the default (``fused=None``)
off, to measure or debug the unfused path without rebuilding models.
"""

from __future__ import annotations

import os

import keras

# TensorFlow's fused_batch_norm raises smaller epsilons to this (cuDNN's minimum).
_MIN_EPSILON = 1.001e-5
_FLOAT_INPUTS = ("float32", "bfloat16", "float16")


def fusion_enabled_by_default() -> bool:
    """False when ``TADA_FUSED_BATCHNORM`` is ``0``/``false``/``off``."""
    value = os.environ.get("TADA_FUSED_BATCHNORM", "1").strip().lower()
    return value not in ("0", "false", "off", "no")


@keras.saving.register_keras_serializable(package="tada_keras")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` using TensorFlow's fused kernel where it can.

    Args:
        fused: ``None`` (default): fused where the kernel computes what Keras computes
            (see the module docstring) and ``TADA_FUSED_BATCHNORM`` is not ``0``;
            ``False``: always Keras's op-by-op computation; ``True``: fused, and a call
            that cannot be fused raises ``ValueError``.
        **kwargs: the arguments of ``keras.layers.BatchNormalization``.

    Example:
    ```python
    x = keras.layers.Conv2D(64, 3, padding="same", use_bias=False)(x)
    x = BatchNormalization(epsilon=1e-3, name="conv1_bn")(x)
    ```

    Reference:
        Ioffe & Szegedy, "Batch Normalization", ICML 2015; TensorFlow's
        ``tf.raw_ops.FusedBatchNormV3``.
    """

    def __init__(self, fused: bool | None = None, **kwargs):
        super().__init__(**kwargs)
        if fused not in (None, True, False):
            raise ValueError(f"fused must be None, True or False, got {fused!r}")
        self.fused = fused

    def get_config(self):
        return {**super().get_config(), "fused": self.fused}

    def _why_not_fused(self, inputs, mask) -> str | None:
        """None if the fused kernel computes this call exactly, else the reason."""
        if keras.config.backend() != "tensorflow":
            return f"the {keras.config.backend()} backend has no fused kernel here"
        rank = len(inputs.shape)
        if rank != 4 or self.axis not in (3, -1):
            return f"needs 4-D NHWC inputs normalised over axis 3 (rank {rank}, axis {self.axis})"
        if mask is not None:
            return "masked statistics"
        if self.renorm:
            return "batch renormalisation"
        if self.synchronized:
            return "synchronized (cross-replica) statistics"
        if self.epsilon < _MIN_EPSILON:
            return f"epsilon {self.epsilon} < {_MIN_EPSILON}"
        if self.moving_mean.dtype != "float32":
            return f"{self.moving_mean.dtype} variables"
        if keras.backend.standardize_dtype(inputs.dtype) not in _FLOAT_INPUTS:
            return f"{inputs.dtype} inputs"
        return None

    def call(self, inputs, training=None, mask=None):
        fused = self.fused
        if fused is None and not fusion_enabled_by_default():
            fused = False
        if fused is False:
            return super().call(inputs, training=training, mask=mask)
        reason = self._why_not_fused(inputs, mask)
        if reason is not None:
            if fused:
                raise ValueError(f"BatchNormalization {self.name!r}: fused=True, but the "
                                 f"fused kernel cannot apply: {reason}.")
            return super().call(inputs, training=training, mask=mask)

        from tada_keras.backend import fused_batch_norm

        train = bool(training) and self.trainable
        channels = inputs.shape[-1]
        gamma = self.gamma if self.scale else keras.ops.ones((channels,), "float32")
        beta = self.beta if self.center else keras.ops.zeros((channels,), "float32")
        outputs, mean, variance = fused_batch_norm(
            inputs, gamma, beta, self.moving_mean, self.moving_variance, self.epsilon,
            training=train)
        if train:
            self.moving_mean.assign(
                self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return keras.ops.cast(outputs, self.compute_dtype)


def fuse_batchnorm(model: keras.Model) -> keras.Model:
    """A copy of ``model`` whose ``keras.layers.BatchNormalization`` layers are this
    module's (same configs, names and weights); other layers are cloned unchanged.

    For models built elsewhere, e.g. ``keras.applications.ResNet50``, so that their
    checkpoints keep loading (the variables and their paths are the same).
    """
    def clone(layer):
        if type(layer) is keras.layers.BatchNormalization:
            return BatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    # New inputs with the original input layers' names (clone_model would rename them).
    inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t._keras_history[0].name)
              for t in model.inputs]
    copy = keras.models.clone_model(model, input_tensors=inputs[0] if len(inputs) == 1
                                    else inputs, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
