"""docs/own_data.md's walk-through as a test: write the example folder with the script,
train with configs/own_data.flags (shrunk to seconds), evaluate, predict; a broken
manifest is one ``error:`` line before anything is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAGS = os.path.join(ROOT, "configs", "own_data.flags")
# configs/own_data.flags with the network, sizes and steps of configs/tiny.flags.
SMALL = ["--backbone=tiny", "--backbone_weights=", "--decoder_channels=16",
         "--image_size=32", "--batch_source=2", "--batch_target=2", "--steps=4",
         "--steps_per_epoch=2", "--eval_batch_size=2", "--num_figures=2"]


def _run(args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A user's working directory holding ``my_pair/`` (the flagfile's manual dir)."""
    path = tmp_path_factory.mktemp("user")
    proc = _run(["tada_datasets.sim2real_manifest.make_example", "--out=my_pair"], path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (path / "my_pair" / "manifest.csv").exists()
    return path


def test_own_data_train_evaluate_predict(workdir):
    proc = _run(["tada_keras.train", f"--flagfile={FLAGS}", *SMALL, "--model_dir=run",
                 "--data_dir=tfds"], workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(workdir / "run" / "metrics.json") as f:
        metrics = json.load(f)
    assert 0 < metrics["target_test"]["mean"] < 180
    assert "target_test_anchor_miou" in metrics
    assert (workdir / "run" / "phase_phase2" / "DONE").exists()

    proc = _run(["tada_keras.evaluate", "--model_dir=run"], workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert evaluated["target_test"]["mean"] == pytest.approx(metrics["target_test"]["mean"],
                                                             rel=1e-4)
    proc = _run(["tada_keras.predict", "--model_dir=run", "--images=my_pair/target/images",
                 "--out=pred"], workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((workdir / "pred").glob("*_normals.npy"))) == 9  # every target photo


def test_bad_manifest_and_missing_labels_are_one_error_line(workdir):
    bad = workdir / "broken"
    proc = _run(["tada_datasets.sim2real_manifest.make_example", "--out=broken"], workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (bad / "target" / "images" / "test_001.jpg").unlink()
    proc = _run(["tada_keras.train", f"--flagfile={FLAGS}", *SMALL, "--model_dir=never",
                 "--source_manual_dir=broken", "--target_manual_dir=broken",
                 "--data_dir=tfds_broken"], workdir)
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [
        "error: --source_dataset=sim2real_manifest: broken/manifest.csv, line 15, column "
        "'image' (broken/target/images/test_001.jpg): file not found (paths are relative "
        "to the manifest's folder broken)"], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (workdir / "never").exists()
    # The oracle trains on target normals, which the example's target train rows lack.
    proc = _run(["tada_keras.train", f"--flagfile={FLAGS}", *SMALL, "--model_dir=never",
                 "--method=oracle", "--data_dir=tfds"], workdir)
    assert proc.returncode == 2
    assert ("error: --target_train_split=target_train: the target_train examples of "
            "sim2real_manifest have no normals labels") in proc.stderr, proc.stderr[-2000:]
    assert not (workdir / "never").exists()


def test_evaluate_refuses_data_changed_since_training(workdir):
    """Issue 30: with a manifest row deleted after training, evaluate scored the changed
    test set (73.54° instead of the 72.32° of training) without a word."""
    import shutil

    shutil.copytree(workdir / "my_pair", workdir / "changing")
    args = ["--source_manual_dir=changing", "--target_manual_dir=changing", "--data_dir=tfds"]
    proc = _run(["tada_keras.train", f"--flagfile={FLAGS}", *SMALL, *args,
                 "--model_dir=run_changing", "--method=baseline"], workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(workdir / "run_changing" / "config.json") as f:
        recorded = json.load(f)["datasets"]
    name = recorded["target"]["name"]
    assert name.startswith("sim2real_manifest/") and name.endswith("/1.0.0")
    assert recorded["target"]["examples"]["target_test"] == 3

    manifest = workdir / "changing" / "manifest.csv"
    rows = manifest.read_text().splitlines(keepends=True)
    dropped = next(i for i, row in enumerate(rows) if row.startswith("target,test,"))
    manifest.write_text("".join(rows[:dropped] + rows[dropped + 1:]))
    proc = _run(["tada_keras.evaluate", "--model_dir=run_changing"], workdir)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert errors[0].startswith("error: the data changed since --model_dir=run_changing was "
                                f"trained (source dataset {name} is now sim2real_manifest/")
    assert "target split target_test: 3 examples at training, 2 now" in errors[0]
    assert errors[0].endswith("pass --allow_changed_data to score it anyway")
    assert proc.stdout == ""

    proc = _run(["tada_keras.evaluate", "--model_dir=run_changing", "--allow_changed_data"],
                workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning: the data changed since training" in proc.stderr
    evaluated = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert "target split target_test: 3 examples at training, 2 now" in \
        evaluated["data_changed"]

    # Resuming (or re-running) the training on the changed data is refused too.
    proc = _run(["tada_keras.train", f"--flagfile={FLAGS}", *SMALL, *args,
                 "--model_dir=run_changing", "--method=baseline"], workdir)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert ("error: --model_dir=run_changing was trained on other data: source dataset "
            f"{name} is now") in proc.stderr
