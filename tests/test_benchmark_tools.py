"""The benchmark scripts' bookkeeping (row selection, merging, profile parsing).

The measurements themselves are never run in the test suite (issue 8: numbers come from
the scripts, not from timed tests); this checks that the scripts select, merge and parse
what they say.
"""

import importlib.util
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
    path = os.path.join(ROOT, "benchmarks", f"{name}.py")
    sys.path.insert(0, os.path.dirname(path))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    return module


@pytest.fixture(scope="module")
def tp():
    return _load("throughput")


def test_only_selectors_pick_exactly_the_named_rows(tp):
    order = tp.configurations(quick=False, selection="default")
    def pick(text):
        return [tp._tokens(s) for s in order if tp.selected(s, tp.parse_only(text))]

    assert pick("keras-tensorflow/nojit/fp32") == [("keras-tensorflow", "nojit", "fp32")]
    assert pick("torch-twin/compile") == [("torch-twin", "compile", "fp32"),
                                          ("torch-twin", "compile", "bf16")]
    # fused (default) and Keras-BatchNorm rows without jit, fused rows with jit
    assert len(pick("keras-tensorflow")) == 6
    assert pick("keras-tensorflow/nojit-kerasbn") == [
        ("keras-tensorflow", "nojit-kerasbn", "fp32"),
        ("keras-tensorflow", "nojit-kerasbn", "bf16")]
    assert pick("matmul,tf.data") == [("matmul", "", ""), ("tf.data", "", "")]
    assert len(pick("")) == len(order)


@pytest.mark.parametrize("bad", ["keras-tf", "keras-tensorflow/xla", "matmul/nojit/fp64",
                                 "torch-twin/eager/bf16/extra"])
def test_bad_selectors_are_one_clear_error(tp, bad):
    with pytest.raises(ValueError, match="label\\[/mode\\[/precision\\]\\]"):
        tp.parse_only(bad)


def test_merge_replaces_same_spec_rows_and_keeps_run_order(tp):
    order = tp.configurations(quick=False, selection="default")
    spec_a, spec_b = order[1], order[2]
    previous = [{"spec": spec_b, "v": "old b"}, {"spec": spec_a, "v": "old a"}]
    merged = tp.merge_rows(previous, [{"spec": dict(spec_a), "v": "new a"}], order)
    assert [r["v"] for r in merged] == ["new a", "old b"]


def test_rows_load_from_json_or_from_a_run_log(tp, tmp_path):
    rows = [{"spec": {"kind": "matmul"}, "n": 4096}]
    as_json = tmp_path / "rows.json"
    as_json.write_text(json.dumps(rows))
    as_log = tmp_path / "log.txt"
    as_log.write_text("starting\n" + json.dumps(rows[0]) + "\n| table |\n")
    assert tp.load_rows(str(as_json)) == rows == tp.load_rows(str(as_log))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"spec": 1}))
    with pytest.raises(ValueError, match="bad.json"):
        tp.load_rows(str(bad))


def test_twin_check_skips_shapes_a_merged_row_lacks_but_catches_mismatches(tp):
    keras_row = {"spec": {"kind": "keras"}, "params_total": 10, "params_head": 2}
    twin = {"spec": {"kind": "twin"}, "params_total": 10, "params_head": 2,
            "output_shapes": {"normals": [128, 128, 3]}}
    assert tp.check_twin([keras_row, twin]) == []
    assert tp.check_twin([keras_row, dict(twin, params_head=3)]) != []


def test_ratio_lines_compare_keras_tf_with_the_best_twin_row_of_its_precision(tp):
    ref = {("keras-tensorflow", "no jit", "float32"): {"phase1": 6.0, "phase2": 8.0},
           ("keras-tensorflow", "no jit, Keras BN", "float32"): {"phase1": 5.0, "phase2": 5.0},
           ("torch-twin", "eager", "float32"): {"phase1": 5.0, "phase2": 4.0},
           ("torch-twin", "torch.compile", "float32"): {"phase1": 4.0, "phase2": 5.0},
           ("keras-tensorflow", "no jit", "mixed_bfloat16"): {"phase1": 3.0, "phase2": 3.0},
           ("torch-twin", "eager", "mixed_bfloat16"): {"phase1": 6.0, "phase2": 6.0}}
    fp32, bf16 = tp.ratio_lines(ref)
    assert "phase 1 **1.20x** the best twin (eager" in fp32
    assert "phase 2 **1.60x** the best twin (torch.compile" in fp32
    assert "fused / Keras BatchNorm phase 1 1.20x, phase 2 1.60x" in fp32
    assert "phase 1 **0.50x** the best twin (eager" in bf16 and "Keras BatchNorm" not in bf16


def test_each_row_is_divided_by_its_own_librarys_roofline(tp):
    import argparse

    args = argparse.Namespace(batch_source=1, batch_target=1, backbone="resnet50",
                              decoder_channels=8, size=64, steps=1, warmup=0, merge=None,
                              quick=False, dataset="d", load_start=(0, 0, 0))
    phases = {"phase1": {"median_s": 2.0, "first_s": 1.0},
              "phase2": {"median_s": 2.0, "first_s": 1.0}}
    rows = [{"spec": {"kind": "matmul"}, "n": 8, "tf_float32": 100.0, "torch_float32": 50.0,
             "tf_bfloat16": 400.0, "torch_bfloat16": 200.0, "load_before": 0.1},
            {"spec": {"kind": "keras", "backend": "tensorflow", "jit": False,
                      "policy": "float32"}, **phases, "peak_rss_mb": 1,
             "load_before": 0, "load_after": 0},
            {"spec": {"kind": "twin", "backend": "torch", "jit": False, "policy": "float32"},
             **{p: dict(v, flops=20e9) for p, v in phases.items()}, "peak_rss_mb": 1,
             "load_before": 0, "load_after": 0}]
    text = tp.render(rows, args, "now", "cmd", 60)
    table = {tuple(c.strip() for c in line.split("|")[1:5]): line.split("|")[9].strip()
             for line in text.splitlines() if line.startswith("| keras") or
             line.startswith("| torch")}
    # 1 img/s x 20 GFLOP = 20 GFLOP/s: 20 % of TF's fp32 rate, 40 % of torch's.
    assert table[("keras-tensorflow", "no jit", "fp32", "1")] == "20"
    assert table[("torch-twin", "eager", "fp32", "1")] == "40"
    assert "measured at a 1-min load of 0.10." in text


def test_profile_parser_sums_op_types_of_a_trace(tmp_path):
    xplane_pb2 = pytest.importorskip("tensorflow.tsl.profiler.protobuf.xplane_pb2")
    profile = _load("profile_tf")
    space = xplane_pb2.XSpace()
    plane = space.planes.add(name="/host:CPU")
    for i, name in enumerate(["conv/Conv2D:_FusedConv2D", "bn:FusedBatchNormV3",
                              "call:StatefulPartitionedCall", "not an op event"], start=1):
        plane.event_metadata[i].id = i
        plane.event_metadata[i].name = name
    line = plane.lines.add(name="tf_Compute")
    for metadata_id, ms in [(1, 3.0), (1, 2.0), (2, 1.5), (3, 100.0), (4, 50.0)]:
        line.events.add(metadata_id=metadata_id, duration_ps=int(ms * 1e9))
    space.planes.add(name="/device:GPU:0")  # ignored: not a host plane
    path = tmp_path / "t.xplane.pb"
    path.write_bytes(space.SerializeToString())
    assert profile.parse_xspace(str(path)) == pytest.approx(
        {"_FusedConv2D": 5.0, "FusedBatchNormV3": 1.5})


def test_readme_table_is_computed_from_the_rows():
    rt = _load("readme_table")

    def row(kind, policy, s1, s2, jit=False, **extra):
        spec = {"kind": kind, "backend": "tensorflow" if kind == "keras" else "torch",
                "jit": jit, "policy": policy, **extra}
        return {"spec": spec, "phase1": {"median_s": s1}, "phase2": {"median_s": s2},
                "load_before": 0.1}

    rows = [{"spec": {"kind": "matmul"}},
            row("keras", "float32", 2.0, 1.0), row("keras", "float32", 4.0, 2.0,
                                                   batchnorm="keras"),
            row("twin", "float32", 1.0, 4.0), row("twin", "float32", 8.0, 8.0, jit=True),
            row("keras", "float32", 0.5, 0.5, jit=True)]  # jit rows are not in the table
    lines = rt.table(rows)
    assert lines[2] == "| fp32 | Keras-TF, fused batch norm | 8.00 / 16.00 | 1.00 / 1.00 |"
    assert lines[3] == "| fp32 | Keras-TF, Keras's batch norm | 4.00 / 8.00 | 2.00 / 2.00 |"
    assert lines[4] == "| fp32 | PyTorch twin, eager | 16.00 / 4.00 | 0.50 / 4.00 |"
    assert lines[5] == "| fp32 | PyTorch twin, `torch.compile` | 2.00 / 2.00 | 4.00 / 8.00 |"
    assert len(lines) == 6


def test_readme_performance_table_is_the_one_generated_from_the_committed_rows():
    rt = _load("readme_table")
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    start = readme.index(rt.BEGIN) + len(rt.BEGIN)
    assert readme[start:readme.index(rt.END)] == "\n" + rt.block()


def test_gpu_check_quick_writes_the_dated_table_on_a_cpu(tmp_path):
    """benchmarks/gpu_check.py --quick: every part runs (device line, a throughput row,
    a short training run with its metrics) and lands in the Markdown table and its JSON."""
    import re
    import subprocess

    out = tmp_path / "gpu_check.md"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_check.py"),
                           "--quick", f"--out={out}", f"--data_dir={tmp_path / 'tfds'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# GPU check, 20") and "- device: " in text
    row = next(ln for ln in text.splitlines() if ln.startswith("| efficientnet_lite0 |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1:4] == ["tensorflow", "no jit", "fp32"]
    assert all(float(c) > 0 for c in cells[4:6]), row  # img/s of both phases
    demo = text.splitlines()[-1]
    assert re.fullmatch(r"\| 20 \| \d+ \| \d+ \| [\d.]+ \| [\d.]+ \|", demo), demo
    raw = json.loads((tmp_path / "gpu_check.json").read_text())
    assert raw["demo"]["target_test"]["mean"] > 0 and raw["rows"]["efficientnet_lite0"]


def test_eval_speed_table_has_one_row_per_result_and_flags_a_mismatch(tmp_path):
    es = _load("eval_speed")
    rows = {"tensorflow": (134.6, 57.0, True), "torch": (243.9, 278.9, False)}
    paths = []
    for backend, (slow, fast, same) in rows.items():
        path = tmp_path / f"eval_speed_{backend}.json"
        path.write_text(json.dumps({
            "backend": backend, "cpu": "AMD EPYC", "simd": ["avx2"], "predict_ms": slow,
            "predict_on_batch_ms": fast, "speedup": round(slow / fast, 2), "identical": same}))
        paths.append(str(path))
    lines = es.readme_table(paths).splitlines()
    assert len(lines) == 2 + 2
    assert lines[2] == "| tensorflow | AMD EPYC (avx2) | 134.6 | 57.0 | 2.36x | yes |"
    assert lines[3].endswith("| 0.87x | **no** |")
