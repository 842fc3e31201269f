"""Training throughput of the full TADA step per Keras backend vs a plain-PyTorch twin.

    python benchmarks/throughput.py --out=benchmarks/throughput.md           # ~50 min
    python benchmarks/throughput.py --quick --out=/tmp/throughput_quick.md   # ~4 min, smoke
    python benchmarks/throughput.py --backbone=efficientnet_lite0 \
        --only=matmul,keras-tensorflow/nojit,torch-twin/eager \
        --out=benchmarks/throughput_lite0.md                                  # Lite0 rows
    python benchmarks/throughput.py --only=keras-tensorflow/nojit/fp32 \
        --merge=benchmarks/throughput.json --out=benchmarks/throughput.md       # one row again

One command writes the whole Markdown table (issue 8). Every configuration runs in its own
subprocess, so its peak RSS (``ru_maxrss``) is its own and one crash cannot take the table
down. Rows:

* ``matmul``: the machine's measured dense matmul rate (TF and torch, fp32 and bf16); a
  row's ``% roofline`` divides its GFLOP/s by the rate of its own library (TF for
  Keras-TF, torch for the twin and Keras-torch; none for JAX). It is the first row, so
  start on an idle machine: the header says the load it was measured at;
* ``keras-<backend>``: ``tada_keras.build_model`` (ResNet50-FPN, decoder 256, or with
  ``--backbone=efficientnet_lite0`` the demo's pretrained network; normals +
  41-class segmentation), a mixed batch of ``--batch_source`` source + ``--batch_target``
  target images, HeadFreeze phase 1 (MTL+src, head trains) then phase 2 (MTL+both, head
  frozen, recompiled with a new Adam) via ``configure_phase``, jit on/off, fp32 /
  ``mixed_bfloat16``; Keras-TF without jit also once more with Keras's own (unfused)
  BatchNormalization (``TADA_FUSED_BATCHNORM=0``; mode ``nojit-kerasbn``), so one run
  shows what the fused kernel changes;
* ``torch-twin``: the same network and step in plain PyTorch (``torch_twin.py``), eager and
  ``torch.compile``, fp32 / bf16 autocast; its parameter count and output shapes are
  asserted equal to the Keras model's;
* ``tf.data``: ``mixed_train_dataset`` alone (TFDS read + decode, resize, colour shift,
  label resize, domain mixing) from a prepared TFDS dataset, in images/s.

Throughput is the median over ``--steps`` timed steps after ``--warmup`` steps (the first,
compiling step is reported separately). The 1-minute load average is recorded before and
after every row: on a shared machine a load above the core count means other processes
took CPU time and the row's numbers are pessimistic. The summary lines give Keras-TF (no
jit) over the best twin row (eager or compiled) of the same precision and phase, and over
Keras's own batch norm; ``benchmarks/readme_table.py`` puts them into the README.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PHASES = ("phase1", "phase2")


# --------------------------------------------------------------------------- configurations
def configurations(quick: bool, selection: str) -> list[dict]:
    """The rows of the table, in run order. ``selection``: "default" or "all"."""
    rows = [{"kind": "matmul"}]
    keras_rows = [
        ("tensorflow", False, "float32"), ("tensorflow", False, "mixed_bfloat16"),
        ("tensorflow", True, "float32"), ("tensorflow", True, "mixed_bfloat16"),
        ("jax", True, "float32"), ("jax", True, "mixed_bfloat16"),
        ("torch", False, "float32"), ("torch", False, "mixed_bfloat16"),
    ]
    if selection == "all":
        # Keras-JAX without jit dispatches every op eagerly and Keras-torch with jit runs
        # torch.compile over the Keras step: both are slow to run / compile here and are
        # never how one trains, so they run only on request.
        keras_rows += [("jax", False, "float32"), ("torch", True, "float32")]
    for backend, jit, policy in keras_rows:
        rows.append({"kind": "keras", "backend": backend, "jit": jit, "policy": policy})
        if backend == "tensorflow" and not jit:
            # The same step with Keras's own (unfused) BatchNormalization, in the same
            # run: what the fused kernel (tada_keras.layers.BatchNormalization) changes.
            rows.append({"kind": "keras", "backend": backend, "jit": jit, "policy": policy,
                         "batchnorm": "keras"})
    for compiled in (False, True):
        for policy in ("float32", "mixed_bfloat16"):
            rows.append({"kind": "twin", "backend": "torch", "jit": compiled,
                         "policy": policy})
    rows.append({"kind": "pipeline"})
    return rows


# ------------------------------------------------------------------------------ child runs
def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _peak_accelerator_mb(spec) -> float | None:
    """Peak GPU/TPU memory of this row's process (None on a CPU)."""
    if spec["kind"] not in ("keras", "twin"):
        return None
    from tada_keras.backend import peak_accelerator_memory_mb

    return peak_accelerator_memory_mb()


def _synthetic_batch(args, layout="nhwc"):
    """One mixed batch (source first, then target) like ``mixed_train_dataset`` yields."""
    import numpy as np

    rng = np.random.default_rng(0)
    b, s, h = args.batch_source + args.batch_target, args.size, args.size // 2
    x = (rng.random((b, s, s, 3)) * 255).astype("float32")
    n = rng.normal(size=(b, h, h, 3)).astype("float32")
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    y = {"domain": np.array([0] * args.batch_source + [1] * args.batch_target, "int32"),
         "normals": n, "normals_mask": rng.random((b, h, h)) > 0.1,
         "segmentation": rng.integers(0, 41, (b, h, h)).astype("int32")}
    if layout == "nchw":
        x = x.transpose(0, 3, 1, 2).copy()
        y["normals"] = n.transpose(0, 3, 1, 2).copy()
    return x, y


def _time_steps(step, args) -> dict:
    """Runs one compiling step, ``warmup`` more and ``steps`` timed ones."""
    import numpy as np

    t = time.perf_counter()
    step()
    first = time.perf_counter() - t
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return {"first_s": first, "median_s": float(np.median(times)),
            "min_s": float(np.min(times)), "times": [round(v, 4) for v in times]}


def run_keras(args, spec) -> dict:
    import keras

    import tada_keras
    from tada_keras.training.phases import configure_phase

    keras.config.set_dtype_policy(spec["policy"])
    keras.utils.set_random_seed(0)
    model = tada_keras.build_model(backbone=args.backbone, decoder_channels=args.decoder_channels,
                                   anchor_config={"num_classes": 41})
    x, y = _synthetic_batch(args)
    out = {"params_total": int(model.count_params()),
           "params_head": int(model.head.count_params()),
           "output_shapes": {k: list(v.shape[1:]) for k, v in
                             model(x[:1], training=False).items()}}
    method = tada_keras.get_method("headfreeze")
    for phase in method.phases:
        configure_phase(model, phase, keras.optimizers.Adam(1e-4), jit_compile=spec["jit"])
        out[phase.name] = _time_steps(lambda: model.train_on_batch(x, y), args)
        out[phase.name]["loss"] = float(model.train_on_batch(x, y, return_dict=True)["loss"])
    return out


def run_twin(args, spec) -> dict:
    import torch
    import torch_twin as T

    torch.manual_seed(0)
    model = T.TadaTwin(args.decoder_channels, 41, args.backbone).to(
        memory_format=torch.channels_last)
    x, y = _synthetic_batch(args, layout="nchw")
    images = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
    labels = {"domain": torch.from_numpy(y["domain"]).long(),
              "normals": torch.from_numpy(y["normals"]),
              "normals_mask": torch.from_numpy(y["normals_mask"]).float(),
              "segmentation": torch.from_numpy(y["segmentation"]).long()}
    with torch.no_grad():
        model.eval()
        shapes = {k: list(v.permute(0, 2, 3, 1).shape[1:]) for k, v in
                  model(images[:1]).items()}
    out = {"params_total": T.count_params(model), "params_head": T.count_params(model.head),
           "output_shapes": shapes, "torch_threads": torch.get_num_threads()}
    # Counted before torch.compile sees the model (hooks would force recompiles).
    flops = {name: T.conv_flops(model, (1, 3, args.size, args.size),
                                head_trainable=(name == "phase1"))["train"]
             for name in PHASES}
    bf16 = spec["policy"] == "mixed_bfloat16"
    groups = {"phase1": ("source_main", "source_anchor"),
              "phase2": ("source_main", "source_anchor", "target_anchor")}
    for name in PHASES:
        optimizer = T.configure_phase(model, head_trainable=(name == "phase1"))
        step = T.make_step(model, optimizer, groups[name], bf16)
        if spec["jit"]:
            step = torch.compile(step)
        out[name] = _time_steps(lambda s=step: s(images, labels), args)
        out[name]["loss"] = float(step(images, labels))
        out[name]["flops"] = flops[name]
    return out


def run_matmul(args, spec) -> dict:
    """Best-of-5 square matmul GFLOP/s, per framework and dtype (all cores)."""
    import tensorflow as tf
    import torch

    n = 1024 if args.quick else 4096
    flop = 2.0 * n ** 3
    out = {"n": n}
    for name in ("float32", "bfloat16"):
        a = torch.randn(n, n).to(getattr(torch, name))
        b = torch.randn(n, n).to(getattr(torch, name))
        times = []
        for _ in range(6):
            t = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - t)
        out[f"torch_{name}"] = flop / min(times[1:]) / 1e9
        a, b = (tf.cast(tf.random.normal((n, n)), name) for _ in range(2))
        matmul = tf.function(tf.linalg.matmul)
        times = []
        for _ in range(6):
            t = time.perf_counter()
            matmul(a, b).numpy()
            times.append(time.perf_counter() - t)
        out[f"tf_{name}"] = flop / min(times[1:]) / 1e9
    return out


def run_pipeline(args, spec) -> dict:
    """Images/s of the training input pipeline alone (what ``tada_keras.run`` feeds fit)."""
    import tensorflow as tf

    from tada_keras.data import DataSpec, load_split, mixed_train_dataset

    data_spec = DataSpec(main_task="normals", anchor_task="segmentation",
                         image_size=args.size)
    source = load_split(args.dataset, "source_train", args.data_dir, shuffle=True)
    target = load_split(args.dataset, "target_train", args.data_dir, shuffle=True)
    ds = mixed_train_dataset(source, target, data_spec, args.batch_source, args.batch_target,
                             use_target_main=False, use_anchor=True, use_target_anchor=True)
    it = iter(ds)
    for _ in range(5):  # shuffle buffers fill, autotune settles
        next(it)
    batches = 10 if args.quick else 60
    t = time.perf_counter()
    for _ in range(batches):
        images, _ = next(it)
    seconds = time.perf_counter() - t
    images_per_batch = args.batch_source + args.batch_target
    assert tuple(images.shape) == (images_per_batch, args.size, args.size, 3), images.shape
    return {"images_per_s": batches * images_per_batch / seconds, "batches": batches,
            "tf_threads": tf.data.Options().threading.private_threadpool_size or "auto"}


def child(args) -> None:
    spec = json.loads(args.child)
    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    runner = {"keras": run_keras, "twin": run_twin, "matmul": run_matmul,
              "pipeline": run_pipeline}[spec["kind"]]
    out = runner(args, spec)
    out.update(spec=spec, peak_rss_mb=_peak_rss_mb(), wall_s=time.perf_counter() - t,
               peak_accelerator_mb=_peak_accelerator_mb(spec),
               load_before=load_before, load_after=os.getloadavg()[0])
    print("RESULT " + json.dumps(out), flush=True)


# ----------------------------------------------------------------------------------- parent
def _launch(args, spec) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join(
        [HERE, ROOT, os.environ.get("PYTHONPATH", "")]))
    env["KERAS_BACKEND"] = spec.get("backend", "tensorflow")
    if spec.get("batchnorm") == "keras":
        env["TADA_FUSED_BATCHNORM"] = "0"
    if spec["kind"] == "twin":
        env["KERAS_BACKEND"] = "torch"
    passthrough = ["--backbone", args.backbone, "--decoder_channels", str(args.decoder_channels),
                   "--size", str(args.size), "--batch_source", str(args.batch_source),
                   "--batch_target", str(args.batch_target), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--dataset", args.dataset,
                   "--data_dir", args.data_dir or ""] + (["--quick"] if args.quick else [])
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)] + passthrough
    measured_at = time.strftime("%Y-%m-%d %H:%M")
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                              timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"spec": spec, "error": f"timed out after {args.timeout} s",
                "measured_at": measured_at}
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not line:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"spec": spec, "error": " / ".join(tail)[-300:], "measured_at": measured_at}
    return dict(json.loads(line[0][len("RESULT "):]), measured_at=measured_at)


def _label(spec) -> str:
    if spec["kind"] == "keras":
        return f"keras-{spec['backend']}"
    return {"twin": "torch-twin", "matmul": "matmul", "pipeline": "tf.data"}[spec["kind"]]


def _mode(spec) -> str:
    if spec["kind"] == "twin":
        return "torch.compile" if spec["jit"] else "eager"
    if spec["kind"] != "keras":
        return ""
    mode = "jit" if spec["jit"] else "no jit"
    return mode + (", Keras BN" if spec.get("batchnorm") == "keras" else "")


def _tokens(spec) -> tuple[str, str, str]:
    """(label, mode token, precision token) that ``--only`` selectors match."""
    mode = {"no jit": "nojit", "torch.compile": "compile", "no jit, Keras BN": "nojit-kerasbn",
            "jit, Keras BN": "jit-kerasbn"}.get(_mode(spec), _mode(spec))
    precision = {"float32": "fp32", "mixed_bfloat16": "bf16"}.get(spec.get("policy", ""), "")
    return _label(spec), mode, precision


def parse_only(text: str) -> list[tuple[str, ...]]:
    """``--only``: comma-separated ``label[/mode[/precision]]`` selectors."""
    labels = {"matmul", "tf.data", "torch-twin"} | {
        f"keras-{b}" for b in ("tensorflow", "jax", "torch")}
    modes = {"jit", "nojit", "nojit-kerasbn", "eager", "compile"}
    precisions = {"fp32", "bf16"}
    selectors = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        parts = tuple(item.split("/"))
        if (len(parts) > 3 or parts[0] not in labels
                or (len(parts) > 1 and parts[1] not in modes)
                or (len(parts) > 2 and parts[2] not in precisions)):
            raise ValueError(
                f"--only={item!r}: expected label[/mode[/precision]] with label in "
                f"{sorted(labels)}, mode in {sorted(modes)}, precision in {sorted(precisions)}")
        selectors.append(parts)
    return selectors


def selected(spec, selectors) -> bool:
    tokens = _tokens(spec)
    return not selectors or any(tokens[:len(sel)] == sel for sel in selectors)


def merge_rows(previous: list[dict], new: list[dict], order: list[dict]) -> list[dict]:
    """``previous`` rows with those of the same spec replaced by ``new``, in run order."""
    by_spec = {json.dumps(r["spec"], sort_keys=True): r for r in previous}
    by_spec.update({json.dumps(r["spec"], sort_keys=True): r for r in new})
    keys = [json.dumps(spec, sort_keys=True) for spec in order]
    rows = [by_spec.pop(k) for k in keys if k in by_spec]
    return rows + list(by_spec.values())  # rows of configurations not in this selection


def load_rows(path: str) -> list[dict]:
    """Rows from a ``--json`` file, or from the JSON lines a run prints (its log)."""
    with open(path) as f:
        text = f.read()
    try:
        rows = json.loads(text)
    except json.JSONDecodeError:
        rows = [json.loads(ln) for ln in text.splitlines() if ln.startswith('{"')]
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "spec" in r
                                             for r in rows):
        raise ValueError(f"--merge={path}: expected the rows written by --json (a list) "
                         "or a run's log (one JSON row per line)")
    return rows


def check_twin(rows) -> list[str]:
    """The twin must be the same network: equal parameter counts and output shapes."""
    reference = next((r for r in rows if r["spec"]["kind"] == "keras" and "error" not in r),
                     None)
    problems = []
    for r in rows:
        if r["spec"]["kind"] != "twin" or "error" in r or reference is None:
            continue
        for key in ("params_total", "params_head", "output_shapes"):
            if key not in r or key not in reference:
                continue  # a row merged from a log, which omits the output shapes
            if r[key] != reference[key]:
                problems.append(f"torch twin {key} {r[key]} != Keras {reference[key]}")
    return problems


def render(rows, args, started, command, elapsed) -> str:
    matmul = next((r for r in rows if r["spec"]["kind"] == "matmul" and "error" not in r),
                  None)
    # Each row's roofline is the matmul rate of the library that runs its kernels: TF's
    # for Keras-TF, torch's for the twin and Keras-torch (none measured for XLA/JAX).
    library = {"keras-tensorflow": "tf", "torch-twin": "torch", "keras-torch": "torch"}
    flops = {}
    for r in rows:
        if r["spec"]["kind"] == "twin" and "error" not in r:
            flops = {p: r[p]["flops"] for p in PHASES}
    batch = args.batch_source + args.batch_target
    ref = {}  # (phase) -> images/s of the Keras-TF fp32 no-jit and the twins
    for r in rows:
        if "error" in r or r["spec"]["kind"] not in ("keras", "twin"):
            continue
        key = (_label(r["spec"]), _mode(r["spec"]), r["spec"]["policy"])
        ref[key] = {p: batch / r[p]["median_s"] for p in PHASES}
    tf32 = ref.get(("keras-tensorflow", "no jit", "float32"))

    def tf_same_precision(policy):
        return ref.get(("keras-tensorflow", "no jit", policy))

    kind = "quick smoke run, not a measurement" if args.quick else "full run"
    lines = [
        f"# TADA training throughput ({kind})",
        "",
        f"- Step: {'ResNet50' if args.backbone == 'resnet50' else 'EfficientNet-Lite0'}-FPN "
        f"(decoder {args.decoder_channels}), normals + 41-class segmentation, batch "
        f"{args.batch_source} source + {args.batch_target} target at {args.size}x{args.size}, "
        f"Adam; HeadFreeze phase 1 (MTL+src, head trains) and phase 2 (MTL+both, head frozen, "
        f"recompiled with a new optimizer). Median of {args.steps} steps after "
        f"{args.warmup} warm-up steps (the first, compiling step is the `first s` column).",
        f"- Machine: {_cpu_name()}, {os.cpu_count()} logical CPUs, "
        f"{_mem_gb():.0f} GB RAM, no GPU; Python {platform.python_version()}, "
        f"{_versions()}.",
        f"- Command: `{command}` ({elapsed / 60:.1f} min), {started}."
        + (f" Rows not selected by `--only` come from `{args.merge}` (their `measured` "
           "column says when)." if args.merge else ""),
        f"- Load average (1/5/15 min) at start: {_fmt_load(args.load_start)}, at end: "
        f"{_fmt_load(os.getloadavg())}. Each row lists the 1-min load before/after it: "
        f"above {os.cpu_count()} the machine was shared and that row is pessimistic.",
    ]
    if flops:
        lines.append(f"- Work: {flops['phase1'] / 1e9:.1f} (phase 1) / "
                     f"{flops['phase2'] / 1e9:.1f} (phase 2) GFLOP per image for the "
                     "convolutions (forward + input grads + weight grads of trainable "
                     "layers; BN, activations, loss and Adam excluded), counted on the twin.")
    if matmul:
        idle = matmul["load_before"] < 0.5
        lines.append(f"- Roofline ({matmul['n']}² matmul, best of 5, per library; a row's "
                     "`% roofline` divides by its own library's rate): TF fp32 "
                     f"{matmul['tf_float32']:.0f}, bf16 {matmul['tf_bfloat16']:.0f} GFLOP/s; "
                     f"torch fp32 {matmul['torch_float32']:.0f}, bf16 "
                     f"{matmul['torch_bfloat16']:.0f} GFLOP/s; measured at a 1-min load of "
                     f"{matmul['load_before']:.2f}"
                     + ("." if idle else " (**not idle**: the rates, and so the "
                        "percentages, are too low/high)."))
    problems = check_twin(rows)
    twin_ok = not problems and any(r["spec"]["kind"] == "twin" and "error" not in r
                                   for r in rows)
    lines.append("- Twin check: " + ("parameter count and output shapes equal the Keras "
                                     "model's." if twin_ok else "; ".join(problems)
                                     or "not run"))
    lines += ["", "| run | mode | precision | phase | img/s | s/step | first s | GFLOP/s | "
                  "% roofline | vs TF fp32 | Keras-TF / this | peak RSS MB | load | measured |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        spec = r["spec"]
        if spec["kind"] not in ("keras", "twin"):
            continue
        label, mode = _label(spec), _mode(spec)
        precision = "bf16" if spec.get("policy") == "mixed_bfloat16" else "fp32"
        if "error" in r:
            lines.append(f"| {label} | {mode} | {precision} | | failed: "
                         f"{r['error'].replace('|', '/')} | | | | | | | | | |")
            continue
        for phase in PHASES:
            p = r[phase]
            ips = batch / p["median_s"]
            gflops = flops.get(phase, 0) * ips / 1e9
            lib = library.get(label)
            dtype = "bfloat16" if precision == "bf16" else "float32"
            roof = (f"{100 * gflops / matmul[lib + '_' + dtype]:.0f}"
                    if matmul and flops and lib else "")
            vs_tf = f"{ips / tf32[phase]:.2f}" if tf32 else ""
            same = tf_same_precision(spec["policy"])
            tf_over = f"{same[phase] / ips:.2f}" if same else ""
            lines.append(
                f"| {label} | {mode} | {precision} | {phase[-1]} | {ips:.2f} | "
                f"{p['median_s']:.2f} | {p['first_s']:.0f} | {gflops:.0f} | {roof} | "
                f"{vs_tf} | {tf_over} | {r['peak_rss_mb']:.0f} | "
                f"{r['load_before']:.1f}/{r['load_after']:.1f} | "
                f"{r.get('measured_at', '')[11:]} |")  # the time, or a time range
    lines += ["", "Other rows:", ""]
    for r in rows:
        spec = r["spec"]
        if spec["kind"] == "pipeline":
            if "error" in r:
                lines.append(f"- tf.data input pipeline: failed: {r['error']}")
                continue
            best = max((v["phase1"] for v in ref.values()), default=None)
            ratio = (f"; {r['images_per_s'] / best:.1f}x the fastest trainer row "
                     f"({best:.2f} img/s)") if best else ""
            lines.append(
                f"- tf.data input pipeline (`mixed_train_dataset`, {args.dataset} read + "
                f"decode, resize to {args.size}², colour shift, label resize, domain mixing): "
                f"**{r['images_per_s']:.0f} img/s**{ratio}; peak RSS "
                f"{r['peak_rss_mb']:.0f} MB; load {r['load_before']:.1f}/"
                f"{r['load_after']:.1f}.")
        elif spec["kind"] == "matmul" and "error" in r:
            lines.append(f"- matmul: failed: {r['error']}")
    lines += ratio_lines(ref)
    lines.append("")
    return "\n".join(lines)


def ratio_lines(ref) -> list[str]:
    """Keras-TF vs the best twin row and vs Keras's own BatchNorm, per precision/phase."""
    lines = []
    for policy, name in (("float32", "fp32"), ("mixed_bfloat16", "bf16")):
        tf_row = ref.get(("keras-tensorflow", "no jit", policy))
        if not tf_row:
            continue
        twins = [(mode, ref[("torch-twin", mode, policy)]) for mode in ("eager", "torch.compile")
                 if ("torch-twin", mode, policy) in ref]
        parts = []
        for phase in PHASES:
            if twins:
                mode, best = max(twins, key=lambda t: t[1][phase])
                parts.append(f"phase {phase[-1]} **{tf_row[phase] / best[phase]:.2f}x** the "
                             f"best twin ({mode} {best[phase]:.2f} img/s)")
        unfused = ref.get(("keras-tensorflow", "no jit, Keras BN", policy))
        if unfused:
            parts.append("fused / Keras BatchNorm " + ", ".join(
                f"phase {p[-1]} {tf_row[p] / unfused[p]:.2f}x" for p in PHASES))
        if parts:
            lines.append(f"- Keras-TF {name} (no jit, fused BatchNorm): " + "; ".join(parts)
                         + ".")
    return lines


def _fmt_load(load) -> str:
    return "/".join(f"{v:.2f}" for v in load)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    flags = open("/proc/cpuinfo").read()
                    extras = [f for f in ("avx512f", "avx512_bf16", "amx_bf16")
                              if f" {f}" in flags]
                    return f"{name} ({', '.join(extras)})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_gb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9


def _versions() -> str:
    from importlib import metadata

    parts = []
    for name in ("tensorflow", "keras", "jax", "torch"):
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="Markdown file to write.")
    parser.add_argument("--quick", action="store_true",
                        help="Smoke run: 64x64, batch 2+2, 2 steps (validates every row).")
    parser.add_argument("--configs", default="default", choices=("default", "all"),
                        help="'all' adds Keras-JAX without jit and Keras-torch with jit.")
    parser.add_argument("--only", default="",
                        help="Comma-separated rows to run, each label[/mode[/precision]]: e.g. "
                        "matmul,keras-tensorflow/nojit/fp32,torch-twin/eager (labels: "
                        "matmul, keras-<backend>, torch-twin, tf.data; modes: jit, nojit, "
                        "eager, compile; precisions: fp32, bf16).")
    parser.add_argument("--backbone", default="resnet50",
                        choices=("resnet50", "efficientnet_lite0"),
                        help="The network (both the Keras model and the PyTorch twin).")
    parser.add_argument("--decoder_channels", type=int, default=256)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch_source", type=int, default=8)
    parser.add_argument("--batch_target", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--dataset", default="sim2real_rooms/default")
    parser.add_argument("--data_dir", default=os.path.join(ROOT, ".tfds"))
    parser.add_argument("--timeout", type=int, default=900, help="Seconds per row.")
    parser.add_argument("--json", default=None, help="Also write the raw rows here "
                        "(default: --out with .json).")
    parser.add_argument("--merge", default=None,
                        help="Earlier rows (a --json file or a run's log): rows this run "
                        "measures replace theirs, the others are kept.")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.out and not args.json:
        args.json = os.path.splitext(args.out)[0] + ".json"  # raw rows, for --merge
    try:
        selectors = parse_only(args.only)
        previous = load_rows(args.merge) if args.merge else []
    except (ValueError, OSError) as e:
        parser.error(str(e))
    if args.quick:
        args.size, args.batch_source, args.batch_target = 64, 2, 2
        args.steps, args.warmup, args.timeout = 2, 0, 600
    if args.child:
        args.data_dir = args.data_dir or None
        child(args)
        return 0
    args.load_start = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    command = "python benchmarks/throughput.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]))
    t0 = time.perf_counter()
    rows = []
    order = configurations(args.quick, args.configs)
    for spec in order:
        if not selected(spec, selectors):
            continue
        result = _launch(args, spec)
        rows.append(result)
        brief = {k: v for k, v in result.items() if k not in ("output_shapes",)}
        print(json.dumps(brief), flush=True)
    if previous:
        rows = merge_rows(previous, rows, order)
    text = render(rows, args, started, command.strip(), time.perf_counter() - t0)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    problems = check_twin(rows)
    if problems:
        print("TWIN MISMATCH: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
