"""Evaluation speed: ``model.predict`` per batch against the compiled predict function
(``predict_on_batch``, what ``inference.predict_padded`` uses), at the demo's size.

    KERAS_BACKEND=tensorflow python benchmarks/eval_speed.py \
        --out=benchmarks/eval_speed_tensorflow.json      # ~1 min; also jax, torch
    python benchmarks/eval_speed.py --readme             # README table from those files

The demo's network (EfficientNet-Lite0 + FPN 64, random init: speed does not depend on
the weights), batches of 8 images at 128x128 (``--eval_batch_size`` of configs/demo.flags),
on the Keras backend of ``KERAS_BACKEND``. Both ways predict the same batches; the script
checks that their outputs are bit-identical and prints the mean time per batch after three
warm-up batches, with the CPU's model and SIMD flags (compare ratios from one run only).
Every epoch end of a ``--score_epochs`` run and every evaluation predicts this way.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SIMD = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def _timed(predict, batches):
    for x in batches[:3]:
        predict(x)  # trace and warm up
    start = time.perf_counter()
    outputs = [predict(x) for x in batches]
    return (time.perf_counter() - start) / len(batches), outputs


def measure(batches: int, batch_size: int, size: int) -> dict:
    import keras
    import numpy as np

    from tada_keras import backend
    from tada_keras.training import build_model
    from tada_keras.training.fingerprint import machine

    model = build_model(backbone="efficientnet_lite0", decoder_channels=64,
                        anchor_config={"num_classes": 41})
    rng = np.random.default_rng(0)
    xs = [(rng.random((batch_size, size, size, 3)) * 255).astype("float32")
          for _ in range(batches)]
    slow, a = _timed(lambda x: model.predict(x, verbose=0), xs)
    fast, b = _timed(model.predict_on_batch, xs)
    identical = all(np.array_equal(np.asarray(p[k]), np.asarray(q[k]))
                    for p, q in zip(a, b) for k in p)
    flags = backend.cpu_flags() or set()
    return {"backend": keras.config.backend(), "cpu": machine()["cpu"],
            "simd": [f for f in SIMD if f in flags], "batches": batches,
            "batch_size": batch_size, "size": size,
            "predict_ms": round(1000 * slow, 1), "predict_on_batch_ms": round(1000 * fast, 1),
            "speedup": round(slow / fast, 2), "identical": identical}


def readme_table(paths: list[str]) -> str:
    """The README's Markdown table of the result files (one row per backend)."""
    rows = []
    for path in sorted(paths):
        with open(path) as f:
            r = json.load(f)
        rows.append(f"| {r['backend']} | {r['cpu']} ({', '.join(r['simd']) or 'no AVX'}) | "
                    f"{r['predict_ms']} | {r['predict_on_batch_ms']} | {r['speedup']}x | "
                    f"{'yes' if r['identical'] else '**no**'} |")
    head = ("| backend | CPU | `model.predict` ms / batch of 8 | `predict_on_batch` ms | "
            "speed-up | outputs bit-identical |\n|---|---|---:|---:|---:|---|")
    return head + "\n" + "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", default=None, help="also write the result as JSON here")
    parser.add_argument("--readme", action="store_true",
                        help="write README.md's table from benchmarks/eval_speed_*.json")
    args = parser.parse_args(argv)
    if args.readme:
        from tada_keras.atomic import replace_marked_block

        paths = glob.glob(os.path.join(ROOT, "benchmarks", "eval_speed_*.json"))
        if not paths:
            print("error: no benchmarks/eval_speed_*.json: measure first", file=sys.stderr)
            return 2
        replace_marked_block(os.path.join(ROOT, "README.md"), "<!-- eval_speed -->",
                             "<!-- /eval_speed -->", readme_table(paths))
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = measure(args.batches, args.batch_size, args.size)
    print(f"{result['backend']} on {result['cpu']} ({', '.join(result['simd']) or 'no AVX'}):"
          f" model.predict {result['predict_ms']} ms per batch of {args.batch_size}, "
          f"predict_on_batch {result['predict_on_batch_ms']} ms ({result['speedup']}x); "
          f"outputs bit-identical: {result['identical']}")
    if args.out:
        from tada_keras.atomic import write_json

        write_json(args.out, result)
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
