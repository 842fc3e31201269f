"""The train / evaluate / predict CLI end to end on the tiny embedded benchmark."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.flags")


def _run(args, env_extra=None, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m"] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tfds"))
    import tensorflow_datasets as tfds

    import tada_datasets  # noqa: F401

    tfds.builder("sim2real_rooms/tiny", data_dir=path).download_and_prepare()
    return path


def test_train_evaluate_predict_end_to_end(data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    proc = _run(["tada_keras.train", f"--flagfile={TINY}", f"--model_dir={model_dir}",
                 f"--data_dir={data_dir}", "--method=headfreeze"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "target_test" in proc.stdout and "median" in proc.stdout
    with open(os.path.join(model_dir, "metrics.json")) as f:
        metrics = json.load(f)
    assert set(metrics["target_test"]) == {"mean", "median", "rmse", "a11_25", "a22_5", "a30",
                                           "nonfinite_fraction"}
    assert metrics["target_test"]["nonfinite_fraction"] == 0.0
    assert 0 < metrics["target_test"]["mean"] < 180
    for name in ("model.keras", "config.json", "figures/target_test_examples.png",
                 "figures/training_curves.png", "phase_phase1/DONE", "phase_phase2/DONE"):
        assert os.path.exists(os.path.join(model_dir, name)), name
    assert os.listdir(os.path.join(model_dir, "logs"))
    for phase, steps in (("phase1", 2), ("phase2", 2)):
        with open(os.path.join(model_dir, f"phase_{phase}", "DONE")) as f:
            assert json.load(f)["optimizer_steps"] == steps

    proc = _run(["tada_keras.evaluate", f"--model_dir={model_dir}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert evaluated["target_test"]["mean"] == pytest.approx(metrics["target_test"]["mean"],
                                                             rel=1e-4)

    from PIL import Image

    image = tmp_path / "a.png"
    Image.fromarray((np.random.default_rng(0).random((40, 70, 3)) * 255).astype("uint8")).save(
        image)
    out = tmp_path / "pred"
    proc = _run(["tada_keras.predict", f"--model_dir={model_dir}", f"--images={image}",
                 f"--out={out}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    normals = np.load(out / "a_normals.npy")
    assert normals.shape == (16, 32, 3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-4)
    assert (out / "a_normals.png").exists()


@pytest.mark.parametrize("args,needle", [
    (["--method=mtl_all"], "--method"),
    (["--anchor=depth"], "--anchor"),
    (["--flagfile=/nonexistent/x.flags"], "x.flags"),
    (["--method=mtl_both", "--batch_target=0"], "--batch_target=0 conflicts"),
    (["--crop_size=100"], "--crop_size=100"),
    (["--dtype_policy=mixed_float16"], "--dtype_policy"),
    (["--steps=5", "--steps_per_epoch=2", "--method=baseline"], "--steps_per_epoch"),
    (["--learning_rate=nan"], "--learning_rate=nan: expected a finite number"),
    (["--learning_rate=inf"], "--learning_rate=inf: expected a finite number"),
    (["--learning_rate=-1"], "--learning_rate=-1.0: expected a value in (0, inf)"),
    (["--learning_rate=0"], "--learning_rate=0.0: expected a value in (0, inf)"),
    (["--anchor_weight=-0.5"], "--anchor_weight=-0.5"),
    (["--phase1_fraction=1.5"], "--phase1_fraction=1.5: expected a value in (0, 1)"),
    (["--decoder_channels=0"], "--decoder_channels must be >= 1"),
    (["--num_figures=-1"], "--num_figures must be >= 0"),
])
def test_bad_flags_fail_fast_and_write_nothing(tmp_path, args, needle):
    model_dir = tmp_path / "never"
    proc = _run(["tada_keras.train", f"--flagfile={TINY}", f"--model_dir={model_dir}"] + args)
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert not model_dir.exists()


def test_diverged_run_stops_with_one_line_and_nothing_marked_done(data_dir, tmp_path):
    model_dir = tmp_path / "diverged"
    proc = _run(["tada_keras.train", f"--flagfile={TINY}", f"--model_dir={model_dir}",
                 f"--data_dir={data_dir}", "--method=headfreeze", "--learning_rate=1e9"])
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "diverged" in errors[0] and "--learning_rate" in errors[0]
    assert "Traceback" not in proc.stderr
    left = {str(p.relative_to(model_dir)) for p in model_dir.rglob("*")}
    for never in ("phase_phase1/DONE", "phase_phase1/final.weights.h5", "metrics.json",
                  "model.keras", "phase_phase2"):
        assert never not in left, left
    assert not any("backup/ckpt-" in p for p in left)  # no diverged checkpoint either


def _wait_for_epoch(model_dir, phase, epoch, proc, timeout=300):
    path = os.path.join(model_dir, f"phase_{phase}", "backup", "state.json")
    start = time.time()
    while time.time() - start < timeout:
        if proc.poll() is not None:
            return False
        try:
            with open(path) as f:
                if json.load(f)["epoch"] >= epoch:
                    return True
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    return False


def _train_args(model_dir, data_dir):
    return ["tada_keras.train", f"--flagfile={TINY}", f"--model_dir={model_dir}",
            f"--data_dir={data_dir}", "--method=headfreeze", "--steps=48",
            "--steps_per_epoch=2", "--deterministic", "--seed=3"]


def _weights(model_dir):
    import h5py

    values = {}
    with h5py.File(os.path.join(model_dir, "phase_phase2", "final.weights.h5")) as f:
        f.visititems(lambda name, obj: values.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return values


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
                    reason="bit-exact resume is promised for the TensorFlow backend")
@pytest.mark.parametrize("kill_phase", ["phase1", "phase2"])
def test_resume_after_kill_matches_uninterrupted_run(data_dir, tmp_path, kill_phase):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    interrupted = str(tmp_path / "interrupted")
    proc = subprocess.Popen([sys.executable, "-m"] + _train_args(interrupted, data_dir),
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    reached = _wait_for_epoch(interrupted, kill_phase, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert reached, "training finished or failed before it could be killed"
    assert not os.path.exists(os.path.join(interrupted, "metrics.json"))
    assert not os.path.exists(os.path.join(interrupted, f"phase_{kill_phase}", "DONE"))

    resumed = _run(_train_args(interrupted, data_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    if kill_phase == "phase2":
        assert "[phase1] already complete" in resumed.stdout
    for phase in ("phase1", "phase2"):
        with open(os.path.join(interrupted, f"phase_{phase}", "DONE")) as f:
            assert json.load(f)["optimizer_steps"] == 24

    clean = str(tmp_path / "clean")
    proc = _run(_train_args(clean, data_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _weights(clean), _weights(interrupted)
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
