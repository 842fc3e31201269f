"""The layering of docs/architecture.md is a checked contract (issue 31).

``pyproject.toml``'s ``[tool.importlinter]`` declares the layers; ``lint-imports`` must keep
them (an upward import or a cycle between layers fails here, and so in CI). A TFDS builder
loads only ``tada_keras.conventions``; the package's top-level names load lazily.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from importlinter import cli as importlinter_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYPROJECT = os.path.join(ROOT, "pyproject.toml")


def _lint_imports(pythonpath: str | None = None) -> subprocess.CompletedProcess:
    # The packages are found on the path: PYTHONPATH (and the working directory) first.
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    code = (f"import sys; from {importlinter_cli.__name__} import lint_imports; "
            "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))")
    return subprocess.run([sys.executable, "-c", code, PYPROJECT], capture_output=True,
                          text=True, env=env, cwd=pythonpath or ROOT, timeout=300)


def test_import_contracts_hold():
    result = _lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    # A copy of the package where a task imports the trainer (tasks sit below training).
    shutil.copytree(os.path.join(ROOT, "tada_keras"), tmp_path / "tada_keras",
                    ignore=shutil.ignore_patterns("__pycache__", "configs"))
    os.symlink(os.path.join(ROOT, "datasets"), tmp_path / "tada_datasets")
    base = tmp_path / "tada_keras" / "tasks" / "base.py"
    base.write_text(base.read_text() + "\n\ndef _upward():\n"
                    "    from tada_keras.training import tada_model  # noqa: F401\n")
    result = _lint_imports(str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "tada_keras.tasks.base -> tada_keras.training.tada_model" in result.stdout
    assert "BROKEN" in result.stdout


def _loaded_after(statement: str) -> list[str]:
    """The tada_keras modules a fresh interpreter has loaded after ``statement``."""
    code = (f"import sys\n{statement}\n"
            "print(','.join(sorted(m for m in sys.modules if m.startswith('tada_keras'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True, timeout=300).stdout.split()
    return out[-1].split(",")


@pytest.mark.parametrize("builder", [
    "sim2real_rooms.sim2real_rooms_dataset_builder",
    "nyu_depth_v2_normals.nyu_depth_v2_normals_dataset_builder",
    "facewarehouse.facewarehouse_dataset_builder",
])
def test_a_builder_loads_only_the_conventions(builder):
    assert _loaded_after(f"import tada_datasets.{builder}") == [
        "tada_keras", "tada_keras.conventions"]


def test_top_level_names_load_lazily():
    import tada_keras
    from tada_keras.methods import get_method
    from tada_keras.training import TadaModel

    assert tada_keras.TadaModel is TadaModel and tada_keras.get_method is get_method
    assert {"TadaModel", "build_model", "metrics"} <= set(dir(tada_keras))
    with pytest.raises(AttributeError, match="no attribute 'bogus'"):
        tada_keras.bogus  # noqa: B018
    assert _loaded_after("import tada_keras") == ["tada_keras"]


def test_register_serializables_names_every_registering_module():
    import tada_keras

    registering = set()
    for folder, _, files in os.walk(os.path.join(ROOT, "tada_keras")):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            with open(path) as f:
                tree = ast.parse(f.read())
            if any(isinstance(n, ast.Attribute) and n.attr == "register_keras_serializable"
                   for n in ast.walk(tree)):
                module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                registering.add(module.removesuffix(".__init__"))
    assert registering == set(tada_keras._SERIALIZABLES)


def test_per_class_errors_are_class_means():
    from tada_datasets.sim2real_rooms import generator as g
    from tada_keras.experiments import per_class

    angles = np.array([10.0, 20.0, 30.0, 5.0])
    seg = np.array([g.FLOOR, g.FLOOR, g.WALL, g.FLOOR])
    out = per_class.per_class_errors(angles, seg)
    assert out.shape == (g.NUM_CLASSES,)
    assert out[g.FLOOR] == pytest.approx(35.0 / 3) and out[g.WALL] == 30.0
    assert np.isnan(out[g.CEILING])


def test_the_pipeline_makes_labels_with_the_models_configured_task():
    # A run's DataSpec holds the model's Task instances (inference.data_spec), so labels
    # come from the configured task, not from a default-configured one of the same name.
    import tensorflow as tf

    from tada_keras import conventions as C
    from tada_keras.data.pipeline import DataSpec, prepare_example
    from tada_keras.inference import data_spec
    from tada_keras.tasks.depth import DepthTask
    from tada_keras.training import build_model

    class CappedDepth(DepthTask):  # labels depend on the task's config
        def make_labels(self, example, dense, geometry):
            return {C.DEPTH: tf.minimum(dense[C.DEPTH][..., 0], self.max_depth)}

    example = {C.IMAGE: tf.zeros((8, 8, 3), tf.uint8),
               C.DEPTH: tf.fill((8, 8), 7.0)}
    spec = DataSpec(main_task=CappedDepth(max_depth=5.0), anchor_task=None, label_scale=1.0)
    _, labels = prepare_example(example, spec, C.DOMAIN_SOURCE, True, False, training=False)
    assert float(tf.reduce_max(labels[C.DEPTH])) == 5.0
    by_name = DataSpec(main_task="depth", anchor_task=None)  # a user script's shorthand
    assert isinstance(by_name.main_task, DepthTask) and by_name.main_task.max_depth == 10.0

    model = build_model(main_task="depth", anchor_task="segmentation", backbone="tiny",
                        decoder_channels=8, main_config={"max_depth": 4.0},
                        anchor_config={"num_classes": 3})
    spec = data_spec(_Settings(), model)
    assert spec.main_task is model.main and spec.anchor_task is model.anchor
    assert spec.main_task.max_depth == 4.0


class _Settings:
    crop_size = None
    image_size = None
    augment = "none"


def test_a_training_resolves_its_run_once_and_records_it(data_dir, tmp_path, monkeypatch):
    import json

    from tada_keras import config as config_module
    from tada_keras import run as run_module
    from tada_keras.resolved_run import ResolvedRun

    calls = []
    original = config_module.validate
    monkeypatch.setattr(run_module, "validate",
                        lambda cfg: calls.append(cfg.model_dir) or original(cfg))
    cfg = run_module.RunConfig(  # configs/tiny.flags, shorter
        model_dir=str(tmp_path / "run"), data_dir=data_dir, method="headfreeze",
        source_dataset="sim2real_rooms/tiny", target_dataset="sim2real_rooms/tiny",
        backbone="tiny", decoder_channels=16, batch_source=2, batch_target=2, steps=2,
        steps_per_epoch=1, eval_batch_size=2, num_figures=1)
    run_module.train_run(cfg, log=lambda *a: None, verbose=0)
    assert calls == [cfg.model_dir]  # validated once

    with open(tmp_path / "run" / "config.json") as f:
        saved = json.load(f)
    # The segmentation anchor's classes come from the dataset's info, once, at training.
    assert saved["resolved_tasks"]["main"] == {"name": "normals", "config": {}}
    assert saved["resolved_tasks"]["anchor"]["name"] == "segmentation"
    classes = saved["resolved_tasks"]["anchor"]["config"]["num_classes"]
    resolved = ResolvedRun.from_saved(saved)
    assert resolved.anchor.num_classes == classes and resolved.main.name == "normals"
    assert [p.name for p in resolved.method.phases] == ["phase1", "phase2"]
    assert sum(resolved.method.steps.values()) == 2
    assert resolved.data.anchor_task is resolved.anchor
    # A second invocation resumes (the recorded resolution is not a changed setting).
    run_module.train_run(cfg, log=lambda *a: None, verbose=0)


def test_a_new_task_is_one_file(data_dir, tmp_path):
    # docs/tasks.md's worked example, copied into a copy of the package, trains from the
    # command line as --anchor=edges with nothing else changed.
    shutil.copytree(os.path.join(ROOT, "tada_keras"), tmp_path / "tada_keras",
                    ignore=shutil.ignore_patterns("__pycache__"))
    os.symlink(os.path.join(ROOT, "datasets"), tmp_path / "tada_datasets")
    shutil.copy(os.path.join(ROOT, "docs", "examples", "edges_task.py"),
                tmp_path / "tada_keras" / "tasks" / "edges.py")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="3")
    model_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "tada_keras.train",
         f"--flagfile={os.path.join(ROOT, 'configs', 'tiny.flags')}",
         f"--data_dir={data_dir}", f"--model_dir={model_dir}", "--anchor=edges",
         "--method=mtl_both", "--steps=2", "--num_figures=1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    import json

    with open(model_dir / "config.json") as f:
        assert json.load(f)["resolved_tasks"]["anchor"] == {"name": "edges", "config": {}}
    history = open(model_dir / "phase_train" / "history.csv").read().splitlines()
    columns = history[0].split(",")
    assert "source_anchor" in columns and "target_anchor" in columns
    last = dict(zip(columns, history[-1].split(",")))
    assert 0 < float(last["target_anchor"]) < 10  # the edge loss trained and is finite
