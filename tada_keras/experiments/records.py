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
import platform
import subprocess

from tada_keras.atomic import write_json

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FORMAT = 1


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "system": platform.platform(),
            "python": platform.python_version()}


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


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


def write_record(path: str, model_dir: str, args: list[str], seconds: float) -> dict:
    """Writes the record of the finished run in ``model_dir`` atomically; returns it."""
    with open(os.path.join(model_dir, "metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    record = {"format": FORMAT, "config": config, "metrics": metrics,
              "history": history_summary(model_dir), "seconds": round(seconds, 1),
              "args": list(args), "commit": commit(), "machine": machine()}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json(path, record, indent=1, allow_nan=True)
    return record


def read_metrics(path: str) -> dict:
    with open(path) as f:
        record = json.load(f)
    if record.get("format") != FORMAT or "metrics" not in record:
        raise ValueError(f"{path}: not a run record of format {FORMAT}")
    return record["metrics"]
