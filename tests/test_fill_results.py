"""docs/fill_results.py: the docs show exactly the harness's tables, idempotently."""

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module():
    spec = importlib.util.spec_from_file_location(
        "fill_results", os.path.join(ROOT, "docs", "fill_results.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _out(tmp_path, tables):
    out = tmp_path / "out"
    out.mkdir()
    (out / "harness.json").write_text(json.dumps({"base_config": {"steps": 600,
                                                                  "backbone": "tiny"}}))
    for name, rows in tables.items():
        (out / f"table_{name}").mkdir()
        body = ["| method | Mean | seeds |", "|---|---:|---:|"]
        body += [f"| {label} | {mean} | {seeds} |" for label, mean, seeds in rows]
        (out / f"table_{name}" / "results.md").write_text(
            "Caption.\n\n" + "\n".join(body) + "\n\n**Bold**: best.\n")
    return str(out)


DOC = """# Doc

### Table 4
<!-- results:4 -->
Produced on old text:

| method | Mean | seeds |
|---|---:|---:|
| Old | 99.0 | 3 |

### Table 5
<!-- results:5 -->

## After
text stays
"""


def test_fill_replaces_only_produced_tables_and_is_idempotent(tmp_path):
    fill = _module()
    out = _out(tmp_path, {"4": [("Baseline", "35.1 ± 0.2", 3), ("HF", "34.9 ± 0.1", 3)]})
    text, filled, missing = fill.fill(DOC, out)
    assert filled == ["4"] and missing == ["5"]
    assert "| Old |" not in text and "| HF | 34.9 ± 0.1 | 3 |" in text
    assert "600 steps, `tiny`, 3 seeds" in text
    assert text.count("<!-- results:5 -->") == 1 and "text stays" in text
    again, _, _ = fill.fill(text, out)
    assert again == text


def test_fill_reports_mixed_seed_counts(tmp_path):
    fill = _module()
    out = _out(tmp_path, {"5": [("MTL", "35.0", 1), ("DANN", "36.0", 3)]})
    text, filled, _ = fill.fill(DOC, out)
    assert filled == ["5"] and "1/3 seeds" in text


def test_cli_refuses_a_directory_that_is_not_harness_output(tmp_path, capsys):
    fill = _module()
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    assert fill.main([f"--out={tmp_path}", f"--doc={doc}"]) == 2
    assert "harness.json" in capsys.readouterr().err
    assert doc.read_text() == DOC


def test_a_results_file_without_a_table_names_the_file(tmp_path):
    fill = _module()
    out = _out(tmp_path, {})
    os.makedirs(os.path.join(out, "table_4"))
    with open(os.path.join(out, "table_4", "results.md"), "w") as f:
        f.write("no table here\n")
    with pytest.raises(ValueError, match="table_4/results.md"):
        fill.fill(DOC, out)
