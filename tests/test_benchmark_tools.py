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
    assert len(pick("keras-tensorflow")) == 4
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
