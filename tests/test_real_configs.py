"""configs/indoor.flags and configs/faces*.flags run end to end on the builders' fixtures
(the real datasets cannot be downloaded here); only the model size, the ImageNet weights
and the run length are overridden."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--backbone=tiny", "--backbone_weights=", "--decoder_channels=8", "--steps=2",
         "--steps_per_epoch=1", "--batch_source=2", "--batch_target=2", "--eval_batch_size=2",
         "--num_figures=1", "--balance_losses=true"]
CASES = {
    "indoor": ["--source_manual_dir=datasets/suncg_pbrs/dummy_data",
               "--target_manual_dir=datasets/nyu_depth_v2_normals/dummy_data",
               "--image_size=32", "--crop_size=32", "--source_val_split=train"],
    "faces": ["--source_manual_dir=datasets/sfsnet_synthetic/dummy_data",
              "--target_manual_dir=datasets/facewarehouse/dummy_data",
              "--image_size=32", "--eval_input_size=32"],
}
CASES["faces_frontal"] = CASES["faces"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_experiment_flagfile_runs_on_fixtures(name, tmp_path):
    model_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "tada_keras.train", f"--flagfile=configs/{name}.flags",
           f"--model_dir={model_dir}", f"--data_dir={tmp_path / 'tfds'}",
           "--method=headfreeze"] + SMALL + CASES[name]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(model_dir / "metrics.json") as f:
        metrics = json.load(f)
    assert 0 <= metrics["target_test"]["mean"] <= 180
    with open(model_dir / "phase_phase2" / "loss_weights.json") as f:
        weights = json.load(f)
    assert weights["target_anchor"] > 0 and weights["source_anchor"] > 0
