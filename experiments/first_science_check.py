"""Issue 3 §4: every method on the embedded benchmark, 3 seeds, two fairness settings.

    python experiments/first_science_check.py --out=runs/science --seeds=0,1,2

Runs (each a `python -m tada_keras.train` with configs/demo.flags, resumable; finished
runs are skipped):

* equal-steps protocol (a): baseline, mtl_src, mtl_tgt, mtl_both, headfreeze, oracle with
  batch-norm exposure on (every method's batch holds target images);
* batch-norm exposure off for the methods that use no target label (baseline, mtl_src);
* protocol (b): one converged MTL(+src) model per seed, then HeadFreeze phase 2 and
  MTL(+both) fine-tuned from it for the same number of steps.

Writes `<out>/results.md` (mean ± std over seeds of target-test mean/median error and
a11_25) and `<out>/results.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("baseline", "mtl_src", "mtl_tgt", "mtl_both", "headfreeze", "oracle")


def run(model_dir, extra, args):
    if os.path.exists(os.path.join(model_dir, "metrics.json")):
        return
    cmd = [sys.executable, "-m", "tada_keras.train", "--flagfile=configs/demo.flags",
           f"--model_dir={model_dir}", f"--data_dir={args.data_dir}",
           f"--steps={args.steps}"] + extra
    print(" ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


def grid(args):
    rows = {}
    for seed in args.seeds:
        s = [f"--seed={seed}"]
        for m in METHODS:
            rows.setdefault(f"{m} (a, bn on)", []).append(
                (os.path.join(args.out, f"a_bn1_{m}_s{seed}"), [f"--method={m}"] + s))
        for m in ("baseline", "mtl_src"):
            rows.setdefault(f"{m} (a, bn off)", []).append(
                (os.path.join(args.out, f"a_bn0_{m}_s{seed}"),
                 [f"--method={m}", "--bn_exposure=false"] + s))
        base = os.path.join(args.out, f"b_mtlsrc_s{seed}")
        rows.setdefault("mtl_src converged (b)", []).append((base, ["--method=mtl_src"] + s))
        init = os.path.join(base, "phase_train", "final.weights.h5")
        half = [f"--steps={args.steps // 2}", f"--init_from={init}"] + s
        rows.setdefault("headfreeze phase 2 (b)", []).append(
            (os.path.join(args.out, f"b_hf_s{seed}"),
             ["--method=headfreeze", "--phase1_steps=0"] + half))
        rows.setdefault("mtl_both fine-tuned (b)", []).append(
            (os.path.join(args.out, f"b_both_s{seed}"), ["--method=mtl_both"] + half))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/science")
    parser.add_argument("--data_dir", default=os.path.join(ROOT, ".tfds"))
    parser.add_argument("--seeds", default="0,1,2", type=lambda s: [int(v) for v in s.split(",")])
    parser.add_argument("--steps", default=600, type=int)
    args = parser.parse_args()
    rows = grid(args)
    # Converged source models first: protocol (b) runs start from them.
    order = sorted(rows, key=lambda r: 0 if "converged" in r else 1)
    for name in order:
        for model_dir, extra in rows[name]:
            run(model_dir, extra, args)
    table = {}
    for name, runs in rows.items():
        values = []
        for model_dir, _ in runs:
            with open(os.path.join(model_dir, "metrics.json")) as f:
                values.append(json.load(f)["target_test"])
        table[name] = {k: (float(np.mean([v[k] for v in values])),
                           float(np.std([v[k] for v in values])))
                       for k in ("mean", "median", "a11_25")}
    lines = [f"Target test, {len(args.seeds)} seeds, {args.steps} steps "
             "(configs/demo.flags), mean ± std over seeds.", "",
             "| run | mean ° | median ° | < 11.25° |", "|---|---:|---:|---:|"]
    for name, t in table.items():
        lines.append(f"| {name} | {t['mean'][0]:.2f} ± {t['mean'][1]:.2f} | "
                     f"{t['median'][0]:.2f} ± {t['median'][1]:.2f} | "
                     f"{t['a11_25'][0]:.3f} ± {t['a11_25'][1]:.3f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(table, f, indent=2)
    print(text)


if __name__ == "__main__":
    main()
