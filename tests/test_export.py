"""tada-export: each format in its own runtime against Keras, and tada-predict --model=FILE.

A small network (the ``tiny`` backbone) saved as a finished run; each exported file runs
in its own runtime (``tf.saved_model.load``, onnxruntime, the LiteRT interpreter) and must
match Keras within 1e-4 absolute / 0.01° on a non-square batch.
"""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="tada-export runs on the TensorFlow backend")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATOL, MAX_DEGREES = 1e-4, 0.01
FORMATS = ("saved_model", "onnx", "litert")


def _finished_run(path, main_task="normals"):
    """A run directory as tada_keras.train leaves it (config.json, model.keras) holding a
    tiny network with non-trivial BatchNorm statistics."""
    import tada_keras
    from tada_keras.config import RunConfig

    keras.utils.set_random_seed(0)
    model = tada_keras.build_model(main_task=main_task, anchor_task="segmentation",
                                   anchor_config={"num_classes": 5}, backbone="tiny",
                                   decoder_channels=16)
    rng = np.random.default_rng(0)
    for layer in model._flatten_layers():
        if hasattr(layer, "moving_variance"):
            shape = layer.moving_variance.shape
            layer.moving_mean.assign(rng.normal(0, 0.1, shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, shape).astype("float32"))
    os.makedirs(path, exist_ok=True)
    model.save(os.path.join(path, "model.keras"))
    cfg = RunConfig(backbone="tiny", decoder_channels=16, main_task=main_task)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(cfg), f)
    return str(path)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return _finished_run(tmp_path_factory.mktemp("run") / "normals")


@pytest.fixture(scope="module")
def model(run_dir):
    from tada_keras.inference import load_run

    return load_run(run_dir)[1]


def _images(height=64, width=96, batch=2, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (batch, height, width, 3)).astype(
        "float32")


def _angles(a, b):
    """Angles (degrees) between vectors, in float64 and by atan2 (arccos of a float32
    cosine near 1 is off by ~0.02°)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1),
                                 np.sum(a * b, axis=-1)))


def _assert_normals_match(got, want):
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= ATOL
    assert _angles(got, want).max() <= MAX_DEGREES
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-5)


def _path(tmp_path, fmt, name="model"):
    from tada_keras.deployment import FORMATS as ENDINGS

    return str(tmp_path / (name + ENDINGS[fmt][1]))


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_matches_keras_in_its_own_runtime(model, tmp_path, fmt):
    from tada_keras.deployment import ExportedModel, export_model
    from tada_keras.inference import predict_main, predict_padded

    images = _images()  # non-square, batch of 2
    # 1/2 resolution (the network's own), with the anchor's raw outputs.
    half = export_model(model, _path(tmp_path, fmt, "half"), fmt, anchor=True)
    exported = ExportedModel(half)
    assert exported.task == "normals" and exported.input_size is None
    assert set(exported.output_names) == {"normals", "segmentation"}
    out = exported.predict(images)
    _assert_normals_match(out["normals"], predict_main(model, images))
    want = predict_padded(model, images)["segmentation"]
    assert np.abs(out["segmentation"] - want).max() <= ATOL
    # Any multiple of 32, batch size included (a square 32x32 single image).
    small = _images(32, 32, batch=1, seed=2)
    _assert_normals_match(exported.predict(small)["normals"], predict_main(model, small))

    # Input resolution: bilinear up-sampling and re-normalisation inside the graph.
    full = export_model(model, _path(tmp_path, fmt, "full"), fmt, full_resolution=True)
    out = ExportedModel(full).predict(images)
    assert set(out) == {"normals"}
    _assert_normals_match(out["normals"], predict_main(model, images, (64, 96)))


def test_fixed_size_uint8_export(model, tmp_path):
    from tada_keras.deployment import ExportedModel, export_model
    from tada_keras.inference import predict_main

    path = export_model(model, _path(tmp_path, "onnx"), "onnx", input_size=(32, 64),
                        input_dtype="uint8")
    exported = ExportedModel(path)
    assert exported.input_size == (32, 64) and exported.input_dtype == np.uint8
    images = np.round(_images(32, 64, batch=3))
    _assert_normals_match(exported.predict(images)["normals"], predict_main(model, images))


@pytest.mark.parametrize("quantize", ["float16", "int8"])
def test_quantised_litert(model, tmp_path, quantize):
    from tada_keras.deployment import ExportedModel, export_model
    from tada_keras.inference import predict_main

    fp32 = export_model(model, _path(tmp_path, "litert", "fp32"), "litert")
    path = export_model(model, _path(tmp_path, "litert", quantize), "litert",
                        quantize=quantize)
    assert os.path.getsize(path) < os.path.getsize(fp32)
    images = _images()
    got = ExportedModel(path).predict(images)["normals"]
    want = predict_main(model, images)
    assert got.shape == want.shape and np.all(np.isfinite(got))
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-5)
    # Quantisation costs accuracy, not the meaning of the output.
    assert np.median(_angles(got, want)) < (1.0 if quantize == "float16" else 20.0)


def test_depth_export(tmp_path):
    from tada_keras.deployment import ExportedModel, export_model
    from tada_keras.inference import load_run, predict_main

    _, depth_model = load_run(_finished_run(tmp_path / "depth", "depth"))
    images = _images()
    for full, size in ((False, None), (True, (64, 96))):
        path = export_model(depth_model, str(tmp_path / f"depth_{full}"), "saved_model",
                            full_resolution=full)
        exported = ExportedModel(path)
        assert exported.task == "depth"
        got, want = exported.predict(images)["depth"], predict_main(depth_model, images, size)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=ATOL)


def _run(args, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    return subprocess.run([sys.executable] + args, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, **kwargs)


def test_cli_export_and_predict_from_the_file(run_dir, tmp_path):
    from PIL import Image

    image = (np.random.default_rng(3).random((64, 96, 3)) * 255).astype("uint8")
    Image.fromarray(image).save(tmp_path / "photo.png")
    out = tmp_path / "model.tflite"
    proc = _run(["-m", "tada_keras.export", f"--model_dir={run_dir}", "--format=litert",
                 f"--out={out}", "--full_resolution"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(out) in proc.stdout and out.is_file()
    for flag, folder in ((f"--model_dir={run_dir}", "from_run"), (f"--model={out}", "from_file")):
        proc = _run(["-m", "tada_keras.predict", flag, f"--images={tmp_path / 'photo.png'}",
                     f"--out={tmp_path / folder}"])
        assert proc.returncode == 0, proc.stderr[-3000:]
    names = sorted(os.listdir(tmp_path / "from_run"))
    assert names == sorted(os.listdir(tmp_path / "from_file")) == [
        "photo_normals.npy", "photo_normals.png", "photo_side_by_side.png"]
    _assert_normals_match(np.load(tmp_path / "from_file" / "photo_normals.npy"),
                          np.load(tmp_path / "from_run" / "photo_normals.npy"))


def test_cli_errors_one_line_nothing_written(run_dir, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text("{}")
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), "uint8")).save(unfinished / "x.png")
    out = tmp_path / "out.onnx"
    no_tf2onnx = ("import sys; sys.modules['tf2onnx'] = None; "
                  "from tada_keras.export import run; run()")
    cases = (
        (["-m", "tada_keras.export", f"--model_dir={unfinished}", "--format=onnx",
          f"--out={out}"], "model.keras not found (is the training run finished?)"),
        (["-c", no_tf2onnx, f"--model_dir={run_dir}", "--format=onnx", f"--out={out}"],
         'tf2onnx (not installed): pip install "tada-keras[export]"'),
        (["-m", "tada_keras.export", f"--model_dir={run_dir}", "--format=onnx",
          "--input_size=100", f"--out={out}"], "--input_size=100: must be"),
        (["-m", "tada_keras.export", f"--model_dir={run_dir}", "--format=onnx",
          "--quantize=int8", f"--out={out}"], "--quantize=int8 is for --format=litert only"),
        (["-m", "tada_keras.predict", f"--model={out}", f"--images={unfinished / 'x.png'}",
          f"--out={tmp_path / 'pred'}"], f"--model={out}: not found"),
    )
    for args, needle in cases:
        proc = _run(args)
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and needle in lines[0], (needle, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr
        assert os.listdir(tmp_path) == ["unfinished"], os.listdir(tmp_path)


def test_a_failed_export_leaves_nothing(model, tmp_path, monkeypatch):
    from tada_keras.deployment import export_model

    def broken(self, filepath, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"half")
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(keras.Model, "export", broken)
    with pytest.raises(RuntimeError, match="converter crashed"):
        export_model(model, str(tmp_path / "export" / "model.onnx"), "onnx")
    assert os.listdir(tmp_path) == []


def test_benchmark_table_flags_fp32_outside_the_bounds():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import export_parity
    finally:
        sys.path.pop(0)

    def row(variant, fmt, quantize, diff, degrees):
        return {"variant": variant, "format": fmt, "quantize": quantize, "max_abs_diff": diff,
                "max_angular_diff_deg": degrees, "metrics": {"mean": 35.6},
                "latency_ms": {"128": 2.0, "256": 8.0}, "size_mb": 12.0}

    result = {"task": "normals", "primary": "mean", "images": 300, "split": "s:target_test",
              "full_resolution": True, "repeats": 20, "cpu": "cpu", "load": [1.0, 1.0],
              "run": "python benchmarks/export_parity.py", "model_dir": "run", "versions": "v",
              "rows": [row("Keras (TF)", None, "none", 0.0, 0.0),
                       row("ONNX", "onnx", "none", 1e-5, 0.001),
                       row("LiteRT int8", "litert", "int8", 0.3, 17.0)]}
    text = export_parity.table(result)
    assert "| ONNX | 1.0e-05 | 0.0010° | 35.600 | 2.0 | 8.0 | 12.0 |" in text
    assert "the fp32 formats are within 1e-4 / 0.01°" in text  # int8 is not held to it
    result["rows"][1]["max_angular_diff_deg"] = 0.02
    assert "the fp32 formats are OUTSIDE 1e-4 / 0.01°" in export_parity.table(result)
