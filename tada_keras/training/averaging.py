"""Weight averaging (``--ema_momentum``): an exponential moving average of the trainable
weights, kept by Keras's own optimizer (``use_ema`` / ``ema_momentum``), evaluated and
saved instead of the last step's weights.

How Keras keeps it (checked against Keras 3.15's ``BaseOptimizer``): after every update
step the optimizer sets ``a <- m * a + (1 - m) * w`` for each trainable variable ``w``
(``a = w`` after the first step of an optimizer: ``m`` is 0 while ``iterations == 0``);
the averages are optimizer variables, so every checkpoint (``ResumableCheckpoint`` saves
``optimizer.variables``) holds them and a resumed run continues the same average. With
``ema_overwrite_frequency=None`` (here) the network keeps training on its raw weights:
the raw trajectory is exactly the one without averaging. At the end of ``fit`` Keras calls
``optimizer.finalize_variable_values``, which overwrites the trainable weights with their
averages; so a phase's ``final.weights.h5`` and the run's ``model.keras`` hold averaged
weights.

What is *not* averaged: non-trainable variables. The BatchNorm moving statistics are the
live ones (themselves a moving average of batch statistics, BatchNorm momentum 0.99), and
a frozen layer (HeadFreeze's head in phase 2) is neither trained nor averaged, so it stays
bit-identical. Each phase has a new optimizer, so HeadFreeze's phase 2 starts its average
from phase 1's final (averaged) weights.

``averaged_weights(model)`` lends the averages to the model for an evaluation in the middle
of a phase (checkpoint scoring) and puts the raw values back exactly afterwards.
"""

from __future__ import annotations

import contextlib

import keras


def network_optimizer(learning_rate: float, ema_momentum: float = 0.0):
    """The network's Adam, keeping an average of the weights when ``ema_momentum`` > 0."""
    if ema_momentum:
        return keras.optimizers.Adam(learning_rate, use_ema=True, ema_momentum=ema_momentum)
    return keras.optimizers.Adam(learning_rate)


def averaging_optimizer(model):
    """The built optimizer of ``model`` that keeps weight averages, or None (the network's
    optimizer inside an ``AdversarialOptimizer``)."""
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "network", optimizer)
    if optimizer is None or not getattr(optimizer, "use_ema", False) or not optimizer.built:
        return None
    return optimizer


def trainable_values(model) -> list:
    """numpy copies of the variables the optimizer trains (and averages), in its order."""
    optimizer = averaging_optimizer(model)
    variables = optimizer._trainable_variables if optimizer else model.trainable_variables
    return [keras.ops.convert_to_numpy(v) for v in variables]


@contextlib.contextmanager
def averaged_weights(model):
    """Within the block the trainable weights hold their averages (nothing changes without
    averaging; yields whether they do); afterwards exactly the previous values again."""
    optimizer = averaging_optimizer(model)
    if optimizer is None:
        yield False
        return
    variables = list(optimizer._trainable_variables)
    raw = [keras.ops.convert_to_numpy(v) for v in variables]
    optimizer._overwrite_model_variables_with_average_value(variables)
    try:
        yield True
    finally:
        for variable, value in zip(variables, raw):
            variable.assign(value)


@contextlib.contextmanager
def lent_weights(model, values: list):
    """Within the block the optimizer's trainable variables hold ``values`` (e.g. the raw
    weights of the last step, ``trainable_values``); afterwards their previous values."""
    optimizer = averaging_optimizer(model)
    variables = list(optimizer._trainable_variables if optimizer else model.trainable_variables)
    if len(values) != len(variables):
        raise ValueError(f"lent_weights: {len(values)} values for {len(variables)} variables")
    before = [keras.ops.convert_to_numpy(v) for v in variables]
    for variable, value in zip(variables, values):
        variable.assign(value)
    try:
        yield
    finally:
        for variable, value in zip(variables, before):
            variable.assign(value)
