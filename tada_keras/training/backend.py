"""The one place with backend-specific code.

Everything else in tada-keras is written against ``keras.ops``. What Keras 3 has no
backend-agnostic API for lives here, behind plain functions, and is tested on
TensorFlow, JAX and PyTorch with the same tests.
"""

from __future__ import annotations

import os
import random

import keras
import numpy as np


def backend_name() -> str:
    return keras.config.backend()


def value_and_gradients(fn, tensors):
    """Returns ``(fn(*tensors), [d fn / d t for t in tensors])`` for a scalar ``fn``.

    ``tensors`` are numpy arrays or backend tensors; gradients come back as numpy.
    """
    name = backend_name()
    if name == "tensorflow":
        import tensorflow as tf

        ts = [tf.convert_to_tensor(t) for t in tensors]
        with tf.GradientTape() as tape:
            for t in ts:
                tape.watch(t)
            value = fn(*ts)
        grads = tape.gradient(value, ts)
        return (np.asarray(value),
                [np.zeros(t.shape, t.dtype.as_numpy_dtype) if g is None else g.numpy()
                 for t, g in zip(ts, grads)])
    if name == "jax":
        import jax

        value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(tensors))))(
            *[jax.numpy.asarray(t) for t in tensors])
        return np.asarray(value), [np.asarray(g) for g in grads]
    if name == "torch":
        import torch

        ts = [torch.tensor(np.asarray(keras.ops.convert_to_numpy(t)), requires_grad=True)
              for t in tensors]
        value = fn(*ts)
        grads = torch.autograd.grad(value, ts, allow_unused=True)
        return (value.detach().cpu().numpy(),
                [np.zeros(tuple(t.shape), np.float32) if g is None else g.cpu().numpy()
                 for t, g in zip(ts, grads)])
    raise NotImplementedError(f"value_and_gradients: backend {name!r} is not supported")


def set_global_determinism(seed: int, deterministic_ops: bool = False) -> None:
    """Seeds Python, numpy and Keras; optionally makes TF ops deterministic."""
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if not deterministic_ops:
        return
    name = backend_name()
    if name == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif name == "torch":
        import torch

        torch.use_deterministic_algorithms(True)
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
