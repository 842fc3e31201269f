"""RunDirectory: the phase runner's progress kept in a run directory (resume after a kill).

Layout under ``model_dir`` (see ``tada_keras.run``)::

    phase_<name>/backup/            last epoch checkpoint (weights + optimizer) while running
    phase_<name>/history.csv        per-epoch logs (Keras CSVLogger, appended on resume)
    phase_<name>/loss_weights.json  --balance_losses: the weights measured at its start
    phase_<name>/final.weights.h5, phase_<name>/DONE   written atomically when it ends
    phase_<name>/selected/          --select: the best epoch so far (selected.json and, while
                                    the phase runs, its weights file)
    phase_<name>/final.raw.weights.h5   --ema_momentum, last phase: the raw (not averaged)
                                    weights of the last step, for the comparison in
                                    metrics.json's ``raw_weights``
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil

import keras

from tada_keras.atomic import atomic_path, write_json
from tada_keras.methods import LossWeights
from tada_keras.training.averaging import lent_weights
from tada_keras.training.callbacks import ResumableCheckpoint, StopOnNonFinite
from tada_keras.training.phases import PhaseStore
from tada_keras.training.selection import BestCheckpoint, Criterion, EpochScores


class RunDirectory(PhaseStore):
    """The phase runner's progress in ``model_dir/phase_<name>/`` (see the module doc):
    a finished phase's ``final.weights.h5`` and ``DONE`` (history, seconds, optimizer
    steps), the last epoch's ``backup/`` checkpoint while it runs, and the measured
    ``loss_weights.json`` with ``--balance_losses`` (measured once, reused on resume)."""

    def __init__(self, model_dir: str, hint: str = "", log=print, scorer=None,
                 criterion: Criterion | None = None, last_phase: str | None = None):
        """``scorer``: ``model -> scores`` of every epoch end (``training/selection.py``),
        or None; ``criterion``: the ``--select`` rule that picks ``last_phase``'s final
        weights among its epoch ends (None: its last weights)."""
        self.model_dir = model_dir
        self.hint = hint
        self.log = log
        self.scorer = scorer
        self.criterion = criterion
        self.last_phase = last_phase
        self.timings: dict[str, float] = {}
        self._checkpoints: dict[str, ResumableCheckpoint] = {}
        self._scores: dict[str, EpochScores] = {}
        # What this invocation took over from an earlier one: finished phases loaded,
        # phases resumed at an epoch (``fingerprints.json``'s ``resumes``).
        self.resumed: list[dict] = []

    def phase_dir(self, phase) -> str:
        return os.path.join(self.model_dir, f"phase_{phase.name}")

    def _path(self, phase, name) -> str:
        return os.path.join(self.phase_dir(phase), name)

    def _checkpoint(self, phase) -> ResumableCheckpoint:
        if phase.name not in self._checkpoints:
            self._checkpoints[phase.name] = ResumableCheckpoint(self._path(phase, "backup"))
        return self._checkpoints[phase.name]

    def finished(self, phase):
        done, final = self._path(phase, "DONE"), self._path(phase, "final.weights.h5")
        if not os.path.exists(done):
            return None
        if not os.path.isfile(final):
            # Deleted, or lost with a disk: the phase trains again, from its start (its
            # history and any old checkpoint go with it, so nothing is counted twice).
            self.log(f"[{phase.name}] {done} is there but {final} is missing: training "
                     f"phase {phase.name} again from its start")
            for name in ("DONE", "history.csv", "loss_weights.json", "target_test_curve.csv",
                         "final.raw.weights.h5"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self._path(phase, name))
            for folder in ("backup", "selected"):  # --select starts over with it
                shutil.rmtree(self._path(phase, folder), ignore_errors=True)
            return None
        with open(done) as f:
            return json.load(f).get("history", {})

    def load_finished(self, model, phase):
        final = self._path(phase, "final.weights.h5")
        self.log(f"[{phase.name}] already complete, loading {final}")
        model.load_weights(final)
        self.resumed.append({"phase": phase.name, "finished": True})

    def resume_epoch(self, phase) -> int:
        os.makedirs(self.phase_dir(phase), exist_ok=True)
        state = self._checkpoint(phase).latest()
        return state["epoch"] if state else 0

    def restore(self, model, phase) -> int:
        epoch = self._checkpoint(phase).restore(model)
        if epoch:
            self.resumed.append({"phase": phase.name, "epoch": epoch})
        return epoch

    def loss_weights(self, phase, measure):
        path = self._path(phase, "loss_weights.json")
        if os.path.exists(path):
            with open(path) as f:
                return LossWeights(**json.load(f))
        weights = measure()
        write_json(path, weights.as_dict())
        return weights

    def best(self, phase) -> BestCheckpoint | None:
        """The ``--select`` tracker of ``phase`` (None: this phase ends at its last weights)."""
        if self.criterion is None or phase.name != self.last_phase:
            return None
        return BestCheckpoint(self._path(phase, "selected"), self.criterion)

    def raw_weights_path(self, phase) -> str:
        return self._path(phase, "final.raw.weights.h5")

    def callbacks(self, phase) -> list:
        # A diverged epoch stops the run before it is scored or checkpointed; an epoch is
        # scored (and offered to --select) before its checkpoint, so a kill in between
        # replays it.
        self._scores[phase.name] = EpochScores(self.scorer, self.best(phase))
        return [StopOnNonFinite(phase.name, hint=self.hint), self._scores[phase.name],
                self._checkpoint(phase)]

    def finish(self, model, phase, history, seconds):
        self.timings[phase.name] = seconds
        scores = self._scores.get(phase.name)
        raw = scores.raw_weights if scores is not None else None
        if raw is not None and phase.name == self.last_phase:
            with lent_weights(model, raw), atomic_path(self.raw_weights_path(phase),
                                                       ".weights.h5") as tmp:
                model.save_weights(tmp)
        # Read before a --select weights file (which holds the optimizer's variables of its
        # epoch) replaces the weights: the phase ran all its steps.
        steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        best = self.best(phase)
        selected = best.state() if best is not None else None
        if selected is not None:
            self.log(f"[{phase.name}] --select={selected['rule']}: epoch {selected['epoch']} "
                     f"({selected['key']} = {selected['score']:.4f})")
            model.load_weights(best.weights_file())
        with atomic_path(self._path(phase, "final.weights.h5"), ".weights.h5") as tmp:
            model.save_weights(tmp)
        logged = {k: [float(v) for v in vs] for k, vs in
                  _read_history(self.phase_dir(phase), history).items()}
        write_json(self._path(phase, "DONE"), {
            "history": logged, "seconds": seconds,
            "optimizer_steps": steps, "selected": selected})
        if selected is not None:  # final.weights.h5 holds it now
            os.remove(best.weights_file())
        shutil.rmtree(self._checkpoint(phase).directory, ignore_errors=True)
        return logged

    def selected(self, phase) -> dict | None:
        """What ``--select`` chose for a finished phase (None: its last weights)."""
        if not os.path.exists(self._path(phase, "DONE")):
            return None
        with open(self._path(phase, "DONE")) as f:
            return json.load(f).get("selected")


def _read_history(phase_dir, history):
    path = os.path.join(phase_dir, "history.csv")
    if os.path.exists(path):
        with open(path) as f:
            rows = list(csv.DictReader(f))
        if rows:
            return {k: [_float(r[k]) for r in rows] for k in rows[0] if k != "epoch"}
    return history.history


def _float(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


