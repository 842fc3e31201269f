"""Where the time of the Keras-TensorFlow TADA step goes, per TF op type (TF profiler).

    python benchmarks/profile_tf.py --out=benchmarks/profile_tf.md            # ~8 min
    python benchmarks/profile_tf.py --size=64 --steps=1 --out=/tmp/p.md       # smoke

Runs the same step as ``throughput.py``'s ``keras-tensorflow`` rows (ResNet50-FPN, decoder
256, normals + 41-class segmentation, 8 source + 8 target images, HeadFreeze phase 1 or
2, no jit) in fp32 and ``mixed_bfloat16``, records ``--steps`` steps after a warm-up with
``tf.profiler.experimental``, and sums the host-thread op events of the trace per TF op
type (the ``name:Type`` events the TF executor emits; enclosing function-call events are
left out so nothing is counted twice). The table compares the two precisions op type by
op type: which ops bf16 speeds up, which it does not, and what the casts it adds cost.
Op time is summed over the 2 inter-op threads' work, so it can exceed the wall time.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OP_EVENT = re.compile(r"^(?P<name>[^\s:]+):(?P<type>[A-Z_][A-Za-z0-9_]*)$")
# Events that enclose other op events (function calls, control flow) or are not ops.
ENCLOSING = {"PartitionedCall", "StatefulPartitionedCall", "While", "If", "StatelessIf",
             "StatelessWhile", "__inference"}


def parse_xspace(path: str) -> dict[str, float]:
    """Total duration in ms per TF op type over the host plane's op events."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    totals: dict[str, float] = collections.defaultdict(float)
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        names = {k: m.name for k, m in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                match = OP_EVENT.match(names.get(event.metadata_id, ""))
                if match and match["type"] not in ENCLOSING:
                    totals[match["type"]] += event.duration_ps / 1e9
    return dict(totals)


def child(args) -> dict:
    import keras
    import tensorflow as tf

    sys.path.insert(0, ROOT)
    sys.path.insert(0, HERE)
    from throughput import _synthetic_batch

    import tada_keras
    from tada_keras.training.phases import configure_phase

    keras.config.set_dtype_policy(args.policy)
    keras.utils.set_random_seed(0)
    model = tada_keras.build_model(backbone=args.backbone, decoder_channels=256,
                                   anchor_config={"num_classes": 41})
    x, y = _synthetic_batch(args)
    phase = tada_keras.get_method("headfreeze").phases[args.phase - 1]
    configure_phase(model, phase, keras.optimizers.Adam(1e-4), jit_compile=False)
    for _ in range(1 + args.warmup):
        model.train_on_batch(x, y)
    logdir = tempfile.mkdtemp(prefix="tada_profile_")
    tf.profiler.experimental.start(logdir)
    t = time.perf_counter()
    for _ in range(args.steps):
        model.train_on_batch(x, y)
    wall = (time.perf_counter() - t) / args.steps
    tf.profiler.experimental.stop()
    files = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    if not files:
        raise RuntimeError(f"the TF profiler wrote no *.xplane.pb under {logdir}")
    ops = {k: v / args.steps for k, v in parse_xspace(files[0]).items()}
    return {"wall_ms": 1000 * wall, "ops_ms": ops}


def render(results: dict, args, minutes: float) -> str:
    fp, bf = results["float32"], results["mixed_bfloat16"]
    types = sorted(set(fp["ops_ms"]) | set(bf["ops_ms"]),
                   key=lambda k: -max(fp["ops_ms"].get(k, 0), bf["ops_ms"].get(k, 0)))
    total_fp, total_bf = sum(fp["ops_ms"].values()), sum(bf["ops_ms"].values())
    import tensorflow as tf

    lines = [
        f"# Where the Keras-TensorFlow step's time goes (phase {args.phase}, fp32 vs "
        "mixed_bfloat16)",
        "",
        f"- Step: `{args.backbone}`-FPN (decoder 256), normals + 41-class segmentation, "
        f"{args.batch_source} + {args.batch_target} images at {args.size}², HeadFreeze "
        f"phase {args.phase}, Keras-TF without jit; {args.steps} profiled steps after "
        f"{1 + args.warmup} warm-up steps.",
        f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical "
        f"CPUs; tensorflow {tf.__version__}.",
        f"- Command: `python benchmarks/profile_tf.py {' '.join(sys.argv[1:])}` "
        f"({minutes:.1f} min).",
        f"- Wall time per step: fp32 {fp['wall_ms']:.0f} ms, bf16 {bf['wall_ms']:.0f} ms "
        f"(×{fp['wall_ms'] / bf['wall_ms']:.2f}); summed op time {total_fp:.0f} / "
        f"{total_bf:.0f} ms (both inter-op threads).",
        "",
        "| op type | fp32 ms | bf16 ms | fp32 / bf16 | share of bf16 op time |",
        "|---|---:|---:|---:|---:|",
    ]
    for k in types[:args.top]:
        a, b = fp["ops_ms"].get(k, 0.0), bf["ops_ms"].get(k, 0.0)
        ratio = f"{a / b:.2f}" if a and b else "–"
        lines.append(f"| {k} | {a:.1f} | {b:.1f} | {ratio} | {100 * b / total_bf:.1f} % |")
    rest_a = total_fp - sum(fp["ops_ms"].get(k, 0) for k in types[:args.top])
    rest_b = total_bf - sum(bf["ops_ms"].get(k, 0) for k in types[:args.top])
    lines.append(f"| (other {max(0, len(types) - args.top)} types) | {rest_a:.1f} | "
                 f"{rest_b:.1f} | | {100 * rest_b / total_bf:.1f} % |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--phase", type=int, default=2, choices=(1, 2))
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch_source", type=int, default=8)
    parser.add_argument("--batch_target", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--policy", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args(argv)
    if args.policy:
        print("RESULT " + json.dumps(child(args)))
        return 0
    start = time.time()
    results = {}
    for policy in ("float32", "mixed_bfloat16"):
        cmd = [sys.executable, os.path.abspath(__file__), f"--policy={policy}"] + \
              [a for a in (argv if argv is not None else sys.argv[1:])]
        env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        found = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not found:
            print(proc.stdout[-2000:] + proc.stderr[-4000:], file=sys.stderr)
            print(f"error: the {policy} profile run failed (exit {proc.returncode})",
                  file=sys.stderr)
            return 1
        results[policy] = json.loads(found[-1][len("RESULT "):])
        print(f"{policy}: {results[policy]['wall_ms']:.0f} ms/step", flush=True)
    text = render(results, args, (time.time() - start) / 60)
    sys.path.insert(0, ROOT)  # run from a checkout without installing
    from tada_keras.atomic import write_text

    write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
