"""The train / evaluate / predict CLI end to end on the tiny embedded benchmark."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import h5_arrays

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.flags")


def _run(args, env_extra=None, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m"] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, **kwargs)


def _tensorboard_events(log_dir):
    """{tag: [(step, value)]} of the scalars and the image tags of an event folder."""
    import tensorflow as tf

    scalars, images = {}, set()
    for name in sorted(os.listdir(log_dir)):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(log_dir, name)):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                if plugin == "images":
                    images.add(value.tag)
                elif plugin == "scalars":
                    scalars.setdefault(value.tag, []).append(
                        (event.step, float(tf.make_ndarray(value.tensor))))
    return {k: sorted(v) for k, v in scalars.items()}, images


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
    # run.log: the console's messages, timestamped, and every epoch end.
    with open(os.path.join(model_dir, "run.log")) as f:
        run_log = f.read()
    assert "[phase1] epoch 1/1: loss=" in run_log and "[phase2] epoch 1/1: loss=" in run_log
    assert "target_test: mean=" in run_log and "settings: {" in run_log
    # TensorBoard: one event folder, one global step across both phases, figure images.
    scalars, images = _tensorboard_events(os.path.join(model_dir, "logs", "train"))
    # tiny: 2 + 2 steps, 2 per epoch: phase 2's epoch ends at global step 4, not 2.
    assert scalars["phase"] == [(2, 1.0), (4, 2.0)]
    assert [step for step, _ in scalars["loss"]] == [2, 4]
    assert "figures/target_test_examples" in images
    for phase, steps in (("phase1", 2), ("phase2", 2)):
        with open(os.path.join(model_dir, f"phase_{phase}", "DONE")) as f:
            assert json.load(f)["optimizer_steps"] == steps
    with open(os.path.join(model_dir, "config.json")) as f:
        resolved = json.load(f)["resolved_method"]  # what the run trained, phase by phase
    assert [(p["name"], p["steps"], p["head_trainable"]) for p in resolved["phases"]] == [
        ("phase1", 2, True), ("phase2", 2, False)]

    proc = _run(["tada_keras.evaluate", f"--model_dir={model_dir}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads(proc.stdout)  # stdout is the JSON alone (messages on stderr)
    assert "target_test: mean=" in proc.stderr
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
    assert normals.shape == (40, 70, 3)  # the input's size (padded to 64x96 inside)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-4)
    assert (out / "a_normals.png").exists()


@pytest.mark.parametrize("args,needle", [
    (["--method=mtl_all"], "--method"),
    (["--anchor=normals"], "--anchor"),
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
    (["--anchor_weight=nan"], "--anchor_weight=nan: expected a finite number"),
    (["--method=headfreeze", "--phase1_fraction=0"], "--phase1_fraction=0.0"),
    (["--eval_scale=nan"], "--eval_scale=nan: expected a finite number"),
    (["--steps=0"], "--steps must be >= 1"),
    (["--batch_source=0"], "--batch_source must be >= 1"),
    (["--eval_batch_size=0"], "--eval_batch_size must be >= 1"),
    (["--seed=-1"], "--seed must be >= 0"),
    (["--da=dann", "--da_weight=-1"], "--da_weight=-1.0"),
    (["--da=dann", "--disc_learning_rate=0"], "--disc_learning_rate=0.0"),
    (["--da=dann", "--disc_label_noise=0.7"], "--disc_label_noise=0.7"),
    (["--da_warmup_steps=-5"], "--da_warmup_steps must be >= 0"),
    (["--da=dann", "--main=depth", "--da_face_mask"],
     "--da_face_mask needs a main task with a per-pixel validity mask (Task.valid_region: "
     "normals); --main=depth has none"),
])
def test_bad_flags_fail_fast_and_write_nothing(tmp_path, args, needle):
    model_dir = tmp_path / "never"
    proc = _run(["tada_keras.train", f"--flagfile={TINY}", f"--model_dir={model_dir}"] + args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "FATAL" not in proc.stderr
    assert not model_dir.exists()


@pytest.mark.parametrize("command,args,line", [
    # absl's own parser printed "FATAL Flags parsing error" and exited 1 (issue 30).
    ("tada_keras.train", ["--dtype_policy=mixed_float16"],
     "error: flag --dtype_policy=mixed_float16: value should be one of "
     "<float32|mixed_bfloat16>"),
    ("tada_keras.train", ["--freeze_after=bogus"],
     "error: flag --freeze_after=bogus: value should be one of <up-1|up-2|up-3>"),
    ("tada_keras.train", ["--steps=many"], "error: flag --steps=many: invalid literal"),
    ("tada_keras.train", ["--no_such_flag=1"],
     "error: Unknown command line flag 'no_such_flag'"),
    ("tada_keras.train", ["stray"], "error: unexpected arguments ['stray']"),
    ("tada_keras.evaluate", ["--no_such_flag"],
     "error: Unknown command line flag 'no_such_flag'"),
    ("tada_keras.predict", ["--input_size=big"], "error: flag --input_size=big: "),
])
def test_flags_absl_rejects_are_one_error_line_and_exit_2(tmp_path, command, args, line):
    model_dir = tmp_path / "never"
    proc = _run([command, f"--model_dir={model_dir}"] + args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(line), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "FATAL" not in proc.stderr
    assert not model_dir.exists()


def test_out_that_cannot_be_written_is_refused_before_the_work(tmp_path):
    """Issue 30: ``--out`` under a file or in an unwritable place failed with a traceback
    after the whole evaluation; it is now checked before loading the run (the model dir
    here does not even exist: the --out line comes first)."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("a file")
    (tmp_path / "folder").mkdir()
    cases = [
        ("tada_keras.evaluate", f"{a_file}/results.json", f"{a_file} is a file, not a "
         "directory"),
        ("tada_keras.evaluate", "/proc/tada/results.json", "cannot write in /proc"),
        ("tada_keras.evaluate", str(tmp_path / "folder"), "is a directory; expected a file"),
        ("tada_keras.predict", f"{a_file}/pred", f"{a_file} is a file, not a directory"),
        ("tada_keras.predict", str(a_file), "is a file, not a directory"),
        ("tada_keras.predict", "/proc/tada", "cannot write in /proc"),
    ]
    for command, out, needle in cases:
        proc = _run([command, f"--model_dir={tmp_path / 'missing'}", f"--out={out}",
                     f"--images={a_file}"][:3 if command.endswith("evaluate") else 4])
        assert proc.returncode == 2, (command, out, proc.stderr[-2000:])
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(f"error: --out={out}"), errors
        assert needle in errors[0] and "Traceback" not in proc.stderr, errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "notes.txt"]


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


@pytest.mark.parametrize("args,needle", [
    (["--source_dataset=sim2real_rooms/nope"], "--source_dataset=sim2real_rooms/nope"),
    (["--target_dataset=no_such_dataset"], "--target_dataset=no_such_dataset"),
    (["--target_test_split=tset"], "--target_test_split=tset: sim2real_rooms/tiny has no"),
    (["--source_val_split=val"], "--source_val_split=val"),
    (["--crop_size=64"], "--crop_size=64 is larger than the 32x32 images"),
    (["--image_size=64", "--crop_size=96"], "--crop_size=96 is larger than --image_size=64"),
    (["--backbone_weights=/nonexistent/w.weights.h5"], "--backbone_weights"),
    (["--backbone=resnet18", "--backbone_weights=imagenet"], "--backbone_weights='imagenet'"),
])
def test_bad_data_settings_fail_before_anything_is_written(data_dir, tmp_path, args, needle):
    model_dir = tmp_path / "never"
    proc = _run(["tada_keras.train", f"--flagfile={TINY}", f"--model_dir={model_dir}",
                 f"--data_dir={data_dir}"] + args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not model_dir.exists()


def test_missing_label_features_are_named_before_anything_is_written(monkeypatch, tmp_path):
    import types

    from tada_keras import run
    from tada_keras.methods import get_method

    def info(name, *args, **kwargs):  # a source without keypoints, a target without them
        features = {"image": types.SimpleNamespace(shape=(32, 32, 3)), "normals": None,
                    "normals_mask": None, "segmentation": None}
        splits = {"source_train", "source_val", "target_train", "target_val", "target_test"}
        return types.SimpleNamespace(features=features, splits=splits)

    monkeypatch.setattr(run, "_dataset_info", info)
    cfg = run.RunConfig(model_dir=str(tmp_path / "never"), anchor_task="keypoints",
                        method="mtl_both")
    with pytest.raises(ValueError, match="--source_dataset=sim2real_rooms/default has no "
                                         "keypoints, keypoints_visible labels, which "
                                         "--method=mtl_both"):
        run.check_data(cfg, get_method("mtl_both"))
    cfg = run.RunConfig(model_dir=str(tmp_path / "never"), anchor_task="keypoints",
                        method="baseline")
    run.check_data(cfg, get_method("baseline"))  # the baseline never reads the anchor
    assert not (tmp_path / "never").exists()


def test_foreign_init_from_and_file_model_dir_are_one_line_errors(data_dir, tmp_path):
    foreign = tmp_path / "notes.weights.h5"
    foreign.write_text("not an h5 file")
    model_dir = tmp_path / "never"
    proc = _run(["tada_keras.train", f"--flagfile={TINY}", f"--model_dir={model_dir}",
                 f"--data_dir={data_dir}", f"--init_from={foreign}"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"--init_from={foreign}: cannot load it" in proc.stderr
    assert not model_dir.exists()
    proc = _run(["tada_keras.train", f"--flagfile={TINY}", f"--model_dir={foreign}",
                 f"--data_dir={data_dir}"])
    assert proc.returncode == 2 and "is a file, not a directory" in proc.stderr


def test_resume_does_not_depend_on_how_paths_are_spelled(data_dir, tmp_path):
    import shutil

    model_dir = tmp_path / "run"
    base = ["tada_keras.train", f"--flagfile={TINY}", "--method=baseline"]
    proc = _run(base + [f"--model_dir={model_dir}", f"--data_dir={data_dir}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(model_dir, moved)
    spellings = [
        [f"--model_dir={model_dir}/", f"--data_dir={data_dir}/"],        # trailing slashes
        [f"--model_dir={os.path.relpath(model_dir, ROOT)}",              # relative paths
         f"--data_dir={os.path.relpath(data_dir, ROOT)}"],
        [f"--model_dir={moved}", f"--data_dir={data_dir}"],              # a copied run
    ]
    for spelling in spellings:
        proc = _run(base + spelling)
        assert proc.returncode == 0, (spelling, proc.stderr[-2000:])
        assert "already complete" in proc.stdout, spelling
    proc = _run(base + [f"--model_dir={model_dir}", f"--data_dir={data_dir}",
                        "--learning_rate=0.5"])  # a real change is still refused
    assert proc.returncode == 2 and "other settings (learning_rate)" in proc.stderr


def test_predict_reads_16_bit_pads_odd_sizes_and_keeps_duplicate_names(data_dir, tmp_path):
    from PIL import Image

    model_dir = tmp_path / "run"
    proc = _run(["tada_keras.train", f"--flagfile={TINY}", f"--model_dir={model_dir}",
                 f"--data_dir={data_dir}", "--method=baseline"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    rng = np.random.default_rng(0)
    grey8 = (rng.random((37, 45)) * 255).astype("uint8")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(grey8).save(tmp_path / "a" / "x.png")
    # The same picture at 16 bits must give the same prediction (not a saturated white).
    Image.fromarray(grey8.astype("uint16") * 257).save(tmp_path / "b" / "x.png")
    out = tmp_path / "pred"
    proc = _run(["tada_keras.predict", f"--model_dir={model_dir}", f"--out={out}",
                 f"--images={tmp_path / 'a' / 'x.png'},{tmp_path / 'b' / 'x.png'}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = np.load(out / "x_normals.npy"), np.load(out / "x_2_normals.npy")
    assert first.shape == (37, 45, 3)
    np.testing.assert_allclose(first, second, atol=1e-3)
    assert (out / "x_2_normals.png").exists()
    with Image.open(out / "x_side_by_side.png") as pair:  # input | prediction
        assert pair.size == (2 * 45, 37)
        pair = np.asarray(pair.convert("RGB"))
    np.testing.assert_array_equal(pair[:, :45, 0], grey8)
    with Image.open(out / "x_normals.png") as pred:
        np.testing.assert_array_equal(pair[:, 45:], np.asarray(pred.convert("RGB")))

    # Folders (sorted, images only) and quoted globs expand to image files.
    Image.fromarray(grey8[:32, :32]).save(tmp_path / "a" / "w.jpg")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    folder_out, glob_out = tmp_path / "pred_folder", tmp_path / "pred_glob"
    proc = _run(["tada_keras.predict", f"--model_dir={model_dir}", f"--out={folder_out}",
                 f"--images={tmp_path / 'a'}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in folder_out.glob("*.npy")) == ["w_normals.npy",
                                                                "x_normals.npy"]
    proc = _run(["tada_keras.predict", f"--model_dir={model_dir}", f"--out={glob_out}",
                 f"--images={tmp_path / '*' / 'x.png'}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in glob_out.glob("*.npy")) == ["x_2_normals.npy",
                                                              "x_normals.npy"]
    np.testing.assert_allclose(np.load(glob_out / "x_normals.npy"), first, atol=1e-5)

    # Issue 30: x.jpg, x.png and x_2.png gave two outputs for three inputs.
    clash = tmp_path / "clash"
    clash.mkdir()
    for name, image in (("x.jpg", grey8), ("x.png", grey8[:32, :40]),
                        ("x_2.png", grey8[:20, :24])):
        Image.fromarray(image).save(clash / name)
    clash_out = tmp_path / "pred_clash"
    proc = _run(["tada_keras.predict", f"--model_dir={model_dir}", f"--out={clash_out}",
                 f"--images={clash / 'x.jpg'},{clash / 'x.png'},{clash / 'x_2.png'}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {p.name: np.load(p).shape for p in clash_out.glob("*.npy")} == {
        "x_normals.npy": (37, 45, 3), "x_3_normals.npy": (32, 40, 3),
        "x_2_normals.npy": (20, 24, 3)}

    blank = tmp_path / "blank.png"
    blank.write_bytes(b"")
    (out / "empty").mkdir()
    for args, needle in (([f"--images={blank}", f"--out={out}"], f"cannot read {blank}"),
                         ([f"--images={tmp_path / 'a' / 'x.png'}", f"--out={blank}"],
                          "is a file, not a directory"),
                         ([f"--images={blank}", f"--out={out}", "--input_size=33"],
                          "--input_size=33"),
                         ([f"--images={tmp_path / 'b' / 'nothing*.png'}", f"--out={out}"],
                          "matches no image file"),
                         ([f"--images={tmp_path / 'missing.png'}", f"--out={out}"],
                          "file not found"),
                         ([f"--images={out / 'empty'}", f"--out={out}"],
                          f"no image file (.png, .jpg, .jpeg, .tif, .tiff, .bmp, .webp) in "
                          f"the folder {out / 'empty'}")):
        proc = _run(["tada_keras.predict", f"--model_dir={model_dir}"] + args)
        assert proc.returncode == 2 and needle in proc.stderr, (args, proc.stderr[-1500:])
        assert "Traceback" not in proc.stderr


def test_damaged_checkpoint_and_config_are_named_with_how_to_recover(data_dir, tmp_path):
    import shutil

    model_dir = tmp_path / "run"
    args = ["tada_keras.train", f"--flagfile={TINY}", f"--model_dir={model_dir}",
            f"--data_dir={data_dir}", "--method=baseline"]
    assert _run(args).returncode == 0
    phase = model_dir / "phase_train"
    assert phase.is_dir(), sorted(p.name for p in model_dir.iterdir())
    # Pretend the run was killed after epoch 1 and its checkpoint got damaged.
    (phase / "DONE").unlink()
    backup = phase / "backup" / "ckpt-1"
    backup.mkdir(parents=True)
    (backup / "model.weights.h5").write_bytes(b"\x89HDF\r\n truncated")
    (backup / "optimizer.npz").write_bytes(b"PK truncated")
    (phase / "backup" / "state.json").write_text('{"epoch": 1, "folder": "ckpt-1"}')
    proc = _run(args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"the checkpoint {backup} is damaged" in proc.stderr
    assert f"delete {phase / 'backup'}" in proc.stderr
    shutil.rmtree(phase / "backup")  # the documented recovery works
    assert _run(args).returncode == 0

    # DONE without the final weights (deleted, lost with a disk): every rerun failed with
    # "re-run the same command: it resumes" (issue 30). The phase trains again instead.
    (phase / "final.weights.h5").unlink()
    proc = _run(args)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert (f"[train] {phase / 'DONE'} is there but {phase / 'final.weights.h5'} is "
            "missing: training phase train again from its start") in proc.stdout
    assert (phase / "final.weights.h5").is_file()
    with open(phase / "DONE") as f:
        assert json.load(f)["optimizer_steps"] == 4
    with open(phase / "history.csv") as f:
        assert [ln.split(",")[0] for ln in f.read().splitlines()[1:]] == ["0", "1"]

    (model_dir / "config.json").write_text("{ truncated")
    proc = _run(["tada_keras.evaluate", f"--model_dir={model_dir}"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"{model_dir / 'config.json'} is damaged" in proc.stderr


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
    a, b = (h5_arrays(os.path.join(d, "phase_phase2", "final.weights.h5"))
            for d in (clean, interrupted))
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_two_trainings_on_one_model_dir_the_second_is_refused_then_ctrl_c(data_dir,
                                                                         tmp_path):
    """Issue 30: two commands on one --model_dir (the same flags, or other ones) were
    never refused: history.csv got every epoch twice, run.log interleaved both. Then
    Ctrl-C of the first: it printed a 98-line KeyboardInterrupt traceback."""
    model_dir = str(tmp_path / "run")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    args = ["tada_keras.train", f"--flagfile={TINY}", f"--model_dir={model_dir}",
            f"--data_dir={data_dir}", "--method=baseline", "--steps=100000",
            "--steps_per_epoch=2"]  # it must still train when Ctrl-C comes, however fast
    # SIGINT back to its default in the child: a test run started in the background by a
    # non-interactive shell inherits it ignored, and Python then never raises
    # KeyboardInterrupt.
    first = subprocess.Popen([sys.executable, "-m"] + args, cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert _wait_for_epoch(model_dir, "train", 1, first), first.communicate()[1][-2000:]
        others = [subprocess.Popen([sys.executable, "-m"] + args + extra, cwd=ROOT, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for extra in ([], ["--learning_rate=0.5"])]
        for other in others:
            _, stderr = other.communicate(timeout=600)
            assert other.returncode == 2, stderr[-2000:]
            errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
            assert len(errors) == 1 and "Traceback" not in stderr, stderr[-2000:]
            assert errors[0].startswith(f"error: --model_dir={model_dir} is in use by another "
                                        f"training: process {first.pid} on host ")
            assert os.path.join(model_dir, "run.lock") in errors[0]
        assert first.poll() is None, "the first training did not survive the others"
        # Ctrl-C: one line (how to resume), exit 130, the lock released; no traceback.
        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=300)
        assert first.returncode == 130, stderr[-2000:]
        assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-2000:]
        assert stderr.strip().splitlines()[-1] == ("interrupted: re-run the same command; it "
                                                  "resumes from the last epoch's checkpoint")
        assert not os.path.exists(os.path.join(model_dir, "run.lock"))
    finally:
        first.kill()
        first.wait()
    with open(os.path.join(model_dir, "phase_train", "history.csv")) as f:
        epochs = [line.split(",")[0] for line in f.read().splitlines()[1:]]
    assert epochs == [str(i) for i in range(len(epochs))]  # one writer, no epoch twice
    with open(os.path.join(model_dir, "run.log")) as f:
        run_log = f.read()
    assert run_log.count("settings: {") == 1  # only the first run logged there
    assert "interrupted (KeyboardInterrupt)" in run_log
    with open(os.path.join(model_dir, "config.json")) as f:
        assert json.load(f)["learning_rate"] != 0.5


def test_model_dir_under_a_file_or_in_proc_is_one_line_before_anything(tmp_path):
    """Issue 30: these got the disk-full advice ("Free the space ... it resumes")."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("a file")
    for model_dir, needle in ((f"{a_file}/run", f"{a_file} is a file, not a directory"),
                              ("/proc/tada_run", "cannot write in /proc")):
        proc = _run(["tada_keras.train", f"--flagfile={TINY}", f"--model_dir={model_dir}"])
        assert proc.returncode == 2, proc.stderr[-2000:]
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(f"error: --model_dir={model_dir}: ")
        assert needle in errors[0] and "Free" not in errors[0], errors
    assert a_file.read_text() == "a file"


def test_an_os_error_while_training_names_the_setting_and_what_to_do(data_dir, tmp_path):
    model_dir = tmp_path / "run"
    (model_dir / "run.log").mkdir(parents=True)  # the log file cannot be opened
    proc = _run(["tada_keras.train", f"--flagfile={TINY}", f"--model_dir={model_dir}",
                 f"--data_dir={data_dir}", "--method=baseline"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: {model_dir / 'run.log'} (--model_dir={model_dir}): is a "
                      "directory, not a file; use another --model_dir, then re-run the same "
                      "command"], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in model_dir.iterdir()) == ["run.log"]  # no lock left


def test_os_errors_are_classified_by_what_happened_and_where(tmp_path, monkeypatch):
    import errno

    from tada_keras.run import RunConfig, os_error_line

    model_dir, data = tmp_path / "run", tmp_path / "tfds"
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    cfg = RunConfig(model_dir=str(model_dir), data_dir=str(data))
    checkpoint = model_dir / "phase_train" / "backup" / "ckpt-3" / "model.weights.h5"

    def line(err):
        return os_error_line(err, cfg)

    # Before the run wrote its config.json: nothing to resume yet.
    assert line(OSError(errno.EIO, "Input/output error", str(model_dir))) == (
        f"--model_dir={model_dir}: Input/output error. If that is fixed, re-run the same "
        "command.", 1)
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    full = (f"{checkpoint} (--model_dir={model_dir}): no space left on the device. Free "
            "some space and re-run the same command: it resumes from the last checkpoint.", 1)
    assert line(OSError(errno.ENOSPC, "No space left on device", str(checkpoint))) == full
    # h5py's OSErrors carry errno and file name in their text only.
    assert line(OSError(f"Unable to synchronously create file (unable to open file: name = "
                        f"'{checkpoint}', errno = 28, error message = 'No space left on "
                        "device', flags = 13, o_flags = 242)")) == full
    assert line(OSError(errno.EROFS, "Read-only file system", str(model_dir))) == (
        f"--model_dir={model_dir}: a read-only file system; use another --model_dir, then "
        "re-run the same command: it resumes from the last checkpoint", 2)
    shard = data / "sim2real_rooms" / "x.tfrecord"
    assert line(PermissionError(errno.EACCES, "Permission denied", str(shard))) == (
        f"{shard} (--data_dir={data}): permission denied; give this user access to it, or "
        "use another --data_dir, then re-run the same command: it resumes from the last "
        "checkpoint", 2)
    cache = home / "tada_keras" / "x.npz"
    assert line(NotADirectoryError(errno.ENOTDIR, "Not a directory", str(cache))) == (
        f"{cache} (KERAS_HOME={home}): a part of the path is a file, not a directory; point "
        "KERAS_HOME at a folder this user can write in, then re-run the same command: it "
        "resumes from the last checkpoint", 2)


def test_predict_output_names_are_unique_whatever_the_inputs_are_called():
    from tada_keras.predict import output_stems

    def stems(*paths):
        return [os.path.basename(s) for s in output_stems(paths, "out")]

    assert stems("a/x.jpg", "b/x.png", "c/x_2.png") == ["x", "x_3", "x_2"]
    assert stems("a/x.png", "b/x.png", "c/x.png") == ["x", "x_2", "x_3"]
    assert stems("X.png", "x.png") == ["X", "x_2"]  # one file on a case-insensitive disk
    assert stems("x_2.png", "x.png", "x.jpg", "x_3.png") == ["x_2", "x", "x_4", "x_3"]
    assert output_stems(["a/x.png"], "out") == [os.path.join("out", "x")]
