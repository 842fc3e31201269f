"""Depth as a main task: its loss, its metrics on known geometry, and the whole pipeline
(train, HeadFreeze, DA, evaluate, predict, figures, harness tables) with ``--main=depth``."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from keras import ops

from tada_keras import conventions as C
from tada_keras.tasks import get_task, tasks_for_role
from tada_keras.tasks.depth import DepthErrorAccumulator, depth_error_stats

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "tiny.flags")


def pooled(task, y, y_pred):
    (loss, weight, coefficient), = task.loss_terms(y, y_pred)
    loss, weight = ops.convert_to_numpy(loss), ops.convert_to_numpy(weight)
    return coefficient * float(np.sum(loss * weight) / np.sum(weight))


def eigen_loss(log_pred, gt, lam):
    """Eigen et al. 2014, Eq. 4, on one image's valid pixels."""
    valid = gt > 0
    d = log_pred[valid] - np.log(gt[valid])
    return float(np.mean(d ** 2) - lam * np.mean(d) ** 2)


def test_depth_is_a_main_task_and_an_anchor_choice():
    assert "depth" in tasks_for_role("main") and "normals" in tasks_for_role("main")
    assert "depth" in tasks_for_role("anchor") and "normals" not in tasks_for_role("anchor")


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_loss_is_eigens_scale_invariant_loss(lam):
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 8.0, (1, 16, 16)).astype("float32")
    gt[0, :3] = 0.0  # no measurement: never reaches the loss
    log_pred = rng.normal(0.5, 0.7, (1, 16, 16, 1)).astype("float32")
    task = get_task("depth", si_lambda=lam)
    got = pooled(task, {C.DEPTH: gt}, {"depth": log_pred})
    assert got == pytest.approx(eigen_loss(log_pred[0, ..., 0], gt[0], lam), rel=1e-5)
    # Two images with equal valid counts: the pooled loss is the mean of their losses.
    gt2 = np.concatenate([gt, rng.uniform(0.5, 8.0, (1, 16, 16)).astype("float32")])
    gt2[1, :3] = 0.0
    log2 = np.concatenate([log_pred, rng.normal(size=(1, 16, 16, 1)).astype("float32")])
    expected = np.mean([eigen_loss(log2[i, ..., 0], gt2[i], lam) for i in range(2)])
    assert pooled(task, {C.DEPTH: gt2}, {"depth": log2}) == pytest.approx(expected, rel=1e-5)


def test_fully_scale_invariant_loss_ignores_a_global_scale_and_half_lambda_does_not():
    rng = np.random.default_rng(1)
    gt = rng.uniform(1.0, 5.0, (2, 8, 8)).astype("float32")
    log_pred = np.log(gt)[..., None] + rng.normal(0, 0.1, (2, 8, 8, 1)).astype("float32")
    shifted = log_pred + np.log(3.0).astype("float32")
    full = get_task("depth", si_lambda=1.0)
    assert pooled(full, {C.DEPTH: gt}, {"depth": shifted}) == pytest.approx(
        pooled(full, {C.DEPTH: gt}, {"depth": log_pred}), abs=1e-5)
    half = get_task("depth", si_lambda=0.5)
    assert pooled(half, {C.DEPTH: gt}, {"depth": shifted}) > \
        2 * pooled(half, {C.DEPTH: gt}, {"depth": log_pred})


def test_loss_resizes_the_half_resolution_output_and_ignores_non_finite_ground_truth():
    gt = np.full((1, 8, 8), 2.0, "float32")
    gt[0, 0, 0] = np.nan
    gt[0, 1, 1] = np.inf
    log_pred = np.full((1, 4, 4, 1), np.log(2.0), "float32")
    loss = pooled(get_task("depth"), {C.DEPTH: gt}, {"depth": log_pred})
    assert loss == pytest.approx(0.0, abs=1e-6) and np.isfinite(loss)


def plane_depth(size=32):
    """A floor plane seen by a pinhole camera 1.5 m above it, pitched down: depth grows
    towards the top of the image."""
    rows = np.arange(size, dtype=np.float64)[:, None] + np.zeros((1, size))
    return (1.5 / np.sin(np.radians(20 + 25 * (size - rows) / size)))[None]


def test_metrics_on_a_plane_are_the_closed_form_values():
    gt = plane_depth()
    stats = depth_error_stats(gt * 1.1, gt)
    assert stats["abs_rel"] == pytest.approx(0.1)
    assert stats["sq_rel"] == pytest.approx(0.01 * gt.mean())
    assert stats["rmse"] == pytest.approx(0.1 * np.sqrt(np.mean(gt ** 2)))
    assert stats["rmse_log"] == pytest.approx(np.log(1.1))
    assert (stats["d1"], stats["d2"], stats["d3"]) == (1.0, 1.0, 1.0)
    stats = depth_error_stats(gt * 1.5, gt)
    assert (stats["d1"], stats["d2"], stats["d3"]) == (0.0, 1.0, 1.0)
    stats = depth_error_stats(gt / 2.0, gt)
    assert (stats["d1"], stats["d2"], stats["d3"]) == (0.0, 0.0, 0.0)
    assert stats["abs_rel"] == pytest.approx(0.5)
    exact = depth_error_stats(gt, gt)
    assert exact["abs_rel"] == 0.0 and exact["rmse"] == 0.0 and exact["d1"] == 1.0


def test_metrics_pool_over_pixels_not_images_and_skip_missing_ground_truth():
    gt = np.concatenate([plane_depth(), plane_depth()])
    gt[1, 8:] = 0.0  # a quarter of image 2 measured only
    pred = gt * np.array([1.1, 1.3])[:, None, None]
    stats = depth_error_stats(pred, gt)
    n0, n1 = (gt[0] > 0).sum(), (gt[1] > 0).sum()
    assert stats["abs_rel"] == pytest.approx((0.1 * n0 + 0.3 * n1) / (n0 + n1))
    with pytest.raises(ValueError, match="no valid ground-truth pixel"):
        depth_error_stats(pred, np.zeros_like(gt))


def test_a_non_finite_prediction_never_scores_better_than_any_finite_one():
    gt = np.array([[[0.5, 2.0, 9.5]]])
    for value in (np.nan, np.inf, -np.inf):
        broken = depth_error_stats(np.full_like(gt, value), gt)
        assert broken["nonfinite_fraction"] == 1.0
        assert broken["d1"] == broken["d3"] == 0.0  # never "accurate", even near a limit
        for guess in (1e-4, 0.3, 2.0, 9.9, 50.0):
            finite = depth_error_stats(np.full_like(gt, guess), gt)
            for key in ("abs_rel", "sq_rel", "rmse", "rmse_log"):
                assert broken[key] >= finite[key] - 1e-12, (value, guess, key)


def test_accumulator_over_batches_equals_one_call_and_resizes_log_depth():
    rng = np.random.default_rng(2)
    gt = rng.uniform(0.5, 6.0, (4, 16, 16))
    log_pred = np.log(gt[:, ::2, ::2])[..., None].astype("float32")  # half resolution
    acc = DepthErrorAccumulator()
    for i in (0, 2):
        acc.update({"depth": log_pred[i:i + 2]}, {C.DEPTH: gt[i:i + 2]})
    streamed = acc.result()
    resized = np.exp(ops.convert_to_numpy(ops.image.resize(log_pred, (16, 16),
                                                          interpolation="bilinear"))[..., 0])
    assert streamed == pytest.approx(depth_error_stats(resized, gt), rel=1e-6)


def test_depth_task_builds_and_trains_a_step():
    import tada_keras

    model = tada_keras.build_model(main_task="depth", anchor_task="segmentation",
                                   anchor_config={"num_classes": 5}, backbone="tiny",
                                   decoder_channels=16)
    rng = np.random.default_rng(0)
    x = (rng.random((4, 32, 32, 3)) * 255).astype("float32")
    y = {"domain": np.array([0, 0, 1, 1], "int32"),
         "depth": rng.uniform(0.5, 5, (4, 16, 16)).astype("float32"),
         "segmentation": rng.integers(0, 5, (4, 16, 16)).astype("int32")}
    import keras

    from tada_keras.methods import get_method
    from tada_keras.training.phases import configure_phase

    configure_phase(model, get_method("mtl_both").phases[0], keras.optimizers.Adam(1e-3),
                    get_method("mtl_both").phases[0].weights, "auto")
    first = model.train_on_batch(x, y, return_dict=True)
    for _ in range(5):
        last = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(first["loss"]) and last["loss"] < first["loss"]
    out = model.predict(x, verbose=0)
    assert out["depth"].shape == (4, 16, 16, 1)


def _run(args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=900)


DEPTH_KEYS = {"abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2", "d3", "nonfinite_fraction"}


def test_depth_main_task_end_to_end(data_dir, tmp_path):
    """--main=depth: HeadFreeze trains both phases, evaluates at GT resolution, draws the
    figures, and evaluate / predict work on the run (every backend: backend matrix)."""
    model_dir = str(tmp_path / "run")
    proc = _run(["tada_keras.train", f"--flagfile={TINY}", f"--model_dir={model_dir}",
                 f"--data_dir={data_dir}", "--method=headfreeze", "--main=depth"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "abs_rel" in proc.stdout and "d1" in proc.stdout
    with open(os.path.join(model_dir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["main_task"] == "depth"
    for split in ("target_test", "source_val"):
        assert set(metrics[split]) == DEPTH_KEYS
        assert metrics[split]["nonfinite_fraction"] == 0.0
        assert 0 < metrics[split]["abs_rel"] < 10 and 0 <= metrics[split]["d1"] <= 1
    assert 0 <= metrics["target_test_anchor_miou"] <= 1
    for name in ("figures/target_test_examples.png", "figures/training_curves.png",
                 "phase_phase1/DONE", "phase_phase2/DONE"):
        assert os.path.exists(os.path.join(model_dir, name)), name

    proc = _run(["tada_keras.evaluate", f"--model_dir={model_dir}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert evaluated["target_test"]["abs_rel"] == pytest.approx(
        metrics["target_test"]["abs_rel"], rel=1e-4)

    from PIL import Image

    image = tmp_path / "a.png"
    Image.fromarray((np.random.default_rng(0).random((40, 70, 3)) * 255).astype("uint8")).save(
        image)
    out = tmp_path / "pred"
    proc = _run(["tada_keras.predict", f"--model_dir={model_dir}", f"--images={image}",
                 f"--out={out}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    depth = np.load(out / "a_depth.npy")
    assert depth.shape == (40, 70) and np.all((depth >= 1e-3) & (depth <= 10.0))
    with Image.open(out / "a_depth.png") as png:
        assert png.size == (70, 40) and png.mode == "RGB"


def test_depth_with_output_space_adaptation(data_dir, tmp_path):
    """Tsai et al. on the depth output (its log depth) and DANN train unchanged."""
    for da in ("tsai", "dann"):
        model_dir = str(tmp_path / da)
        proc = _run(["tada_keras.train", f"--flagfile={TINY}", f"--model_dir={model_dir}",
                     f"--data_dir={data_dir}", "--method=baseline", "--main=depth",
                     f"--da={da}"])
        assert proc.returncode == 0, proc.stderr[-3000:]
        with open(os.path.join(model_dir, "metrics.json")) as f:
            metrics = json.load(f)
        assert set(metrics["target_test"]) == DEPTH_KEYS and "discriminator" in metrics


def test_demo_compares_depth_runs_in_the_depth_columns(data_dir, tmp_path):
    """Issue 30: ``tada-demo --main=depth`` trained every method, then failed on the
    normals table's KeyError 'mean'."""
    out = tmp_path / "demo"
    proc = _run(["tada_keras.demo", f"--flagfile={TINY}", f"--data_dir={data_dir}",
                 "--main=depth", "--methods=baseline", f"--out={out}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "baseline" / "metrics.json") as f:
        target = json.load(f)["target_test"]
    lines = (out / "summary.md").read_text().splitlines()
    assert "pooled depth metrics" in lines[0]
    assert lines[2] == ("| method | AbsRel | SqRel | RMSE | RMSE log | δ < 1.25 | δ < 1.25² "
                        "| δ < 1.25³ |")
    assert lines[4] == "| baseline | " + " | ".join(
        f"{target[k]:.3f}" for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2",
                                     "d3")) + " |"


def test_demo_table_of_normals_is_the_readme_table():
    # From inference, not tada_keras.demo: importing a command's module defines its absl
    # flags, and two commands' modules in one process clash.
    from tada_keras.inference import comparison_table

    stats = {"mean": 42.781, "median": 39.244, "rmse": 50.049, "a11_25": 0.0991,
             "a22_5": 0.2789, "a30": 0.3831, "nonfinite_fraction": 0.0}
    assert comparison_table({"baseline": {"target_test": stats}},
                            get_task("normals")).splitlines() == [
        "| method | mean ° | median ° | RMSE ° | < 11.25° | < 22.5° | < 30° |",
        "|---|---:|---:|---:|---:|---:|---:|",
        "| baseline | 42.78 | 39.24 | 50.05 | 0.099 | 0.279 | 0.383 |"]


def test_harness_tables_use_the_depth_columns():
    from tada_keras.experiments import aggregate as A

    def run(abs_rel, d1):
        return {"main_task": "depth", "target_test": {
            "abs_rel": abs_rel, "sq_rel": 0.1, "rmse": 0.5, "rmse_log": 0.2, "d1": d1,
            "d2": 0.9, "d3": 0.95, "nonfinite_fraction": 0.0},
            "source_val": {"abs_rel": abs_rel / 2, "d1": d1}}

    results = {"baseline": [A.flat_metrics(run(0.30, 0.5)), A.flat_metrics(run(0.32, 0.52))],
               "headfreeze": [A.flat_metrics(run(0.20, 0.7)), A.flat_metrics(run(0.22, 0.72))]}
    assert results["baseline"][0]["source_val_abs_rel"] == 0.15
    columns = A.task_columns("depth")
    stats = A.aggregate(results, "baseline", columns=columns)
    assert stats["headfreeze"]["abs_rel"].best and stats["headfreeze"]["d1"].best
    md = A.markdown_table(stats, {"baseline": "Baseline", "headfreeze": "HeadFreeze"},
                          columns=columns)
    assert md.splitlines()[0].startswith("| method | AbsRel | SqRel | RMSE | RMSE log | δ < 1.25")
    assert "**0.210 ± 0.014**" in md
    paired = A.paired_comparisons({k: dict(enumerate(v)) for k, v in results.items()},
                                  (("headfreeze", "baseline"),), A.primary_metric("depth"))
    assert paired[0].mean == pytest.approx(-0.10)
