"""docs/domain_gap.py: the README's domain-gap table is generated from the result files."""

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module():
    spec = importlib.util.spec_from_file_location(
        "domain_gap", os.path.join(ROOT, "docs", "domain_gap.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stats(mean):
    return {"mean": mean, "median": mean - 3, "rmse": mean + 6, "a11_25": 0.125,
            "a22_5": 0.4, "a30": 0.5}


def test_table_is_written_from_the_result_files_between_the_markers(tmp_path, monkeypatch):
    gap = _module()
    monkeypatch.setattr(gap, "RESULTS", str(tmp_path / "results"))
    os.makedirs(gap.RESULTS)
    with open(os.path.join(gap.RESULTS, "reference.json"), "w") as f:
        json.dump({"metrics": {"target_test": _stats(34.28), "source_val": _stats(33.21)}}, f)
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{gap.BEGIN}\nold table\n{gap.END}\nafter\n")
    gap.table(str(readme))
    text = readme.read_text()
    assert text.startswith("before\n") and text.endswith(f"{gap.END}\nafter\n")
    assert "old table" not in text
    assert "| GT segmentation → class-mean source normal (\"reference\") | 33.2 | 34.3 | 31.3 " \
           "| 0.125 |" in text
    assert "| constant (mean source normal) | not run | | | |" in text
    gap.table(str(readme))  # idempotent
    assert readme.read_text() == text
