"""docs/study_curve.py: the learning-curve table and budget rule come from the records."""

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module():
    spec = importlib.util.spec_from_file_location(
        "study_curve", os.path.join(ROOT, "docs", "study_curve.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(root, row, method, steps, source, target):
    os.makedirs(os.path.join(root, row))
    with open(os.path.join(root, row, "seed_0.json"), "w") as f:
        json.dump({"config": {"method": method, "steps": steps},
                   "metrics": {"source_val": {"mean": source},
                               "target_test": {"mean": target}}}, f)


def test_budget_rule_reads_source_val_only_and_needs_both_methods(tmp_path, monkeypatch):
    curve = _module()
    monkeypatch.setattr(curve, "RESULTS", str(tmp_path))
    _write(tmp_path, "b500", "baseline", 500, 25.0, 40.0)
    _write(tmp_path, "b1000", "baseline", 1000, 24.8, 10.0)  # target test must not matter
    _write(tmp_path, "m500", "mtl_both", 500, 30.0, 33.0)
    _write(tmp_path, "m1000", "mtl_both", 1000, 27.0, 31.0)
    s, _ = curve.budget(curve.read_curve())
    assert s is None  # MTL (+both) still improves 3° per doubling
    _write(tmp_path, "b2000", "baseline", 2000, 24.7, 9.0)
    _write(tmp_path, "m2000", "mtl_both", 2000, 26.8, 30.0)
    s, notes = curve.budget(curve.read_curve())
    assert s == 1000 and len(notes) == 4
    text = curve.render(curve.read_curve())
    assert "| Baseline | source val (chooses S) | 25.00 | 24.80 | 24.70 |" in text
    assert "S = 1000 steps" in text


def test_readme_block_matches_the_committed_records():
    curve = _module()
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    block = readme.split(curve.BEGIN, 1)[1].split(curve.END, 1)[0].strip()
    assert block == curve.render(curve.read_curve()).strip()
