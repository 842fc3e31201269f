"""The experiment harness: aggregation and tests, planning, resumability, PCA, end to end."""

import csv
import dataclasses
import io
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tada_keras.experiments import aggregate as A
from tada_keras.experiments import figures as F
from tada_keras.experiments import plan as P
from tada_keras.experiments.runner import execute
from tada_keras.experiments.tables import Row, Table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.flags")


# --- aggregation ---------------------------------------------------------------------------
def _seed_metrics(mean_error, offset=0.0):
    """Per-seed target metrics in which lower errors go with higher accuracies."""
    e = mean_error + offset
    return {"mean": e, "median": e - 2, "rmse": e + 5, "a11_25": 1 - e / 50,
            "a22_5": 1 - e / 70, "a30": 1 - e / 100}


SYNTHETIC = {
    # mean errors per seed: baseline 30 ± 1; "close" is within noise of it; "better" is
    # 9 std lower; the oracle is the best of all but must never be bold.
    "baseline": [_seed_metrics(v) for v in (29.0, 30.0, 31.0)],
    "close": [_seed_metrics(v) for v in (29.4, 30.3, 31.1)],
    "better": [_seed_metrics(v) for v in (20.0, 21.0, 22.0)],
    "oracle": [_seed_metrics(v) for v in (10.0, 10.5, 11.0)],
}


def test_aggregate_means_stds_and_welch_tests():
    stats = A.aggregate(SYNTHETIC, reference="baseline", exclude_from_best=("oracle",))
    base = stats["baseline"]["mean"]
    assert base.mean == pytest.approx(30.0) and base.std == pytest.approx(1.0) and base.n == 3
    assert stats["better"]["median"].mean == pytest.approx(19.0)
    # Welch by hand for better vs baseline: t = 9 / sqrt(1/3 + 1/3), df = 4.
    from scipy import stats as st

    expected = 2 * st.t.sf(9 / np.sqrt(2 / 3), 4)
    assert stats["better"]["mean"].p_ref == pytest.approx(expected, rel=1e-6)
    assert stats["better"]["mean"].significant_vs_ref()
    assert stats["close"]["mean"].p_ref > 0.5
    assert not stats["close"]["mean"].significant_vs_ref()
    assert np.isnan(stats["baseline"]["mean"].p_ref)  # no test against itself
    # Best per column honours the direction and skips the oracle.
    for key in ("mean", "median", "rmse", "a11_25", "a22_5", "a30"):
        assert stats["better"][key].best, key
        assert not stats["oracle"][key].best and not stats["baseline"][key].best
    assert stats["baseline"]["a11_25"].worse_than_best()
    assert not stats["better"]["a11_25"].worse_than_best()


def test_welch_p_does_not_assume_equal_variances():
    a, b = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [10.0, 20.0, 30.0]
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b)) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    from scipy import stats as st

    assert A.welch_p(a, b) == pytest.approx(2 * st.t.sf(abs(t), df), rel=1e-9)
    assert A.welch_p(a, b) > 0.05 > st.ttest_ind(a, b).pvalue  # Student would call it


def test_welch_p_is_undefined_for_one_seed():
    assert np.isnan(A.welch_p([1.0], [2.0, 3.0]))
    mean, std = A.mean_std([4.0])
    assert mean == 4.0 and np.isnan(std)


def test_flat_metrics_reads_the_optional_entries():
    metrics = {"target_test": _seed_metrics(30), "source_val": {"mean": 20.0},
               "target_test_anchor_miou": 0.4, "timings_s": {"phase1": 2.0, "phase2": 3.0},
               "discriminator": {"fraction_below_55": 0.25}}
    flat = A.flat_metrics(metrics)
    assert flat["mean"] == 30 and flat["source_val_mean"] == 20
    assert flat["train_seconds"] == 5 and flat["discriminator_fraction_below_55"] == 0.25
    metrics["discriminator"]["fraction_below_55"] = None  # nothing logged after warm-up
    assert "discriminator_fraction_below_55" not in A.flat_metrics(metrics)
    stats = A.aggregate({"a": [flat, flat]})
    assert "disc. acc. < 55 %" in A.markdown_table(stats, {"a": "A"})


def test_markdown_and_csv_follow_the_paper_and_mark_significance():
    stats = A.aggregate(SYNTHETIC, reference="baseline", exclude_from_best=("oracle",))
    labels = {"baseline": "Baseline", "close": "Close", "better": "Better", "oracle": "Oracle"}
    md = A.markdown_table(stats, labels)
    lines = md.splitlines()
    assert lines[0] == ("| method | < 11.25° | < 30° | RMSE | Mean | Median | < 22.5° | "
                        "seeds |")
    rows = {ln.split(" | ")[0][2:]: ln.split(" | ") for ln in lines[2:]}
    assert rows["Better"][4] == "**21.00 ± 1.00**" + A.REF_MARK  # Mean column
    assert rows["Close"][4] == "30.27 ± 0.85" + A.BEST_MARK  # tied with baseline, worse than best
    assert rows["Baseline"][4] == "30.00 ± 1.00" + A.BEST_MARK
    assert "**" not in "".join(rows["Oracle"])
    assert rows["Oracle"][4].endswith(A.REF_MARK)

    table = list(csv.DictReader(io.StringIO(A.csv_table(stats, labels))))
    assert [r["row"] for r in table] == ["baseline", "close", "better", "oracle"]
    better = table[2]
    assert float(better["mean_mean"]) == pytest.approx(21.0)
    assert float(better["mean_p_vs_reference"]) < 0.01 and better["mean_is_best"] == "1"
    assert table[0]["mean_p_vs_reference"] == ""


# --- PCA and anchor features -----------------------------------------------------------------
def test_pca_first_component_separates_two_clusters():
    rng = np.random.default_rng(0)
    direction = np.zeros(16)
    direction[[2, 5]] = 1 / np.sqrt(2)
    a = rng.normal(size=(50, 16)) * 0.3 - 4 * direction
    b = rng.normal(size=(50, 16)) * 0.3 + 4 * direction
    proj = F.pca_2d(np.concatenate([a, b]))
    assert proj.points.shape == (100, 2)
    assert abs(proj.components[0] @ direction) > 0.99
    pc1 = proj.points[:, 0]
    assert pc1[:50].max() < pc1[50:].min() or pc1[50:].max() < pc1[:50].min()
    assert proj.explained[0] > 0.9 > proj.explained[1]
    np.testing.assert_allclose(proj.points.mean(0), 0, atol=1e-9)
    assert F.domain_separation(a, b) > 5 > F.domain_separation(a[:25], a[25:])


def test_pca_orders_components_by_variance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 3)) * np.array([1.0, 3.0, 2.0])
    proj = F.pca_2d(x)
    assert abs(proj.components[0, 1]) > 0.99 and abs(proj.components[1, 2]) > 0.99
    np.testing.assert_allclose(proj.explained, [9 / 14, 4 / 14], atol=0.02)
    assert np.var(proj.points[:, 0]) > np.var(proj.points[:, 1])
    # Sign convention: re-running on negated data gives the same components.
    np.testing.assert_allclose(F.pca_2d(-x).components, proj.components, atol=1e-9)


def test_class_centroids_weight_cells_by_class_area():
    features = np.zeros((2, 2, 2))
    features[0, 0] = [1, 0]
    features[0, 1] = [0, 1]
    features[1, :] = [5, 5]
    seg = np.zeros((4, 4), int)
    seg[:2, :] = 1  # class 1: the whole top row of cells
    seg[:2, 3] = 2  # class 2 takes half of the top-right cell
    seg[2:, :] = 3
    got = F.class_centroids(features, seg)
    assert set(got) == {1, 2, 3}
    np.testing.assert_allclose(got[2], [0, 1])
    # Class 1: 4 pixels in cell (0,0), 2 in cell (0,1).
    np.testing.assert_allclose(got[1], [4 / 6, 2 / 6])
    np.testing.assert_allclose(got[3], [5, 5])
    assert F.class_centroids(features, np.zeros((4, 4), int)) == {}  # void only


def test_keypoint_features_sample_bilinearly():
    features = np.arange(2 * 2 * 1, dtype=float).reshape(2, 2, 1)  # [[0, 1], [2, 3]]
    points = np.array([[0.25, 0.25, 1], [0.5, 0.5, 1], [0.75, 0.25, 1]])
    got = F.keypoint_features(features, points, np.array([True, True, False]))
    assert set(got) == {0, 1}
    np.testing.assert_allclose(got[0], [0.0])  # centre of cell (0, 0)
    np.testing.assert_allclose(got[1], [1.5])  # between all four cells


# --- planning ------------------------------------------------------------------------------
def test_effective_config_reads_flagfiles_like_absl(tmp_path):
    inner = tmp_path / "inner.flags"
    inner.write_text("# comment\n--steps=10\n--bn_exposure=true\n--anchor=keypoints\n")
    outer = tmp_path / "outer.flags"
    outer.write_text(f"--flagfile={inner}\n--steps=20\n")
    cfg = P.effective_config([f"--flagfile={outer}", "--nobn_exposure", "--phase1_steps=7",
                              "--learning_rate=0.5", "--data_dir=None"])
    assert cfg.steps == 20 and cfg.bn_exposure is False and cfg.anchor_task == "keypoints"
    assert cfg.phase1_steps == 7 and cfg.learning_rate == 0.5 and cfg.data_dir is None
    assert P.effective_config([f"--flagfile={outer}"]).phase1_steps is None
    with pytest.raises(P.PlanError, match="--not_a_flag"):
        P.effective_config(["--not_a_flag=1"])
    # What the training CLI rejects, the plan rejects (the same absl parser): an integer
    # flag does not take "None" (the earlier hand-written parser accepted it).
    for bad in ("--phase1_steps=None", "--steps=ten", "--method=nope"):
        with pytest.raises(P.PlanError, match=bad.split("=")[0]):
            P.effective_config([bad])


def _plan(table, tmp_path, **kwargs):
    kwargs.setdefault("seeds", 2)
    return P.make_plan(table, TINY, out=str(tmp_path / "out"),
                       data_dir=str(tmp_path / "tfds"), **kwargs)


def test_plan_protocol_b_starts_from_the_converged_run_of_the_same_seed(tmp_path):
    plan = _plan("protocol", tmp_path)
    parent = plan.runs["mtl_src_converged"]
    for seed, run in enumerate(plan.runs["headfreeze_b"]):
        assert run.parent == parent[seed].model_dir
        assert f"--init_from={parent[seed].model_dir}/phase_train/final.weights.h5" in run.args
        assert run.config.steps == 2 and run.phase_steps == {"phase1": 0, "phase2": 2}
        assert f"--seed={seed}" in run.args
    order = [r.model_dir for r in plan.unique_runs()]
    for run in plan.runs["headfreeze_b"] + plan.runs["mtl_both_b"]:
        assert order.index(run.parent) < order.index(run.model_dir)
    assert len(set(order)) == len(order) == 2 * len(plan.rows)


def test_identical_runs_share_a_directory_across_tables_and_rows(tmp_path):
    t2 = _plan("2", tmp_path)
    depth = _plan("freeze_depth", tmp_path)
    science = _plan("science_check", tmp_path)
    assert t2.runs["baseline"][1].model_dir == depth.runs["baseline"][1].model_dir
    assert depth.runs["headfreeze_up-2"][0].model_dir == t2.runs["headfreeze"][0].model_dir
    assert depth.runs["headfreeze_up-1"][0].model_dir != t2.runs["headfreeze"][0].model_dir
    # tiny.flags leaves --bn_exposure at its default (on): the same run as "BN on".
    assert (science.runs["mtl_src_converged"][0].model_dir
            == science.runs["mtl_src_bn_on"][0].model_dir)
    assert len(science.unique_runs()) == 2 * (len(science.rows) - 1)


def test_plan_rejects_bad_tables_before_training(tmp_path, monkeypatch):
    with pytest.raises(P.PlanError, match="steps_per_epoch"):
        _plan("phase1_length", tmp_path)  # 25 % of 4 steps = 1 step, not a whole epoch
    with pytest.raises(P.PlanError, match="no row"):
        _plan("2", tmp_path, rows=["nope"])
    with pytest.raises(P.PlanError, match="frontal"):
        _plan("3", tmp_path)  # a flagfile path has no pose-matched source
    with pytest.raises(P.PlanError, match="--table"):
        _plan("9", tmp_path)
    monkeypatch.setitem(P.TABLES, "fake", Table("fake", "fake", (
        Row("a", "A", ("--method=baseline",)),
        Row("b", "B", ("--method=baseline", "--disc_something=1")))))
    with pytest.raises(P.PlanError, match=r"row 'B' needs --disc_something .*issue 6"):
        _plan("fake", tmp_path)


def test_table1_waits_for_the_domain_adaptation_flags(tmp_path):
    fields = {f.name for f in dataclasses.fields(P.RunConfig)}
    if "da" not in fields:
        with pytest.raises(P.PlanError, match="needs --da"):
            _plan("1", tmp_path)
    else:
        plan = _plan("1", tmp_path)
        assert "--da=dann" in plan.runs["baseline_da"][0].args


def test_out_dir_refuses_other_base_settings(tmp_path):
    plan = _plan("2", tmp_path)
    P.check_out_dir(plan.out, plan.base)
    P.check_out_dir(plan.out, plan.base)  # same settings: fine
    other = _plan("2", tmp_path, steps=8)
    with pytest.raises(P.PlanError, match="steps: 4 -> 8"):
        P.check_out_dir(other.out, other.base)


# --- execution / resumability -----------------------------------------------------------------
def _finish(run, mean=30.0):
    os.makedirs(run.model_dir, exist_ok=True)
    metrics = {"target_test": _seed_metrics(mean)}
    with open(os.path.join(run.model_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f)


def test_execute_skips_finished_runs_and_blocks_dependants_of_failures(tmp_path):
    plan = _plan("protocol", tmp_path)
    runs = plan.unique_runs()
    launched, lines = [], []

    def launch(run, on_line):
        launched.append(run.model_dir)
        on_line(f"[{next(iter(run.phase_steps))}] method={run.config.method} steps=2")
        if run.row.key == "mtl_src_converged" and run.seed == 1:
            return 3
        _finish(run)
        return 0

    _finish(plan.runs["baseline"][0])  # finished before
    outcome = execute(runs, launch=launch, log=lines.append)
    assert plan.runs["baseline"][0].model_dir not in launched
    assert len(outcome.skipped) == 1 and len(outcome.failed) == 1
    assert {(r.row.key, r.seed) for r in outcome.blocked} == {("headfreeze_b", 1),
                                                              ("mtl_both_b", 1)}
    assert all(r.model_dir not in launched for r in outcome.blocked)
    assert any("HeadFreeze (a) · seed 0 · phase1 · 2 steps" in ln for ln in lines)
    assert any("ETA" in ln and "done in" in ln for ln in lines)

    # Second invocation: only the failed run and the runs it blocked are attempted.
    launched.clear()
    outcome = execute(plan.unique_runs(), launch=lambda r, _: _finish(r) or 0,
                      log=lines.append)
    assert {(r.row.key, r.seed) for r in outcome.ran} == {
        ("mtl_src_converged", 1), ("headfreeze_b", 1), ("mtl_both_b", 1)}
    outcome = execute(plan.unique_runs(), launch=lambda r, _: pytest.fail("ran again"),
                      log=lines.append)
    assert not outcome.ran and len(outcome.skipped) == len(runs)


def _finish_with_files(run, mean=30.0):
    """What a finished training run leaves: metrics, config, a DONE phase with history."""
    _finish(run, mean + run.seed)
    with open(os.path.join(run.model_dir, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(run.config), f)
    phase = os.path.join(run.model_dir, "phase_train")
    os.makedirs(phase, exist_ok=True)
    with open(os.path.join(phase, "DONE"), "w") as f:
        json.dump({"history": {"loss": [0.9, 0.5]}, "seconds": 1.0, "optimizer_steps": 4}, f)
    return 0


def test_records_let_a_study_finish_on_another_machine(tmp_path):
    from tada_keras.experiments import report

    results = str(tmp_path / "committed")
    first = _plan("protocol", tmp_path, results=results)
    outcome = execute(first.unique_runs(), launch=lambda r, _: _finish_with_files(r),
                      log=lambda _: None)
    assert len(outcome.ran) == len(first.unique_runs())
    run = first.runs["headfreeze_b"][1]
    with open(run.record) as f:
        record = json.load(f)
    assert run.record.startswith(results) and run.record.endswith("seed_1.json")
    assert record["metrics"]["target_test"]["mean"] == 31.0
    assert record["config"]["seed"] == 1 and record["history"]["train"]["last"]["loss"] == 0.5
    assert record["machine"]["logical_cpus"] == os.cpu_count() and record["commit"]

    # Another machine: no run directory, the same committed records.
    other = P.make_plan("protocol", TINY, seeds=2, out=str(tmp_path / "elsewhere"),
                        data_dir=str(tmp_path / "tfds"), results=results)
    assert all(r.done and not r.local for r in other.unique_runs())
    outcome = execute(other.unique_runs(), launch=lambda r, _: pytest.fail("ran again"),
                      log=lambda _: None)
    assert not outcome.ran
    assert report.write_results(other) == report.write_results(first)

    # A missing record of a run that starts from a recorded one: the parent's weights
    # are not in any record, so the parent trains again here, then the child.
    os.remove(other.runs["headfreeze_b"][0].record)
    other = P.make_plan("protocol", TINY, seeds=2, out=str(tmp_path / "elsewhere"),
                        data_dir=str(tmp_path / "tfds"), results=results)
    todo = {(r.row.key, r.seed) for r in other.unique_runs() if not r.done}
    assert todo == {("mtl_src_converged", 0), ("headfreeze_b", 0)}


def test_holm_adjustment_is_the_step_down_of_holm_1979():
    got = A.holm([0.01, 0.04, 0.03, float("nan")])
    assert got[:3] == pytest.approx([0.03, 0.06, 0.06]) and np.isnan(got[3])
    assert A.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_paired_comparisons_pair_by_seed_with_t_intervals():
    from scipy import stats

    a = {0: {"mean": 30.0}, 1: {"mean": 31.5}, 2: {"mean": 29.0}}
    b = {0: {"mean": 31.0}, 1: {"mean": 33.0}, 2: {"mean": 29.5}, 3: {"mean": 10.0}}
    c = {0: {"mean": 40.0}}
    got = A.paired_comparisons({"a": a, "b": b, "c": c}, (("a", "b"), ("c", "b")))
    ab, cb = got
    assert ab.seeds == [0, 1, 2] and ab.differences == [-1.0, -1.5, -0.5]  # seed 3 unpaired
    assert ab.mean == pytest.approx(-1.0)
    ref = stats.ttest_rel([30.0, 31.5, 29.0], [31.0, 33.0, 29.5])
    assert ab.p == pytest.approx(ref.pvalue)
    half = stats.t.ppf(0.975, 2) * np.std([-1.0, -1.5, -0.5], ddof=1) / np.sqrt(3)
    assert (ab.ci_low, ab.ci_high) == pytest.approx((-1.0 - half, -1.0 + half))
    assert ab.p_holm == pytest.approx(ab.p)  # the one-seed comparison is not in the family
    assert cb.seeds == [0] and np.isnan(cb.p) and np.isnan(cb.p_holm)
    text = A.paired_markdown(got, {"a": "A", "b": "B", "c": "C"})
    assert "| A − B | 3 | -1.00" in text and "| C − B | 1 | +9.00 | — | — | — |" in text


def test_study_table_reports_its_pre_registered_pairs(tmp_path):
    from tada_keras.experiments import report

    study = _plan("study_pretrained", tmp_path, seeds=3)
    protocol = _plan("protocol", tmp_path, seeds=3)
    assert {r.model_dir for r in study.unique_runs()} == {
        r.model_dir for r in protocol.unique_runs()}  # the same runs, shared
    keys = {r.key for r in study.rows}
    assert all(a in keys and b in keys for a, b in study.table.pairs)
    execute(study.unique_runs(), launch=lambda r, _: _finish_with_files(r),
            log=lambda _: None)
    text = report.write_results(study)
    assert "Pre-registered paired comparisons" in text
    assert "| MTL (+both) (a) − Baseline | 3 | +0.00 |" in text  # equal fake metrics
    assert os.path.isfile(os.path.join(report.table_dir(study), "paired_differences.png"))
    with open(os.path.join(report.table_dir(study), "results.json")) as f:
        assert len(json.load(f)["paired"]) == 3


def test_self_training_and_study_grade_tables_plan_their_runs(tmp_path):
    plan = _plan("self_training", tmp_path, seeds=2)
    configs = {r.row.key: r.config for r in plan.unique_runs() if r.seed == 1}
    assert configs["headfreeze_st"].method == "headfreeze_st"
    assert {configs[f"self_training_{m}"].pseudo_mask for m in
            ("none", "consistency", "anchor", "both")} == {"none", "consistency", "anchor",
                                                            "both"}
    assert configs["self_training_anchor"].evaluate_teacher
    grade = _plan("study_grade", tmp_path, seeds=1)
    configs = {r.row.key: r.config for r in grade.unique_runs()}
    assert configs["baseline_1thread"].intra_op_threads == 1
    assert configs["baseline"].score_epochs and configs["baseline"].target_test_curve
    momentum = _plan("study_grade_momentum", tmp_path, seeds=1)
    assert sorted({r.config.ema_momentum for r in momentum.unique_runs()}) == [
        0.99, 0.995, 0.999]


def test_learning_curve_scales_the_steps():
    table = P.TABLES["learning_curve"]
    scales = sorted({r.steps_scale for r in table.rows})
    assert scales == [0.5, 1, 2, 3] and len(table.rows) == 8


# --- end to end ----------------------------------------------------------------------------
def _harness(args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tada_keras.experiments", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)


def test_harness_end_to_end_on_tiny_config(data_dir, tmp_path):
    out = tmp_path / "exp"
    args = ["--table=2", "--rows=baseline,headfreeze", f"--data={TINY}", "--seeds=2",
            f"--out={out}", f"--data_dir={data_dir}", "--num_images=2", "--pca_images=3"]
    proc = _harness(args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "4 runs: 0 finished before, 4 to train" in proc.stdout
    assert "[4/4] HeadFreeze (ours) · seed 1 · done in" in proc.stdout

    metrics = {}
    for row in ("baseline", "headfreeze"):
        for seed in (0, 1):
            with open(out / "runs" / row / f"seed_{seed}" / "metrics.json") as f:
                metrics[row, seed] = json.load(f)["target_test"]
    table = out / "table_2"
    md = (table / "results.md").read_text()
    assert "| method | < 11.25° | < 30° | RMSE | Mean | Median | < 22.5° | seeds |" in md
    assert "| Baseline |" in md.replace("**", "") and "| HeadFreeze (ours) |" in md
    assert md.count("| 2 |") == 2 and "Welch" in md
    assert md in proc.stdout
    rows = {r["row"]: r for r in csv.DictReader(open(table / "results.csv"))}
    for row in ("baseline", "headfreeze"):
        values = [metrics[row, s]["mean"] for s in (0, 1)]
        assert float(rows[row]["mean_mean"]) == pytest.approx(np.mean(values), rel=1e-5)
        assert float(rows[row]["mean_std"]) == pytest.approx(np.std(values, ddof=1), rel=1e-4)
        assert rows[row]["seeds"] == "2"
    for name in ("qualitative", "training_curves", "pca_features"):
        for ext in ("png", "pdf"):
            path = table / "figures" / f"{name}.{ext}"
            assert path.stat().st_size > 1000, path

    stamps = {k: os.path.getmtime(out / "runs" / k[0] / f"seed_{k[1]}" / "metrics.json")
              for k in metrics}
    again = _harness(args + ["--nofigures"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 runs: 4 finished before, 0 to train" in again.stdout
    assert "started" not in again.stdout
    assert stamps == {k: os.path.getmtime(out / "runs" / k[0] / f"seed_{k[1]}" /
                                          "metrics.json") for k in metrics}


def test_table_markers_use_benjamini_hochberg_adjusted_p_values():
    from scipy import stats as st

    # Three rows against the reference: raw Welch p-values, then BH over the column.
    rows = {"baseline": [_seed_metrics(v) for v in (29.0, 30.0, 31.0)],
            "a": [_seed_metrics(v) for v in (29.2, 30.1, 30.9)],   # raw p 0.93
            "b": [_seed_metrics(v) for v in (27.0, 27.8, 28.6)],   # raw p 0.043
            "c": [_seed_metrics(v) for v in (20.0, 21.0, 22.0)]}
    stats = A.aggregate(rows, reference="baseline")
    raw = [stats[r]["mean"].p_ref for r in ("a", "b", "c")]
    expected = st.false_discovery_control(raw, method="bh")
    for row, p in zip(("a", "b", "c"), expected):
        assert stats[row]["mean"].p_ref_adjusted == pytest.approx(p, rel=1e-12)
        assert stats[row]["mean"].p_ref_adjusted >= stats[row]["mean"].p_ref
    # A row whose raw p is below 0.05 but whose adjusted p is not gets no marker.
    marked = {r: stats[r]["mean"].significant_vs_ref() for r in ("a", "b", "c")}
    assert stats["b"]["mean"].p_ref < 0.05 <= stats["b"]["mean"].p_ref_adjusted
    assert marked["c"] and not marked["b"] and not marked["a"]
    assert all(marked[r] == (stats[r]["mean"].p_ref_adjusted < 0.05) for r in marked)
    assert "Benjamini–Hochberg" in A.legend("Baseline")
    assert "With 5 seeds per row" in A.legend("Baseline", seeds=(5, 5))
    assert "With 4–5 seeds per row" in A.legend("Baseline", seeds=(5, 4, 5))
    assert "mean_p_vs_reference_bh" in A.csv_table(stats, {}).splitlines()[0]
    assert np.isnan(stats["baseline"]["mean"].p_ref_adjusted)


def test_study_runs_of_one_seed_are_paired_same_initial_weights_and_data_order(data_dir,
                                                                               tmp_path):
    """docs/study_pretrained.md, "Pairing": with one seed, every method of the study starts
    from the same weights and sees the same source images in the same order with the same
    augmentation (what a run does before training: seed, build, first phase's dataset);
    another seed differs."""
    from tada_keras import run as R
    from tada_keras.backend import set_global_determinism

    plan = P.make_plan("study_pretrained", TINY, 2, str(tmp_path / "out"), data_dir=data_dir)
    keys = ("baseline", "baseline", "mtl_both", "headfreeze")  # baseline twice: repeatable

    def start(key, seed):
        cfg = plan.runs[key][seed].config
        set_global_determinism(cfg.seed, cfg.deterministic)
        model = R.build_run_model(cfg)
        phase = cfg.resolved_method().phases[0]
        batches = iter(R.phase_dataset(cfg, R.data_spec(cfg, model), phase))
        # Source images of the first batches, after crop and colour shift (their random
        # draws are paired too, whatever tf.data's parallelism).
        source = np.stack([keras.ops.convert_to_numpy(next(batches)[0])[:cfg.batch_source]
                           for _ in range(3)])
        return [keras.ops.convert_to_numpy(v) for v in model.weights], source

    for seed in (0, 1):
        weights, images = start(keys[0], seed)
        for key in keys[1:]:
            other_weights, other_images = start(key, seed)
            assert len(other_weights) == len(weights)
            for a, b in zip(weights, other_weights):
                np.testing.assert_array_equal(a, b, err_msg=f"{key} seed {seed}")
            np.testing.assert_array_equal(images, other_images, err_msg=f"{key} seed {seed}")
    w0, images0 = start("baseline", 0)
    w1, images1 = start("baseline", 1)
    assert any(not np.array_equal(a, b) for a, b in zip(w0, w1))
    assert not np.array_equal(images0, images1)
