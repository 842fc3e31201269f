"""Committed run records: a finished run's small JSON that lets a study span machines.

Run directories (weights, checkpoints, TensorBoard logs) stay on the machine that trained
them. With ``--results=DIR`` the harness also writes, for every run it finishes,
``DIR/<run slug>/seed_<k>.json``: the resolved config, ``metrics.json``, a per-phase summary
of the training history, the training seconds, the commit and the machine. These files are
small and meant to be committed; a later harness run (on any machine) counts a recorded
run as finished and reads its metrics from the record, so a study is completed over several
sessions. A recorded run whose weights a not-yet-finished run starts from (``--init_from``)
is trained again where its weights are missing.
"""

from __future__ import annotations

import json
import os

from tada_keras.atomic import write_json
from tada_keras.training.fingerprint import commit, machine

FORMAT = 1


def history_summary(model_dir: str) -> dict:
    """Per phase: epochs trained and the last epoch's value of every logged metric."""
    summary = {}
    for name in sorted(os.listdir(model_dir)):
        done = os.path.join(model_dir, name, "DONE")
        if not (name.startswith("phase_") and os.path.isfile(done)):
            continue
        with open(done) as f:
            state = json.load(f)
        history = state.get("history", {})
        summary[name[len("phase_"):]] = {
            "epochs": max((len(v) for v in history.values()), default=0),
            "last": {k: v[-1] for k, v in history.items() if v},
            "optimizer_steps": state.get("optimizer_steps"),
            "seconds": state.get("seconds")}
    return summary


_SCORE_PREFIXES = ("val_", "raw_val_")


def curves(model_dir: str) -> dict:
    """Per phase: every epoch's checkpoint scores (``--score_epochs``/``--select``) and the
    analysis-only ``target_test_curve`` (``--target_test_curve``), as small lists."""
    from tada_keras.training.selection import read_curve

    out = {}
    for name in sorted(os.listdir(model_dir)):
        phase_dir = os.path.join(model_dir, name)
        done = os.path.join(phase_dir, "DONE")
        if not (name.startswith("phase_") and os.path.isfile(done)):
            continue
        with open(done) as f:
            history = json.load(f).get("history", {})
        entry = {k: v for k, v in history.items() if k.startswith(_SCORE_PREFIXES)}
        curve = os.path.join(phase_dir, "target_test_curve.csv")
        if os.path.exists(curve):
            rows = read_curve(curve)
            entry["target_test_curve"] = {"epoch": sorted(rows), **{
                k: [rows[e][k] for e in sorted(rows)] for k in sorted(next(iter(
                    rows.values()), {}))}}
        if entry:
            out[name[len("phase_"):]] = entry
    return out


def write_record(path: str, model_dir: str, args: list[str], seconds: float) -> dict:
    """Writes the record of the finished run in ``model_dir`` atomically; returns it."""
    with open(os.path.join(model_dir, "metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    record = {"format": FORMAT, "config": config, "metrics": metrics,
              "history": history_summary(model_dir), "seconds": round(seconds, 1),
              "args": list(args), "commit": commit(), "machine": machine()}
    scores = curves(model_dir)
    if scores:
        record["curves"] = scores
    fingerprints = os.path.join(model_dir, "fingerprints.json")
    if os.path.exists(fingerprints):  # runs trained before fingerprints have none
        with open(fingerprints) as f:
            record["fingerprints"] = json.load(f)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json(path, record, indent=1, allow_nan=True)
    return record


class RecordError(ValueError):
    """A committed record cannot stand for the planned run; the message names the file."""


# Settings that say where a run's files were, not what it is: records move between machines.
_WHERE = ("model_dir", "data_dir", "source_manual_dir", "target_manual_dir", "init_from")


def read_record(path: str, expected=None) -> dict:
    """The record in ``path``; with ``expected`` (the planned run's ``RunConfig``) it must
    be a record of that run: the same method, seed and settings (paths aside; settings
    added after it was written take their defaults). Raises ``RecordError`` (one line
    naming the file) for a damaged, truncated or mismatched record."""
    import dataclasses

    from tada_keras.config import RunConfig

    fix = "delete it and re-run the harness command: that run is trained again"
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as err:
        reason = (f"invalid JSON at line {err.lineno}" if hasattr(err, "lineno")
                  else type(err).__name__)
        raise RecordError(f"{path}: not a readable run record ({reason}); {fix}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or \
            not isinstance(record.get("metrics"), dict) or \
            not isinstance(record.get("config"), dict):
        raise RecordError(f"{path}: not a run record of format {FORMAT} (metrics and config "
                          f"expected); {fix}")
    if expected is not None:
        known = {f.name for f in dataclasses.fields(RunConfig)}
        saved = {**dataclasses.asdict(RunConfig()),
                 **{k: v for k, v in record["config"].items() if k in known}}
        wanted = dataclasses.asdict(expected)
        diff = [k for k in sorted(wanted) if k not in _WHERE and saved.get(k) != wanted[k]]
        if diff:
            shown = ", ".join(f"{k}={saved.get(k)!r} (planned {wanted[k]!r})" for k in diff[:4])
            raise RecordError(f"{path}: the record is not of the planned run "
                              f"({shown}{', ...' if len(diff) > 4 else ''}); move it away or "
                              f"{fix}")
    return record


def read_metrics(path: str, expected=None) -> dict:
    """The metrics of the record in ``path`` (``read_record``'s checks)."""
    return read_record(path, expected)["metrics"]
