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


def adversarial_train_step(model, *args):
    """``train_step`` of a ``TadaModel`` with an attached ``DomainAdversarial``.

    Keras' own step differentiates ``compute_loss(model(x))``; adversarial training
    needs the tapped features and two players. The model provides the backend-agnostic
    parts: ``model.adversarial_objective(x, y)`` -> ``(objective, terms)``, one scalar
    whose gradient is the network's update direction for the network's variables and the
    discriminators' for theirs, and ``model.adversarial_logs(terms)``. This function
    does, per backend, what Keras' trainers do: differentiate once with respect to
    ``model.trainable_variables`` and let ``model.optimizer`` (an
    ``AdversarialOptimizer``: network and discriminator optimizers as one) apply it.

    Signature as Keras calls it: ``(data)`` on TensorFlow and PyTorch, ``(state, data)``
    on JAX (stateless: returns ``(logs, state)``).
    """
    from keras.utils import unpack_x_y_sample_weight

    name = backend_name()
    if name == "jax":
        return _jax_adversarial_step(model, *args, unpack=unpack_x_y_sample_weight)
    (data,) = args
    x, y, _ = unpack_x_y_sample_weight(data)
    variables = model.trainable_variables
    if name == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            objective, terms = model.adversarial_objective(x, y)
            scaled = model.optimizer.scale_loss(objective)
        grads = tape.gradient(scaled, variables)
        model.optimizer.apply(grads, variables)
        return model.adversarial_logs(terms)
    if name == "torch":
        import torch

        model.zero_grad()
        objective, terms = model.adversarial_objective(x, y)
        model.optimizer.scale_loss(objective).backward()
        grads = [v.value.grad for v in variables]
        with torch.no_grad():
            model.optimizer.apply(grads, variables)
        return model.adversarial_logs(terms)
    raise NotImplementedError(f"adversarial_train_step: backend {name!r} is not supported")


def _jax_adversarial_step(model, state, data, unpack):
    import jax
    from keras import StatelessScope

    trainable, non_trainable, optimizer_state, metrics_state = state
    x, y, _ = unpack(data)

    def objective_fn(trainable, non_trainable):
        mapping = (list(zip(model.trainable_variables, trainable))
                   + list(zip(model.non_trainable_variables, non_trainable))
                   + list(zip(model.optimizer.variables, optimizer_state)))
        with StatelessScope(state_mapping=mapping) as scope:
            objective, terms = model.adversarial_objective(x, y)
            scaled = model.optimizer.scale_loss(objective)
        # BatchNorm statistics, the step counter, λ and noise seeds changed in the scope.
        updated = []
        for variable, value in zip(model.non_trainable_variables, non_trainable):
            new = scope.get_current_value(variable)
            updated.append(value if new is None else new)
        return scaled, (terms, updated)

    (_, (terms, non_trainable)), grads = jax.value_and_grad(objective_fn, has_aux=True)(
        trainable, non_trainable)
    trainable, optimizer_state = model.optimizer.stateless_apply(optimizer_state, grads,
                                                                 trainable)
    with StatelessScope(state_mapping=list(zip(model.metrics_variables,
                                               metrics_state))) as scope:
        logs = model.adversarial_logs(terms)
    metrics_state = [scope.get_current_value(v) if scope.get_current_value(v) is not None
                     else value for v, value in zip(model.metrics_variables, metrics_state)]
    return logs, (trainable, non_trainable, optimizer_state, metrics_state)


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
