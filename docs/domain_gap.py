"""The embedded benchmark's domain-gap table: label-free predictors and networks.

    python docs/domain_gap.py run --data_dir=.tfds      # runs the rows not yet recorded
    python docs/domain_gap.py table                     # rewrites the README's table

``run`` measures every row of ``ROWS`` whose result file is missing under
``docs/results/domain_gap/`` (one small JSON per row: the resolved run config, target-test
and source-val metrics, seconds, commit and machine; never weights), so the table can be
finished over several sessions and machines. ``table`` writes the Markdown table from those
files between the README's ``<!-- domain_gap -->`` markers: the numbers are never typed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from tada_keras.training.fingerprint import commit, machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "results", "domain_gap")
README = os.path.join(ROOT, "README.md")
BEGIN, END = "<!-- domain_gap -->", "<!-- /domain_gap -->"

# name: (label in the table, train flags on top of configs/demo.flags, or None for the
# label-free predictors of datasets/sim2real_rooms/measure.py).
ROWS = {
    "constant": ("constant (mean source normal)", None),
    "reference": ('GT segmentation → class-mean source normal ("reference")', None),
    "lite0_baseline_1000": ("source-only EfficientNet-Lite0 ImageNet, 1000 steps",
                            ["--method=baseline", "--steps=1000"]),
    "lite0_baseline_3000": ("source-only EfficientNet-Lite0 ImageNet, 3000 steps",
                            ["--method=baseline", "--steps=3000"]),
    "lite0_oracle_3000": ("**Oracle** EfficientNet-Lite0 ImageNet, 3000 steps (also trained "
                          "on target normals)", ["--method=oracle", "--steps=3000"]),
}
COLUMNS = (("source_val", "mean"), ("target_test", "mean"), ("target_test", "median"),
           ("target_test", "a11_25"))


def _write(name: str, record: dict) -> None:
    os.makedirs(RESULTS, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=RESULTS, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(RESULTS, f"{name}.json"))


def _predictor_rows(data_dir: str) -> dict:
    from tada_datasets.sim2real_rooms import measure
    from tada_datasets.sim2real_rooms.sim2real_rooms_dataset_builder import Builder

    builder = Builder(config="default", data_dir=data_dir)
    builder.download_and_prepare()
    constant, per_class = measure.source_means(builder)
    out = {"constant": {}, "reference": {}}
    for split in ("target_test", "source_val"):
        stats, _ = measure.evaluate(builder, split, constant, per_class)
        for name in out:
            out[name][split] = stats[name]
    return out


def run(data_dir: str, runs_dir: str) -> None:
    missing = [n for n in ROWS if not os.path.exists(os.path.join(RESULTS, f"{n}.json"))]
    if not missing:
        print("every row is recorded; nothing to run")
        return
    if {"constant", "reference"} & set(missing):
        for name, metrics in _predictor_rows(data_dir).items():
            _write(name, {"row": name, "metrics": metrics, "machine": machine(),
                          "commit": commit(),
                          "command": "datasets/sim2real_rooms/measure.py predictors"})
            print(f"recorded {name}: target test {metrics['target_test']['mean']:.2f}°")
    for name in missing:
        flags = ROWS[name][1]
        if flags is None:
            continue
        model_dir = os.path.join(runs_dir, name)
        cmd = [sys.executable, "-m", "tada_keras.train", "--flagfile=configs/demo.flags",
               f"--data_dir={data_dir}", f"--model_dir={model_dir}", *flags]
        print("running " + " ".join(cmd[1:]), flush=True)
        start = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, KERAS_BACKEND="tensorflow"))
        if proc.returncode:
            sys.exit(f"error: row {name} failed (exit {proc.returncode}); nothing recorded")
        with open(os.path.join(model_dir, "metrics.json")) as f:
            metrics = json.load(f)
        with open(os.path.join(model_dir, "config.json")) as f:
            config = json.load(f)
        _write(name, {"row": name, "config": config, "machine": machine(),
                      "commit": commit(), "seconds": round(time.time() - start, 1),
                      "command": "python -m tada_keras.train --flagfile=configs/demo.flags "
                      + " ".join(flags),
                      "metrics": {k: metrics[k] for k in ("target_test", "source_val")}})
        print(f"recorded {name}: target test {metrics['target_test']['mean']:.2f}°")


def render() -> str:
    head = ("| predictor | source val mean ° | target test mean ° | target median ° | "
            "target < 11.25° |")
    lines = [head, "|---|---:|---:|---:|---:|"]
    for name, (label, _) in ROWS.items():
        path = os.path.join(RESULTS, f"{name}.json")
        if not os.path.exists(path):
            lines.append(f"| {label} | not run | | | |")
            continue
        with open(path) as f:
            m = json.load(f)["metrics"]
        cells = [f"{m[split][key]:.3f}" if key.startswith("a") else f"{m[split][key]:.1f}"
                 for split, key in COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(readme: str = README) -> None:
    from tada_keras.atomic import replace_marked_block

    try:
        replace_marked_block(readme, BEGIN, END, render())
    except ValueError as err:
        sys.exit(f"error: {err}")
    print(render())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "table"))
    parser.add_argument("--data_dir", default=os.path.join(ROOT, ".tfds"))
    parser.add_argument("--runs_dir", default=os.path.join(ROOT, "runs", "domain_gap"))
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.data_dir, args.runs_dir)
    else:
        table()


if __name__ == "__main__":
    main()
