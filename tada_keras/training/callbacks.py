"""Callbacks: resumable per-epoch checkpoints (model *and* optimizer state), and the
divergence guard that keeps a non-finite run from being checkpointed or marked done."""

from __future__ import annotations

import json
import math
import os
import shutil

import keras
import numpy as np

from tada_keras.atomic import write_json


class TrainingDivergedError(RuntimeError):
    """The loss or the weights became non-finite; nothing of that epoch was saved."""


class StopOnNonFinite(keras.callbacks.Callback):
    """Raises ``TrainingDivergedError`` at the first batch whose loss, or the first epoch
    end whose weights, are non-finite.

    Keras's ``TerminateOnNaN`` only stops ``fit``, after which a caller would save the
    diverged weights as a finished phase; raising instead stops the whole run. Put it
    *before* the checkpoint callback, so a diverged epoch never replaces the last good
    checkpoint.

    Args:
        phase: the phase name, for the message.
        hint: what to tell the user (e.g. which flag to change).
    """

    def __init__(self, phase: str, hint: str = ""):
        super().__init__()
        self.phase = phase
        self.hint = hint
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def _fail(self, what):
        raise TrainingDivergedError(
            f"phase {self.phase!r} diverged in epoch {self.epoch + 1}: {what}. Nothing of "
            f"this epoch was saved and the phase is not marked done. {self.hint}".strip())

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._fail(f"the loss is {float(loss)} at batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        for variable in self.model.weights:
            if not np.all(np.isfinite(keras.ops.convert_to_numpy(variable))):
                self._fail(f"weight {variable.path} holds non-finite values")


class ResumableCheckpoint(keras.callbacks.Callback):
    """Saves model weights, optimizer variables and the epoch at the end of every epoch.

    Why not Keras's ``BackupAndRestore`` (checked against Keras 3.15's source): its
    ``model.save_weights`` file does hold the optimizer's variables (``optimizer/vars/…``),
    but it overwrites the weights file in place and then writes the epoch to a separate
    ``training_metadata.json``, so a kill between the two leaves epoch-k weights with
    epoch k−1's counter: the resumed run silently repeats an epoch and is no longer
    identical to an uninterrupted one. Its ``double_checkpoint`` fallback only covers an
    ``OSError`` while loading, and it restores inside ``fit``, after the phase runner
    needs the epoch (to skip the consumed batches of the data). Here each checkpoint is a
    fresh folder ``ckpt-<epoch>`` holding weights, optimizer and epoch together;
    ``state.json`` is replaced atomically to point at it only once it is complete, so a
    kill at any moment leaves the previous checkpoint valid and never a half-written or
    mismatched one (the kill -9 resume test is bit-identical).

    Usage: ``start = ckpt.restore(model)`` after ``compile``, then
    ``model.fit(..., initial_epoch=start, callbacks=[ckpt])``.
    """

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    @property
    def _state_path(self):
        return os.path.join(self.directory, "state.json")

    def latest(self) -> dict | None:
        if not os.path.exists(self._state_path):
            return None
        try:
            with open(self._state_path) as f:
                state = json.load(f)
            return {"epoch": int(state["epoch"]), "folder": str(state["folder"])}
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{self._state_path} is damaged. To recover, delete "
                             f"{self.directory} and re-run the same command: this phase "
                             "restarts from its beginning, finished phases are kept.") from None

    def restore(self, model) -> int:
        """Loads the latest checkpoint into ``model`` (compiled); returns its epoch."""
        state = self.latest()
        if state is None:
            return 0
        folder = os.path.join(self.directory, state["folder"])
        optimizer = model.optimizer
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        try:
            model.load_weights(os.path.join(folder, "model.weights.h5"))
            with np.load(os.path.join(folder, "optimizer.npz")) as saved:
                values = [saved[f"v{i}"] for i in range(len(saved.files))]
        except Exception as err:
            raise ValueError(
                f"the checkpoint {folder} is damaged ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:160] if str(err) else ''}). To recover, delete "
                f"{self.directory} and re-run the same command: this phase restarts from its "
                "beginning, finished phases are kept.") from None
        if len(values) != len(optimizer.variables):
            raise ValueError(f"{folder}: checkpoint holds {len(values)} optimizer variables, "
                             f"the optimizer has {len(optimizer.variables)}; was it written "
                             "by another configuration?")
        for variable, value in zip(optimizer.variables, values):
            variable.assign(value)
        return int(state["epoch"])

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        folder = f"ckpt-{epoch + 1}"
        path = os.path.join(self.directory, folder)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        self.model.save_weights(os.path.join(path, "model.weights.h5"))
        variables = self.model.optimizer.variables
        np.savez(os.path.join(path, "optimizer.npz"),
                 **{f"v{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(variables)})
        write_json(self._state_path, {"epoch": epoch + 1, "folder": folder}, indent=None,
                   sort_keys=False)
        for name in os.listdir(self.directory):
            if name.startswith("ckpt-") and name != folder:
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
