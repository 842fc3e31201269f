"""Label-free checkpoint selection (``--select``) and the per-epoch checkpoint scores.

At every epoch end ``EpochScores`` scores the model with a ``scorer`` (``model -> {name:
value}``; the CLI's is ``inference.checkpoint_scorer``: the source-val main-task metrics
``val_source_main_<key>`` and the target-val anchor metric ``val_target_anchor_<key>``,
read without any target main-task label). With weight averaging the averaged weights are
scored (they are what the phase would end with) and the raw ones too (``raw_`` prefix).
The scores join the epoch's logs, so ``history.csv``, ``DONE`` and TensorBoard keep them.

A rule (``RULES``) names the score that picks the final weights of the last phase:

* ``last``: the weights the phase ends with (no selection; the default);
* ``source_val``: the best source-val main-task error (the task's primary metric);
* ``target_anchor``: the best target-val anchor score (mIoU for segmentation, NME for
  keypoints): label-free for the main task, the anchor is labelled on the target anyway.

``BestCheckpoint`` tracks the best epoch so far in ``<phase dir>/selected/`` (one weights
file and ``selected.json``; a tie keeps the earlier epoch, a non-finite score never wins).
A kill between its write and the epoch's checkpoint replays that epoch bit-identically, so
the kept file stays right.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import json
import math
import os

import keras

from tada_keras.atomic import atomic_path, write_json
from tada_keras.training.averaging import averaged_weights, trainable_values

RULES = ("last", "source_val", "target_anchor")
SOURCE_PREFIX = "val_source_main_"
ANCHOR_PREFIX = "val_target_anchor_"
RAW_PREFIX = "raw_"


@dataclasses.dataclass(frozen=True)
class Criterion:
    """The score a rule selects by: its log key and its direction."""

    rule: str
    key: str
    higher_is_better: bool

    def better(self, value: float, than: float) -> bool:
        return value > than if self.higher_is_better else value < than


def criterion(rule: str, main_task, anchor_task) -> Criterion | None:
    """The ``Criterion`` of ``rule`` for these tasks (``Task`` objects); None for ``last``."""
    if rule not in RULES:
        raise ValueError(f"--select={rule!r}: expected one of {list(RULES)}")
    if rule == "last":
        return None
    if rule == "source_val":
        column = next(c for c in main_task.columns if c.key == main_task.primary)
        return Criterion(rule, SOURCE_PREFIX + column.key, column.higher_is_better)
    if anchor_task is None or not anchor_task.anchor_metric:
        raise ValueError(f"--select=target_anchor: the anchor task "
                         f"{getattr(anchor_task, 'name', None)!r} has no evaluation metric")
    return Criterion(rule, ANCHOR_PREFIX + anchor_task.anchor_metric,
                     anchor_task.anchor_higher_is_better)


class BestCheckpoint:
    """The best weights of a phase so far by ``criterion``, kept in ``directory``."""

    def __init__(self, directory: str, criterion: Criterion):
        self.directory = directory
        self.criterion = criterion

    @property
    def state_path(self) -> str:
        return os.path.join(self.directory, "selected.json")

    def state(self) -> dict | None:
        if not os.path.exists(self.state_path):
            return None
        try:
            with open(self.state_path) as f:
                state = json.load(f)
            state["epoch"], state["score"] = int(state["epoch"]), float(state["score"])
            return state
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{self.state_path} is damaged. To recover, delete "
                             f"{self.directory} and the phase's backup/ folder and re-run "
                             "the same command.") from None

    def offer(self, epoch: int, scores: dict, model) -> bool:
        """Keeps ``model``'s current weights if ``scores`` beat the best so far."""
        value = scores.get(self.criterion.key)
        if value is None or not math.isfinite(value):
            return False
        best = self.state()
        if best is not None and best["epoch"] != epoch and \
                not self.criterion.better(value, best["score"]):
            return False
        os.makedirs(self.directory, exist_ok=True)
        name = f"epoch-{epoch}.weights.h5"
        with atomic_path(os.path.join(self.directory, name), ".weights.h5") as tmp:
            model.save_weights(tmp)
        write_json(self.state_path, {"epoch": epoch, "score": value, "rule":
                                     self.criterion.rule, "key": self.criterion.key,
                                     "file": name})
        for path in glob.glob(os.path.join(self.directory, "epoch-*.weights.h5")):
            if os.path.basename(path) != name:
                os.remove(path)
        return True

    def weights_file(self) -> str | None:
        state = self.state()
        return None if state is None else os.path.join(self.directory, state["file"])


class EpochScores(keras.callbacks.Callback):
    """Adds the checkpoint scores to each epoch's logs and offers the checkpoint to
    ``best`` (a ``BestCheckpoint`` or None). With weight averaging the averaged weights are
    scored and offered, and the raw weights' scores are logged with the ``raw_`` prefix;
    ``raw_weights`` keeps the raw values of the last epoch end (``finalize`` replaces them
    with the averages when ``fit`` returns)."""

    def __init__(self, scorer, best: BestCheckpoint | None = None):
        super().__init__()
        self.scorer = scorer
        self.best = best
        self.raw_weights = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        with averaged_weights(self.model) as averaged:
            scores = self.scorer(self.model) if self.scorer is not None else {}
            if self.best is not None:
                self.best.offer(epoch + 1, scores, self.model)
        if averaged:
            self.raw_weights = trainable_values(self.model)
            if self.scorer is not None:
                logs.update({RAW_PREFIX + k: v for k, v in self.scorer(self.model).items()})
        logs.update(scores)


class CurveFile(keras.callbacks.Callback):
    """Appends every epoch end's ``scorer`` values (of the averaged weights, and of the raw
    ones with the ``raw_`` prefix when averaging) to the CSV file ``path`` (``epoch`` first;
    an epoch replayed after a resume appears twice, ``read_curve`` keeps its last row)."""

    def __init__(self, scorer, path: str):
        super().__init__()
        self.scorer = scorer
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        with averaged_weights(self.model) as averaged:
            row = self.scorer(self.model)
        if averaged:
            row.update({RAW_PREFIX + k: v for k, v in self.scorer(self.model).items()})
        new = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["epoch", *sorted(row)])
            if new:
                writer.writeheader()
            writer.writerow({"epoch": epoch + 1, **row})


def read_curve(path: str) -> dict[int, dict[str, float]]:
    """``CurveFile``'s rows by epoch (the last row of a replayed epoch)."""
    with open(path, newline="") as f:
        return {int(r.pop("epoch")): {k: float(v) for k, v in r.items()}
                for r in csv.DictReader(f)}
