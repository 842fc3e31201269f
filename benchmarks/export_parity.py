"""Parity and CPU latency of the exported formats vs Keras (issue 32).

    KERAS_BACKEND=tensorflow python benchmarks/export_parity.py --model_dir=runs/demo/headfreeze \
        --out=benchmarks/export_parity.md --readme                 # the README's Deploy table

For each format (``tada_keras.deployment.export_model``: SavedModel, ONNX, LiteRT fp32,
LiteRT float16, LiteRT dynamic-range int8; dynamic input size, ``--full_resolution``:
predictions at the input size as ``tada-predict`` writes them, or with
``--half_resolution`` at the network's 1/2 size), on the run's target-test split as
``tada-evaluate`` feeds it:

* parity with Keras ``predict`` (``predict_padded`` + the task's ``postprocess``): the
  max absolute difference of the prediction and, for normals, the max angular difference
  (float64, atan2) over every pixel of the split; fp32 formats must be within 1e-4 / 0.01°;
* the pooled target-test metrics of the exported model (the task's own evaluator at
  ground-truth resolution) next to Keras's, which are ``tada-evaluate``'s (its raw
  outputs; an export's unit normals at 1/2 size are re-normalised before the up-sampling,
  which moves the pooled mean by a few hundredths of a degree);
* single-image CPU latency, median of ``--repeats`` (≥ 20) calls after 3 warm-up calls,
  at 128² and 256² (random images): Keras is ``predict_on_batch`` of the same inference
  network, an exported file its runtime's call (``ExportedModel.predict``).

Writes the Markdown table to ``--out`` and the raw numbers next to it (``.json``);
``--readme`` puts the table into README.md between the ``export_parity`` markers.
Measure on an idle machine: the 1-minute load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # run from a checkout without installing
VARIANTS = (("Keras (TF)", None, "none"), ("SavedModel", "saved_model", "none"),
            ("ONNX (onnxruntime)", "onnx", "none"), ("LiteRT fp32", "litert", "none"),
            ("LiteRT float16", "litert", "float16"), ("LiteRT int8 (dyn. range)", "litert",
                                                      "int8"))
FP32_BOUNDS = (1e-4, 0.01)  # max abs, max degrees
BEGIN, END = "<!-- export_parity:begin -->", "<!-- export_parity:end -->"


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} logical CPUs)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} logical CPUs)"


def _angles(a, b):
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1),
                                 np.sum(a * b, axis=-1)))


def _size_mb(path) -> float:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path)
                   for f in fs) / 1e6
    return os.path.getsize(path) / 1e6


def _latency(call, size, repeats):
    import numpy as np

    image = np.random.default_rng(size).uniform(0, 255, (1, size, size, 3)).astype("float32")
    for _ in range(3):
        call(image)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(image)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(model_dir, data_dir=None, sizes=(128, 256), repeats=20, limit=None, full=True):
    import numpy as np

    from tada_keras.data import eval_dataset, load_split
    from tada_keras.deployment import ExportedModel, export_model, inference_network
    from tada_keras.inference import (
        data_spec,
        eval_split,
        load_run,
        pad_to_stride,
        predict_main,
        predict_padded,
    )

    cfg, model = load_run(model_dir)
    if data_dir:
        cfg.data_dir = data_dir
    task = model.main
    name, split, manual, domain = eval_split(cfg, "target_test")
    ds = eval_dataset(load_split(name, split, cfg.data_dir, manual_dir=manual),
                      data_spec(cfg, model), domain, cfg.eval_batch_size, cfg.eval_input_size,
                      cfg.eval_scale)
    batches = list(ds.as_numpy_iterator())[:limit]
    # Keras predict: the run directory's path (predict_padded + the task's postprocess),
    # at the input size (tada-predict's output) or at 1/2 of it (the network's own).
    wants = [predict_main(model, images, images.shape[1:3] if full else None)
             for images, _ in batches]
    keras_net = inference_network(model, full_resolution=full)
    scale = 1 if full else 2
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for label, fmt, quantize in VARIANTS:
            if fmt is None:
                def run(x, net=keras_net):
                    return {k: np.asarray(v) for k, v in net.predict_on_batch(x).items()}
                size_mb = _size_mb(os.path.join(model_dir, "model.keras"))
            else:
                ending = {"saved_model": "", "onnx": ".onnx", "litert": ".tflite"}[fmt]
                path = export_model(model, os.path.join(work, f"{fmt}_{quantize}{ending}"),
                                    fmt, full_resolution=full, quantize=quantize)
                run, size_mb = ExportedModel(path).predict, _size_mb(path)
            evaluator, abs_diff, max_deg = task.evaluator(), 0.0, 0.0
            for (images, labels), want in zip(batches, wants):
                h, w = images.shape[1:3]
                pred = run(pad_to_stride(images))[task.name]
                pred = pred[:, :(h + scale - 1) // scale, :(w + scale - 1) // scale]
                abs_diff = max(abs_diff, float(np.abs(pred - want).max()))
                if task.name == "normals":
                    max_deg = max(max_deg, float(_angles(pred, want).max()))
                if fmt is None:  # the Keras row is scored as tada-evaluate scores the run
                    evaluator.update(predict_padded(model, images), labels)
                else:
                    evaluator.update(task.as_outputs(pred), labels)
            metrics = {k: float(v) for k, v in evaluator.result().items()}
            latency = {str(s): _latency(run, s, repeats) for s in sizes}
            rows.append({"variant": label, "format": fmt, "quantize": quantize,
                         "max_abs_diff": abs_diff,
                         "max_angular_diff_deg": max_deg if task.name == "normals" else None,
                         "metrics": metrics, "latency_ms": latency, "size_mb": size_mb})
            print(f"{label}: max |diff| {abs_diff:.2e}, {task.primary} "
                  f"{metrics[task.primary]:.4f}, latency {latency}", flush=True)
    images = sum(len(b[0]) for b in batches)
    return {"task": task.name, "full_resolution": full, "primary": task.primary,
            "images": images, "split": f"{name}:{split}", "rows": rows}


def table(result) -> str:
    normals = result["task"] == "normals"
    sizes = sorted(result["rows"][0]["latency_ms"], key=int)
    head = (["format", "max abs diff"] + (["max angle diff"] if normals else [])
            + [f"target-test {result['primary']}"] + [f"latency {s}² (ms)" for s in sizes]
            + ["file (MB)"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        keras_row = row["format"] is None
        cells = [row["variant"], "—" if keras_row else f"{row['max_abs_diff']:.1e}"]
        if normals:
            cells.append("—" if keras_row else f"{row['max_angular_diff_deg']:.4f}°")
        cells.append(f"{row['metrics'][result['primary']]:.3f}")
        cells += [f"{row['latency_ms'][s]:.1f}" for s in sizes]
        cells.append(f"{row['size_mb']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    fp32 = [r for r in result["rows"] if r["format"] and r["quantize"] == "none"]
    ok = all(r["max_abs_diff"] <= FP32_BOUNDS[0] and (not normals or
             r["max_angular_diff_deg"] <= FP32_BOUNDS[1]) for r in fp32)
    lines.append("")
    where = ("the input size (`--full_resolution` exports)" if result["full_resolution"]
             else "1/2 of the input size")
    lines.append(f"Parity: every pixel of {result['images']} target-test images "
                 f"({result['split']}) vs Keras `predict`, predictions at {where}; the Keras "
                 f"row's metrics are `tada-evaluate`'s; the fp32 formats are "
                 f"{'within' if ok else 'OUTSIDE'} 1e-4 / 0.01°. Latency: one image, median "
                 f"of {result['repeats']} calls, {result['cpu']}, load {result['load'][0]:.1f}"
                 f" → {result['load'][1]:.1f}. Run: `{result['run']}` ({result['model_dir']}, "
                 f"{result['versions']}).")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--data_dir", default=None, help="TFDS data_dir (default: the run's)")
    parser.add_argument("--out", default=os.path.join(HERE, "export_parity.md"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sizes", default="128,256")
    parser.add_argument("--limit", type=int, default=None,
                        help="only the first N target-test batches (a smoke run)")
    parser.add_argument("--half_resolution", action="store_true",
                        help="export and compare at 1/2 of the input size (the network's "
                        "own) instead of at the input size")
    parser.add_argument("--readme", action="store_true",
                        help="also put the table into README.md between the markers")
    args = parser.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import onnxruntime
    import tensorflow as tf

    load = [os.getloadavg()[0]]
    result = measure(args.model_dir, args.data_dir, [int(s) for s in args.sizes.split(",")],
                     args.repeats, args.limit, full=not args.half_resolution)
    load.append(os.getloadavg()[0])
    result.update(cpu=_cpu(), load=load, repeats=args.repeats, model_dir=args.model_dir,
                  run=" ".join(["python", "benchmarks/export_parity.py"] + sys.argv[1:]),
                  versions=f"TF {tf.__version__}, Keras {keras.__version__}, onnxruntime "
                           f"{onnxruntime.__version__}")
    text = table(result)
    print(text)
    with open(args.out, "w") as f:
        f.write(f"# Exported formats vs Keras\n\n{text}")
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(result, f, indent=2)
    if args.readme:
        from tada_keras.atomic import replace_marked_block

        try:  # ``text`` ends with its one newline, which the function puts back
            replace_marked_block(os.path.join(ROOT, "README.md"), BEGIN, END, text[:-1])
        except ValueError as err:
            sys.exit(str(err))


if __name__ == "__main__":
    main()
