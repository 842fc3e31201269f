"""Do two source trees train bit-identical weights? (a refactoring's "numbers unchanged").

    # before the change: train with a checkout of the old commit
    git clone -q . /tmp/old && git -C /tmp/old checkout <old commit>
    python benchmarks/bit_identity.py train --source=/tmp/old --out=/tmp/bitid/before
    # after the change: train with this tree, then compare
    python benchmarks/bit_identity.py train --source=. --out=/tmp/bitid/after
    python benchmarks/bit_identity.py compare /tmp/bitid/before /tmp/bitid/after

Each run is `configs/tiny.flags` with `--deterministic` on TensorFlow, seed 0: baseline,
headfreeze and baseline + DANN (and + Tsai). `train` writes every final weight of each run
(``model.keras``'s weights, in order, with their paths) to ``<out>/<run>.npz`` and the
metrics to ``<out>/<run>.json``. Floating-point results differ between CPU models, so the
two trees must be trained on one machine; this is a script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

RUNS = {
    "baseline": ["--method=baseline"],
    "headfreeze": ["--method=headfreeze"],
    "baseline_dann": ["--method=baseline", "--da=dann"],
    "baseline_tsai": ["--method=baseline", "--da=tsai"],
}

_DUMP = """
import json, sys
import numpy as np
import keras
import tada_keras
getattr(tada_keras, "register_serializables", lambda: None)()  # older trees import all eagerly
model = keras.saving.load_model(sys.argv[1], compile=False)
arrays = {f"{i:04d}:{v.path}": keras.ops.convert_to_numpy(v.value)
          for i, v in enumerate(model.weights)}
np.savez(sys.argv[2], **arrays)
"""


def train(source: str, out: str, data_dir: str) -> None:
    source = os.path.abspath(source)
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": source, "KERAS_BACKEND": "tensorflow",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    for name, extra in RUNS.items():
        model_dir = os.path.join(out, "runs", name)
        command = [sys.executable, "-m", "tada_keras.train",
                   f"--flagfile={source}/configs/tiny.flags", f"--data_dir={data_dir}",
                   "--deterministic", "--seed=0", f"--model_dir={model_dir}", *extra]
        print(" ".join(command[1:]), flush=True)
        subprocess.run(command, cwd=source, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, "-c", _DUMP, os.path.join(model_dir, "model.keras"),
                        os.path.join(out, f"{name}.npz")], cwd=source, env=env, check=True)
        with open(os.path.join(model_dir, "metrics.json")) as f:
            metrics = json.load(f)
        with open(os.path.join(out, f"{name}.json"), "w") as f:
            json.dump({"target_test": metrics["target_test"]}, f, indent=2, sort_keys=True)


def compare(before: str, after: str) -> bool:
    import numpy as np

    same = True
    for name in RUNS:
        a = np.load(os.path.join(before, f"{name}.npz"))
        b = np.load(os.path.join(after, f"{name}.npz"))
        if len(a.files) != len(b.files):
            print(f"{name}: {len(a.files)} vs {len(b.files)} weights")
            same = False
            continue
        differing = [(ka, kb) for ka, kb in zip(a.files, b.files)
                     if a[ka].shape != b[kb].shape or
                     a[ka].tobytes() != b[kb].tobytes()]
        renamed = sum(ka.split(":", 1)[1] != kb.split(":", 1)[1]
                      for ka, kb in zip(a.files, b.files))
        total = sum(a[k].size for k in a.files)
        print(f"{name}: {len(a.files)} weights ({total:,} values): "
              f"{'bit-identical' if not differing else f'{len(differing)} differ'}"
              + (f"; {renamed} renamed" if renamed else ""))
        for ka, kb in differing[:5]:
            print(f"    {ka} vs {kb}: max |d| = "
                  f"{np.max(np.abs(a[ka].astype(np.float64) - b[kb])):.3g}")
        same = same and not differing
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--source", default=".")
    t.add_argument("--out", required=True)
    t.add_argument("--data_dir", default=os.path.abspath(".tfds"))
    c = sub.add_parser("compare")
    c.add_argument("before")
    c.add_argument("after")
    args = parser.parse_args()
    if args.command == "train":
        train(args.source, args.out, os.path.abspath(args.data_dir))
        return 0
    return 0 if compare(args.before, args.after) else 1


if __name__ == "__main__":
    sys.exit(main())
