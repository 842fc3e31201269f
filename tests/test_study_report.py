"""docs/study_report.py: the README's study block is the harness's report of the records."""

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module():
    spec = importlib.util.spec_from_file_location(
        "study_report", os.path.join(ROOT, "docs", "study_report.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_block_matches_the_committed_records(tmp_path):
    report = _module()
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    block = readme.split(report.BEGIN, 1)[1].split(report.END, 1)[0].strip()
    text, figure = report.build(str(tmp_path))
    assert block == text.strip()
    assert figure is not None and os.path.getsize(figure) > 0


def test_a_missing_record_is_listed_and_leaves_its_comparison_with_fewer_seeds(
        tmp_path, monkeypatch):
    report = _module()
    records = tmp_path / "records"
    import shutil

    shutil.copytree(report.RESULTS, records)
    (records / "baseline" / "seed_1.json").unlink()
    monkeypatch.setattr(report, "RESULTS", str(records))
    text, _ = report.build(str(tmp_path / "out"))
    assert "not recorded yet: Baseline seed 1" in text
    row = next(ln for ln in text.splitlines() if ln.startswith("| MTL (+both) (a) − Baseline"))
    assert row.split("|")[2].strip() == "4"  # seeds paired
