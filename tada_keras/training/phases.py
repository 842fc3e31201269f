"""Phases of a method: HeadFreeze's freeze/recompile step and the one phase runner."""

from __future__ import annotations

import math
import re
import time
import warnings
from collections.abc import Callable

import keras
from keras import ops

from tada_keras import backend
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


def prepare_teacher(model, phase: Phase, steps: int | None = None) -> None:
    """Self-training: attaches a mean teacher started from the model's current weights
    when ``phase`` uses pseudo-labels (HeadFreeze-ST's phase 2: from phase 1's final
    weights), with its ramp-up over ``model.self_training.rampup`` of ``steps``; detaches
    it for a phase without. A teacher attached for this phase already is kept."""
    if not hasattr(model, "attach_teacher"):
        return
    teacher = model.teacher
    if not phase.weights.uses_pseudo:
        if teacher is not None:
            model.detach_teacher()
        return
    if teacher is not None and teacher.phase == phase.name:
        return
    settings = model.self_training
    rampup = settings.rampup if settings is not None else 0.2
    model.attach_teacher(settings, int(round(rampup * (steps or phase.steps or 0))),
                         phase.name)


def configure_phase(model, phase: Phase, optimizer: keras.optimizers.Optimizer,
                    weights: LossWeights | None = None, jit_compile="auto",
                    steps: int | None = None) -> None:
    """Prepares ``model`` for ``phase``: head trainability, loss weights, the mean
    teacher of a self-training phase (``prepare_teacher``, ``steps``: the phase's steps,
    for its ramp-up), fresh compile.

    Freezing sets ``head.trainable = False``, which also puts the head's BatchNorm layers
    in inference mode (their moving statistics stay frozen). Keras requires a recompile
    after flipping ``trainable``; it gets a *new* optimizer, whose slots match the new set
    of trainable variables (reusing the old one fails on JAX).
    """
    model.head.trainable = phase.head_trainable
    prepare_teacher(model, phase, steps)
    model.set_loss_weights(weights or phase.weights)
    model.compile(optimizer=optimizer, jit_compile=jit_compile)


class PhaseStore:
    """Where ``run_method`` keeps a phase's progress. This one keeps nothing: every phase
    trains from its first step and ``finish`` returns the ``History``.

    ``tada_keras.run.RunDirectory`` keeps them in a run directory instead (a finished
    phase's weights and history, the last epoch's checkpoint, the measured loss weights),
    so that an interrupted CLI run resumes where it stopped.
    """

    def finished(self, phase: Phase):
        """The recorded history of a phase that already ran to its end, else None."""
        return None

    def load_finished(self, model, phase: Phase) -> None:
        """Loads the weights a finished phase ended with (``finished`` was not None)."""
        raise NotImplementedError

    def resume_epoch(self, phase: Phase) -> int:
        """Epochs of ``phase`` done before (0: it starts from its first step)."""
        return 0

    def restore(self, model, phase: Phase) -> int:
        """Restores the last checkpoint into the compiled ``model``; returns its epoch."""
        return 0

    def loss_weights(self, phase: Phase, measure: Callable[[], LossWeights]) -> LossWeights:
        """The balanced loss weights of ``phase`` (``measure()`` measures them)."""
        return measure()

    def callbacks(self, phase: Phase) -> list:
        """The store's own callbacks (e.g. a checkpoint), before the caller's."""
        return []

    def finish(self, model, phase: Phase, history, seconds: float):
        """Records the finished phase; returns what ``run_method`` reports for it."""
        return history


# The phase lines run_method logs; the harness (experiments/runner.py) follows a training
# subprocess by them, through ``parse_phase_line`` (the writer and the reader live here).
_PHASE_EVENT = re.compile(r"^\[(\w+)\] (method=|skipped|already complete)")
PHASE_EVENTS = {"method=": "started", "skipped": "skipped", "already complete": "done"}


def parse_phase_line(line: str) -> tuple[str, str] | None:
    """``(phase, event)`` of a line ``run_method`` logged (event: started, skipped, done),
    or None for any other line."""
    match = _PHASE_EVENT.match(line)
    return (match.group(1), PHASE_EVENTS[match.group(2)]) if match else None


def _phase_line(method, phase, weights, steps, start_epoch, epochs) -> str:
    line = (f"[{phase.name}] method={method.name} head_trainable={phase.head_trainable} "
            f"weights={ {k: round(v, 4) for k, v in weights.as_dict().items() if v} } "
            f"steps={steps}")
    return line + (f" (resuming at epoch {start_epoch}/{epochs})" if start_epoch else "")


def run_method(model, method: Method, datasets: Callable[..., object],
               steps: Callable[[Phase], int], optimizer: Callable[[Phase], object],
               callbacks: Callable[[Phase], list] | None = None, balance: bool = False,
               jit_compile="auto", verbose="auto", steps_per_epoch: int | None = None,
               store: PhaseStore | None = None, log: Callable[[str], None] | None = None
               ) -> dict:
    """Runs every phase of ``method`` with ``model.fit``; the one phase runner of the
    Python API and of ``python -m tada_keras.train`` (which passes a ``RunDirectory``).

    Per phase: skip it if it has 0 steps, load it if the store says it finished, else
    build its dataset, (optionally) balance its loss weights, configure the model (head
    trainability, weights, a fresh compile with a new optimizer), restore the store's
    checkpoint, and ``fit``.

    Args:
        datasets: ``phase -> training dataset`` (batches of (image, labels)); called as
            ``datasets(phase, skip_batches=k)`` when resuming after ``k`` batches.
        steps: phase -> number of training steps.
        optimizer: phase -> a new optimizer instance.
        callbacks: phase -> list of callbacks (after the store's own).
        balance: rescale loss weights from their initial magnitudes (``balance_loss_weights``)
            on the first batch of a fresh ``datasets(phase)``.
        steps_per_epoch: epoch length (None: one epoch per phase).
        store: where progress is kept (default ``PhaseStore``: nowhere).
        log: receives one line per phase (None: silent).

    Returns:
        {phase name: what the store's ``finish`` returns} (``History`` by default);
        phases with 0 steps are left out.
    """
    store = store or PhaseStore()
    log = log or (lambda line: None)
    results = {}
    for phase in method.phases:
        n = int(steps(phase))
        if n == 0:
            log(f"[{phase.name}] skipped (0 steps; starting from --init_from)")
            continue
        done = store.finished(phase)
        if done is not None:
            model.head.trainable = phase.head_trainable
            prepare_teacher(model, phase, n)  # its weights are in the phase's final file
            store.load_finished(model, phase)
            results[phase.name] = done
            continue
        per_epoch = int(steps_per_epoch or n)
        start_epoch = store.resume_epoch(phase)
        dataset = (datasets(phase, skip_batches=start_epoch * per_epoch) if start_epoch
                   else datasets(phase))
        weights = phase.weights
        prepare_teacher(model, phase, n)  # before balancing: L_Tp needs the teacher
        if balance:
            def measure(phase=phase):
                x, y = next(iter(datasets(phase)))
                return balance_loss_weights(model, x, y, phase.weights)

            weights = store.loss_weights(phase, measure)
        configure_phase(model, phase, optimizer(phase), weights, jit_compile, steps=n)
        epochs = n // per_epoch
        start_epoch = store.restore(model, phase)
        log(_phase_line(method, phase, weights, n, start_epoch, epochs))
        phase_callbacks = store.callbacks(phase) + (callbacks(phase) if callbacks else [])
        t0 = time.time()
        with backend.synchronized_batchnorm(model), warnings.catch_warnings():
            if not weights.uses_anchor:
                # The anchor's output layer exists but no loss of this phase reaches it:
                # Keras's "Gradients do not exist for variables ['segmentation/...']" is
                # expected here, not a user error.
                warnings.filterwarnings("ignore", message="Gradients do not exist for "
                                        "variables", category=UserWarning)
            history = model.fit(dataset, epochs=epochs, steps_per_epoch=per_epoch,
                                callbacks=phase_callbacks, verbose=verbose, shuffle=False,
                                initial_epoch=start_epoch)
        results[phase.name] = store.finish(model, phase, history, time.time() - t0)
    return results
