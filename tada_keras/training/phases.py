"""Phases of a method: HeadFreeze's freeze/recompile step and the phase runner."""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
from keras import ops

from tada_keras.methods import LossWeights, Method, Phase


def balance_loss_weights(model, x, y, weights: LossWeights) -> LossWeights:
    """Rescales each active group's weight so its initial loss matches L_Sm's magnitude.

    The paper "choose[s] λ so losses from different domains and tasks have similar
    magnitudes"; here that is measured on one batch with the current model: the weight of
    group g becomes ``w_g * L_Sm / L_g``. Groups with a zero loss keep their weight.
    """
    base = weights.as_dict()
    active = [g for g, w in base.items() if w]
    losses = model.group_losses(y, model(x, training=False), active)
    values = {g: float(ops.convert_to_numpy(v)) for g, v in losses.items()}
    ref = values.get("source_main")
    if not ref or not math.isfinite(ref):
        return weights
    balanced = dict(base)
    for group, value in values.items():
        if group != "source_main" and value > 0 and math.isfinite(value):
            balanced[group] = base[group] * ref / value
    return LossWeights(**balanced)


def configure_phase(model, phase: Phase, optimizer: keras.optimizers.Optimizer,
                    weights: LossWeights | None = None, jit_compile="auto") -> None:
    """Prepares ``model`` for ``phase``: head trainability, loss weights, fresh compile.

    Freezing sets ``head.trainable = False``, which also puts the head's BatchNorm layers
    in inference mode (their moving statistics stay frozen). Keras requires a recompile
    after flipping ``trainable``; it gets a *new* optimizer, whose slots match the new set
    of trainable variables (reusing the old one fails on JAX).
    """
    model.head.trainable = phase.head_trainable
    model.set_loss_weights(weights or phase.weights)
    model.compile(optimizer=optimizer, jit_compile=jit_compile)


def run_method(model, method: Method, datasets: Callable[[Phase], object],
               steps: Callable[[Phase], int], optimizer: Callable[[Phase], object],
               callbacks: Callable[[Phase], list] | None = None, balance: bool = False,
               jit_compile="auto", verbose="auto") -> dict:
    """Runs every phase of ``method`` with ``model.fit``; returns {phase: History}.

    Args:
        datasets: phase -> training dataset (batches of (image, labels)).
        steps: phase -> number of training steps.
        optimizer: phase -> a new optimizer instance.
        callbacks: phase -> list of callbacks.
        balance: rescale loss weights from their initial magnitudes (``balance_loss_weights``)
            on the first batch of each phase.
    """
    histories = {}
    for phase in method.phases:
        dataset = datasets(phase)
        weights = phase.weights
        if balance:
            x, y = next(iter(dataset))
            weights = balance_loss_weights(model, x, y, phase.weights)
        configure_phase(model, phase, optimizer(phase), weights, jit_compile)
        histories[phase.name] = model.fit(
            dataset, epochs=1, steps_per_epoch=int(steps(phase)),
            callbacks=callbacks(phase) if callbacks else None, verbose=verbose, shuffle=False)
    return histories
