"""Training-step time of the TADA model per Keras backend (CPU numbers for issue 2).

    python benchmarks/step_time.py --backends=tensorflow,jax,torch --out=benchmarks/step_time.md

Each backend runs in its own process: ResNet50-FPN (the paper's model, random init),
normals + 41-class segmentation heads, one mixed batch of 8 images (4 source + 4 target)
at 256x256, MTL(+both) loss, Adam. Reports the median of --steps timed steps after
--warmup steps (compilation excluded), and the model's parameter counts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time


def measure(args):
    import keras
    import numpy as np

    import tada_keras
    from tada_keras.training.phases import configure_phase

    model = tada_keras.build_model(backbone=args.backbone, anchor_config={"num_classes": 41})
    rng = np.random.default_rng(0)
    b, s = args.batch, args.size
    x = (rng.random((b, s, s, 3)) * 255).astype("float32")
    n = rng.normal(size=(b, s // 2, s // 2, 3)).astype("float32")
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    y = {"domain": np.array([0] * (b // 2) + [1] * (b - b // 2), "int32"), "normals": n,
         "normals_mask": np.ones((b, s // 2, s // 2), bool),
         "segmentation": rng.integers(0, 41, (b, s // 2, s // 2)).astype("int32")}
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    configure_phase(model, tada_keras.get_method("mtl_both").phases[0],
                    keras.optimizers.Adam(1e-4), jit_compile=jit)
    for _ in range(args.warmup):
        model.train_on_batch(x, y)
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - t)
    head = model.get_layer("head").count_params()
    return {"backend": keras.config.backend(), "median_s": float(np.median(times)),
            "min_s": float(np.min(times)), "params_total": int(model.count_params()),
            "params_head": int(head), "params_encoder":
            int(model.get_layer("encoder").count_params())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--jit_compile", default="auto")
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(measure(args)))
        return
    rows = []
    for backend in args.backends.split(","):
        cmd = [sys.executable, __file__, "--child"] + [
            f"--{k}={v}" for k, v in vars(args).items() if k not in ("child", "out",
                                                                    "backends")]
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            rows.append({"backend": backend, "error": proc.stderr[-500:]})
        else:
            rows.append(json.loads(line[0][7:]))
        print(rows[-1], flush=True)
    text = [f"Train-step time, {args.backbone}-FPN, batch {args.batch} (half source, half "
            f"target) at {args.size}x{args.size}, MTL(+both), Adam, jit_compile="
            f"{args.jit_compile}; median of {args.steps} steps after {args.warmup} warm-up.",
            f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU "
            "cores, no GPU.", f"Command: `python benchmarks/step_time.py "
            f"--backends={args.backends} --backbone={args.backbone}`", "",
            "| backend | median s/step | min s/step | params total | encoder | head |",
            "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            text.append(f"| {r['backend']} | failed | | | | |")
        else:
            text.append(f"| {r['backend']} | {r['median_s']:.2f} | {r['min_s']:.2f} | "
                        f"{r['params_total']:,} | {r['params_encoder']:,} | "
                        f"{r['params_head']:,} |")
    out = "\n".join(text) + "\n"
    print(out)
    if args.out:
        with open(args.out, "w") as f:
            f.write(out)


if __name__ == "__main__":
    main()
