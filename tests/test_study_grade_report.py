"""docs/study_grade.py: the study-grade measurement's report from run records."""

import importlib.util
import json
import math
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module():
    spec = importlib.util.spec_from_file_location(
        "study_grade_report", os.path.join(ROOT, "docs", "study_grade.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_power_of_the_paired_t_test_matches_the_textbook_value():
    report = _module()
    # d = 1, n = 10, two-sided alpha 0.05: power 0.803 (noncentral t; G*Power's value).
    assert report.paired_power(1.0, 1.0, 10) == pytest.approx(0.8031, abs=5e-4)
    assert report.seeds_needed(1.0, 1.0) == 10
    assert report.seeds_needed(1.0, 0.5) == 34
    assert report.seeds_needed(2.0, 1.0) > report.seeds_needed(1.0, 1.0)
    assert report.sd_upper(1.0, 5) > 1.0


def _record(method, seed, momentum=0.99, threads=None, target=None, source=None,
            anchor=None, raw=(40.0, 20.0), weights="w"):
    target = list(target or [30.0, 29.0, 31.0])
    source = list(source or [22.0, 21.0, 21.5])
    anchor = list(anchor or [0.30, 0.32, 0.31])
    return {"config": {"method": method, "seed": seed, "ema_momentum": momentum,
                       "intra_op_threads": threads,
                       "resolved_method": {"phases": [{"name": "train"}]}},
            "metrics": {"target_test": {"mean": target[-1]}, "source_val": {"mean": source[-1]},
                        "raw_weights": {"target_test": {"mean": raw[0]},
                                        "source_val": {"mean": raw[1]}}},
            "curves": {"train": {"val_source_main_mean": source,
                                 "val_target_anchor_miou": anchor,
                                 "target_test_curve": {"epoch": [1, 2, 3],
                                                       "target_test_mean": target}}},
            "fingerprints": {"initial_weights": f"{weights}{seed}"}}


def _write(folder, record):
    cfg = record["config"]
    path = folder / f"{cfg['method']}_{cfg['ema_momentum']}_{cfg['intra_op_threads']}" / \
        f"seed_{cfg['seed']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_the_momentum_rule_breaks_ties_towards_the_smaller_momentum(tmp_path):
    report = _module()
    for m, s in ((0.99, 21.04), (0.995, 21.0), (0.999, 25.0)):
        for method in ("baseline", "mtl_both"):
            _write(tmp_path, _record(method, 0, m, source=[s + 1, s + 0.5, s]))
    chosen, scores = report.choose_momentum(report.load(str(tmp_path)))
    assert chosen == 0.99 and scores[0.995] == pytest.approx(21.0)
    text = report.build(str(tmp_path))
    assert "**M = 0.99**" in text and "Step 2: 2 of 10 runs" in text
    assert "Decision rules: not applied" in text


def test_regrets_noise_floor_and_decisions_from_scripted_records(tmp_path):
    report = _module()
    for m in (0.995, 0.999):
        for method in ("baseline", "mtl_both"):
            _write(tmp_path, _record(method, 0, m, source=[31.0, 30.5, 30.0]))
    for seed in range(5):
        # Baseline: target best at epoch 2 (29), source val best at epoch 2, anchor at 2.
        _write(tmp_path, _record("baseline", seed,
                                 target=[30.0, 29.0 - 0.1 * seed, 31.0 + 0.3 * seed],
                                 raw=(31.0 + 0.5 * seed, 21.6)))
        # MTL (+both): anchor best at epoch 1 (target 27), source val best at epoch 3.
        _write(tmp_path, _record("mtl_both", seed, target=[27.0, 28.0, 28.5 + 0.1 * seed],
                                 source=[22.0, 21.8, 21.0], anchor=[0.4, 0.3, 0.2],
                                 raw=(30.0, 21.6)))
    for seed in range(3):  # the 1-thread twins: 0.3° away on the averaged last weights
        _write(tmp_path, _record("baseline", seed, threads=1,
                                 target=[30.0, 29.0 - 0.1 * seed, 31.3 + 0.3 * seed],
                                 raw=(31.0 + 0.5 * seed, 21.6)))
    outcome = report.outcomes(report.load(str(tmp_path))[("mtl_both", 0.99, None, 4)])
    assert outcome["regret_last"] == pytest.approx(28.9 - 27.0)
    assert outcome["regret_source_val"] == pytest.approx(28.9 - 27.0)
    assert outcome["regret_target_anchor"] == 0.0
    text = report.build(str(tmp_path))
    assert "Step 2: 10 of 10 runs." in text
    assert "3 of 6 pairs" in text and "Pairs with the same initial weights: 3 of 3" in text
    noise = next(ln for ln in text.splitlines() if ln.startswith("| mean |"))
    assert noise.split("|")[3].strip() == "0.30"  # averaged target Δ
    # pooled SD: averaged 0.35 (Baseline 31..32.2, MTL 28.5..28.9) < raw 0.56 (Baseline
    # 31..33, MTL constant), mean source val 21.25 <= 21.6: averaging adopted
    assert "→ **adopted**" in text
    # mean regret: last ≈ 2.0, source_val ≈ 0.85, target_anchor 0 (it picks each run's best
    # epoch here), and its paired SD (0.16) is below last's (0.32): adopted
    assert "→ **target_anchor**" in text
    last = next(ln for ln in text.splitlines() if ln.startswith("- next study"))
    assert "averaged, best target-val anchor" in last
    diffs = [27.0 - (29.0 - 0.1 * s) for s in range(5)]
    assert f"σ_d = {np.std(diffs, ddof=1):.2f}°" in last


def test_readme_block_matches_the_committed_records():
    report = _module()
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    block = readme.split(report.BEGIN, 1)[1].split(report.END, 1)[0].strip()
    assert block == report.build().strip()
    assert not math.isnan(report.TIE)
