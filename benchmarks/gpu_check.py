"""One command for a GPU machine: what tada-keras does there, as a dated Markdown table.

    python benchmarks/gpu_check.py                     # on the GPU machine, ~8 min
    python benchmarks/gpu_check.py --quick --out=/tmp/gpu_check.md   # CPU smoke (tests)

Records (issue 33, item 4): the device (``nvidia-smi``; the CPU model where there is no
GPU), library versions, per-backend training throughput of the full TADA step at 256²
(``throughput.py``'s rows: Keras-TF without and with XLA, Keras-JAX with jit, Keras-torch;
fp32 and ``mixed_bfloat16``) for ResNet50 (decoder 256) and EfficientNet-Lite0 (decoder
64), each row's peak accelerator memory and peak host RSS, and a 1000-step training run of
the demo (``configs/demo.flags``: wall time and target-test metrics). ``--quick`` shrinks
everything to seconds (Lite0 only, 64², 2 steps, one row, a ``tiny`` 20-step run) to check
the script on a CPU. Writes ``benchmarks/gpu_check_<date>.md`` unless ``--out`` says
otherwise; the rows' raw JSON goes next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ROWS = ("keras-tensorflow/nojit,keras-tensorflow/jit,keras-jax/jit,keras-torch/nojit")
NETWORKS = (("resnet50", 256), ("efficientnet_lite0", 64))


def device() -> str:
    """The GPUs ``nvidia-smi`` lists, else the CPU model."""
    smi = shutil.which("nvidia-smi")
    if smi:
        proc = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version",
                               "--format=csv,noheader"], capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.strip():
            return "; ".join(ln.strip() for ln in proc.stdout.strip().splitlines())
    from tada_keras.training.fingerprint import machine

    cpu = machine()
    return f"no GPU: {cpu['cpu']}, {cpu['logical_cpus']} logical CPUs"


def versions() -> str:
    import importlib.metadata as md

    found = []
    for name in ("keras", "tensorflow", "jax", "jaxlib", "torch"):
        try:
            found.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            pass
    return ", ".join(found)


def throughput_rows(backbone: str, decoder: int, args, tmp: str) -> list[dict]:
    """``throughput.py``'s rows for one network (each row its own subprocess)."""
    path = os.path.join(tmp, f"{backbone}.json")
    cmd = [sys.executable, os.path.join(HERE, "throughput.py"), f"--backbone={backbone}",
           f"--decoder_channels={decoder}", f"--only={args.rows}", f"--json={path}",
           f"--data_dir={args.data_dir}", f"--timeout={args.timeout}"]
    cmd += ["--quick"] if args.quick else ["--size=256", "--steps=5", "--warmup=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if not os.path.exists(path):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return [{"spec": {"kind": "keras", "backend": "?"},
                 "error": " / ".join(tail)[-300:] or f"exit {proc.returncode}"}]
    with open(path) as f:
        return json.load(f)


def demo_run(args, tmp: str) -> dict:
    """Trains the demo configuration (``--quick``: ``tiny``) once; time and metrics."""
    model_dir = os.path.join(tmp, "demo")
    flags = (["--flagfile=configs/tiny.flags", "--steps=20", "--steps_per_epoch=10"]
             if args.quick else ["--flagfile=configs/demo.flags", "--steps=1000",
                                 "--steps_per_epoch=100"])
    cmd = [sys.executable, "-m", "tada_keras.train", *flags, "--method=headfreeze",
           f"--model_dir={model_dir}", f"--data_dir={args.data_dir}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    seconds = time.perf_counter() - start
    metrics = os.path.join(model_dir, "metrics.json")
    if proc.returncode or not os.path.exists(metrics):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-2:]
        return {"command": " ".join(cmd[1:]), "seconds": seconds,
                "error": " / ".join(tail)[-300:] or f"exit {proc.returncode}"}
    with open(metrics) as f:
        result = json.load(f)
    return {"command": " ".join(cmd[1:]), "seconds": seconds,
            "train_seconds": sum((result.get("timings_s") or {}).values()),
            "steps": int(flags[1].split("=")[1]), "target_test": result["target_test"]}


def render(header: dict, rows: dict, demo: dict, batch: int) -> str:
    lines = [f"# GPU check, {header['date']}", "",
             f"- device: {header['device']}", f"- libraries: {header['versions']}",
             f"- command: `{header['command']}`", "",
             f"Training throughput of the full TADA step (HeadFreeze phase 1 / phase 2, "
             f"batch {batch}, synthetic images at {header['size']}²; "
             "`benchmarks/throughput.py` rows):", "",
             "| network | backend | mode | precision | img/s phase 1 | img/s phase 2 | first "
             "step (s) | peak accelerator MB | peak RSS MB |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for network, network_rows in rows.items():
        for row in network_rows:
            spec = row["spec"]
            mode = "jit" if spec.get("jit") else "no jit"
            precision = {"float32": "fp32", "mixed_bfloat16": "bf16"}.get(
                spec.get("policy", ""), "?")
            if "error" in row:
                lines.append(f"| {network} | {spec.get('backend')} | {mode} | {precision} | "
                             f"error: {row['error'].replace('|', '/')} | | | | |")
                continue
            speed = [f"{batch / row[p]['median_s']:.1f}" for p in ("phase1", "phase2")]
            peak = row.get("peak_accelerator_mb")
            lines.append(f"| {network} | {spec['backend']} | {mode} | {precision} | "
                         f"{speed[0]} | {speed[1]} | {row['phase1']['first_s']:.1f} | "
                         f"{'—' if peak is None else f'{peak:.0f}'} | "
                         f"{row.get('peak_rss_mb', 0):.0f} |")
    lines += ["", f"Training run: `{demo['command']}`", ""]
    if "error" in demo:
        lines.append(f"error after {demo['seconds']:.0f} s: {demo['error']}")
    else:
        t = demo["target_test"]
        lines += ["| steps | wall s (incl. start, data, evaluation) | training s | target "
                  "mean ° | target median ° |", "|---:|---:|---:|---:|---:|",
                  f"| {demo['steps']} | {demo['seconds']:.0f} | {demo['train_seconds']:.0f} | "
                  f"{t['mean']:.2f} | {t['median']:.2f} |"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None,
                        help="Markdown file (default benchmarks/gpu_check_<date>.md).")
    parser.add_argument("--quick", action="store_true",
                        help="CPU smoke run: Lite0 only, 64², 2 steps, one row, tiny run.")
    parser.add_argument("--rows", default=None, help="throughput.py --only selectors "
                        f"(default {ROWS}; --quick: keras-tensorflow/nojit/fp32).")
    parser.add_argument("--data_dir", default=os.path.join(ROOT, ".tfds"))
    parser.add_argument("--timeout", type=int, default=300, help="Seconds per row.")
    args = parser.parse_args(argv)
    args.rows = args.rows or ("keras-tensorflow/nojit/fp32" if args.quick else ROWS)
    date = time.strftime("%Y-%m-%d")
    out = args.out or os.path.join(HERE, f"gpu_check_{date}.md")
    header = {"date": date, "device": device(), "versions": versions(),
              "command": "python benchmarks/gpu_check.py " + " ".join(
                  argv if argv is not None else sys.argv[1:]),
              "size": 64 if args.quick else 256}
    networks = NETWORKS[1:] if args.quick else NETWORKS
    with tempfile.TemporaryDirectory() as tmp:
        rows = {}
        for backbone, decoder in networks:
            rows[backbone] = throughput_rows(backbone, decoder, args, tmp)
            print(f"{backbone}: {len(rows[backbone])} rows", flush=True)
        demo = demo_run(args, tmp)
    text = render(header, rows, demo, batch=4 if args.quick else 16)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump({"header": header, "rows": rows, "demo": demo}, f, indent=1)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
