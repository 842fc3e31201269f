"""The study-grade measurement's report (docs/study_grade.md) from its committed records.

    python docs/study_grade.py      # README block between <!-- study_grade --> markers

Reads ``docs/results/study_grade/<run>/seed_<k>.json`` (written by the harness's
``--results``; each holds ``metrics.json``, the per-epoch label-free scores and the
analysis-only target-test curve) and computes what the pre-registration lists: the EMA
momentum by its rule (source val, seed 0), the noise floor, the between-seed and paired
SDs with and without averaging, the regret of each selection rule, the Spearman
correlations, the decision rules' outcomes and the power calculation. Nothing is typed and
nothing is trained; what is not recorded yet is listed with the command that runs it.
"""

from __future__ import annotations

import glob
import json
import math
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "results", "study_grade")
README = os.path.join(ROOT, "README.md")
BEGIN, END = "<!-- study_grade -->", "<!-- /study_grade -->"
METHODS = ("baseline", "mtl_both")
LABELS = {"baseline": "Baseline", "mtl_both": "MTL (+both)"}
MOMENTA = (0.99, 0.995, 0.999)
SEEDS, NOISE_SEEDS = range(5), range(3)
TIE = 0.05  # degrees: a momentum tie goes to the smaller momentum
RULES = ("last", "source_val", "target_anchor")
COMMANDS = {
    1: "python -m tada_keras.experiments --table=study_grade_momentum --data=pretrained "
       "--seeds=1 --steps=3000 --data_dir=.tfds --out=runs/study_grade "
       "--results=docs/results/study_grade",
    2: "python -m tada_keras.experiments --table=study_grade --rows=baseline,mtl_both "
       "--data=pretrained --seeds=5 --steps=3000 --train_flag=--ema_momentum={M} "
       "--data_dir=.tfds --out=runs/study_grade --results=docs/results/study_grade",
    3: "python -m tada_keras.experiments --table=study_grade "
       "--rows=baseline_1thread,mtl_both_1thread --data=pretrained --seeds=3 --steps=3000 "
       "--train_flag=--ema_momentum={M} --data_dir=.tfds --out=runs/study_grade "
       "--results=docs/results/study_grade",
}


# --- records -------------------------------------------------------------------------------
def load(results: str = RESULTS) -> dict:
    """{(method, ema_momentum, intra_op_threads, seed): record} of the finished runs."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(results, "*", "seed_*.json"))):
        with open(path) as f:
            record = json.load(f)
        cfg = record["config"]
        key = (cfg["method"], cfg.get("ema_momentum") or 0.0, cfg.get("intra_op_threads"),
               int(cfg["seed"]))
        runs[key] = record
    return runs


def last_phase(record: dict) -> dict:
    curves = record.get("curves") or {}
    phases = record["config"].get("resolved_method", {}).get("phases") or []
    name = phases[-1]["name"] if phases else sorted(curves)[-1]
    return curves[name]


def outcomes(record: dict) -> dict:
    """Target-test mean of: the raw last weights, the averaged last weights, and the
    averaged weights chosen by each rule; each rule's regret; the curves."""
    curve = last_phase(record)
    target = np.asarray(curve["target_test_curve"]["target_test_mean"], float)
    source = np.asarray(curve["val_source_main_mean"], float)
    anchor = np.asarray(curve["val_target_anchor_miou"], float)
    chosen = {"last": len(target) - 1,
              "source_val": int(np.nanargmin(source)),  # first of ties
              "target_anchor": int(np.nanargmax(anchor))}
    best = float(np.nanmin(target))
    out = {"raw_last": record["metrics"]["raw_weights"]["target_test"]["mean"],
           "avg_last": record["metrics"]["target_test"]["mean"],
           "source_val_raw": record["metrics"]["raw_weights"]["source_val"]["mean"],
           "source_val_avg": record["metrics"]["source_val"]["mean"],
           "curves": (source, anchor, target)}
    for rule, epoch in chosen.items():
        out[rule] = float(target[epoch])
        out[f"regret_{rule}"] = float(target[epoch]) - best
    return out


# --- statistics ------------------------------------------------------------------------------
def sd(values) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.std(values, ddof=1)) if len(values) >= 2 else math.nan


def paired_power(sd_diff: float, delta: float, n: int, alpha: float = 0.05) -> float:
    """Power of a two-sided paired t-test (noncentral t) with ``n`` pairs."""
    from scipy import stats

    if n < 2 or not sd_diff > 0:
        return math.nan
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    ncp = delta / sd_diff * math.sqrt(n)
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))


def seeds_needed(sd_diff: float, delta: float, power: float = 0.8, limit: int = 1000) -> int:
    """Smallest n with ``paired_power`` ≥ ``power`` (``limit`` + 1 if none up to it)."""
    for n in range(2, limit + 1):
        if paired_power(sd_diff, delta, n) >= power:
            return n
    return limit + 1


def sd_upper(sd_diff: float, n: int, level: float = 0.8) -> float:
    """Upper end of the two-sided ``level`` chi-square confidence interval of an SD."""
    from scipy import stats

    return math.sqrt((n - 1) * sd_diff ** 2 / stats.chi2.ppf((1 - level) / 2, n - 1))


def choose_momentum(runs: dict) -> tuple[float | None, dict]:
    """The pre-registered rule: lowest seed-0 final source-val error of the averaged
    weights, averaged over the two methods; ties (< TIE) go to the smaller momentum."""
    scores = {}
    for m in MOMENTA:
        values = [runs[(meth, m, None, 0)]["metrics"]["source_val"]["mean"]
                  for meth in METHODS if (meth, m, None, 0) in runs]
        if len(values) == len(METHODS):
            scores[m] = float(np.mean(values))
    if len(scores) < len(MOMENTA):
        return None, scores
    best = min(scores.values())
    return min(m for m, v in scores.items() if v - best < TIE), scores


# --- report ------------------------------------------------------------------------------
def _f(value, fmt="+.2f") -> str:
    return "—" if value is None or not math.isfinite(value) else format(value, fmt)


def build(results: str = RESULTS) -> str:
    from scipy import stats

    runs = load(results)
    lines = [f"Records: `docs/results/study_grade/`, {len(runs)} runs. Design and decision "
             "rules: [docs/study_grade.md](docs/study_grade.md) (written before the runs).", ""]
    momentum, scores = choose_momentum(runs)
    lines += ["Step 1, the momentum (seed 0, final source-val mean error of the averaged "
              "weights, mean of Baseline and MTL (+both)):", "",
              "| EMA momentum | source val (°) |", "|---|---:|"]
    lines += [f"| {m} | {_f(scores.get(m), '.2f')} |" for m in MOMENTA]
    if momentum is None:
        lines += ["", f"Not complete: run `{COMMANDS[1]}`."]
        return "\n".join(lines)
    lines += ["", f"Chosen by the rule: **M = {momentum}**."]
    main = {(meth, s): outcomes(runs[(meth, momentum, None, s)]) for meth in METHODS
            for s in SEEDS if (meth, momentum, None, s) in runs}
    missing = [f"{LABELS[m]} seed {s}" for m in METHODS for s in SEEDS if (m, s) not in main]
    lines += ["", f"Step 2: {len(main)} of {len(METHODS) * len(SEEDS)} runs"
              + (f"; not recorded yet: {', '.join(missing)} (`{COMMANDS[2].format(M=momentum)}`)."
                 if missing else ".")]
    variants = ("raw_last", "avg_last", "source_val", "target_anchor")
    names = {"raw_last": "raw weights, last", "avg_last": "averaged, last",
             "source_val": "averaged, best source val", "target_anchor":
             "averaged, best target-val anchor"}
    lines += ["", "| weights | " + " | ".join(f"{LABELS[m]} mean ± SD" for m in METHODS)
              + " | paired diff. MTL (+both) − Baseline: mean, SD | regret mean / max |",
              "|---|" + "---:|" * (len(METHODS) + 2)]
    seeds = [s for s in SEEDS if all((m, s) in main for m in METHODS)]
    sd_diff = {}
    for v in variants:
        cells = []
        for m in METHODS:
            values = [main[(m, s)][v] for s in SEEDS if (m, s) in main]
            cells.append(f"{_f(np.mean(values) if values else math.nan, '.2f')} ± "
                         f"{_f(sd(values), '.2f')}")
        diffs = [main[("mtl_both", s)][v] - main[("baseline", s)][v] for s in seeds]
        sd_diff[v] = sd(diffs)
        rule = {"avg_last": "last"}.get(v, v)
        regrets = [o[f"regret_{rule}"] for o in main.values()] if rule in RULES else []
        lines.append(f"| {names[v]} | " + " | ".join(cells) + f" | "
                     f"{_f(np.mean(diffs) if diffs else math.nan)}, {_f(sd_diff[v], '.2f')} | "
                     + (f"{_f(np.mean(regrets), '.2f')} / {_f(max(regrets), '.2f')} |"
                        if regrets else "— |"))
    # Spearman: within runs (across epoch ends), and across the final models.
    within_anchor = [stats.spearmanr(o["curves"][1], o["curves"][2]).statistic
                     for o in main.values()]
    within_source = [stats.spearmanr(o["curves"][0], o["curves"][2]).statistic
                     for o in main.values()]
    finals = list(main.values())
    lines += ["", "Spearman correlation with the target-test mean error (negative for mIoU "
              "= the anchor predicts it): within runs across epoch ends, median [min, max] "
              "over runs; across the final averaged models of all runs.", "",
              "| score | within runs | across runs |", "|---|---|---:|"]
    for name, within, index in (("target-val anchor mIoU", within_anchor, 1),
                                ("source-val mean error", within_source, 0)):
        across = (stats.spearmanr([o["curves"][index][-1] for o in finals],
                                  [o["avg_last"] for o in finals]).statistic
                  if len(finals) >= 3 else math.nan)
        lines.append(f"| {name} | {_f(np.median(within) if within else math.nan)} "
                     f"[{_f(min(within) if within else math.nan)}, "
                     f"{_f(max(within) if within else math.nan)}] | {_f(across)} |")
    # The noise floor.
    noise = []
    for m in METHODS:
        for s in NOISE_SEEDS:
            a, b = runs.get((m, momentum, None, s)), runs.get((m, momentum, 1, s))
            if a and b:
                oa, ob = outcomes(a), outcomes(b)
                noise.append({k: abs(oa[k] - ob[k]) for k in
                              ("raw_last", "avg_last", "source_val_raw", "source_val_avg")}
                             | {"paired": (a.get("fingerprints") or {}).get(
                                 "initial_weights") == (b.get("fingerprints") or {}).get(
                                 "initial_weights")})
    lines += ["", f"Step 3, the noise floor (the same run with 1 intra-op thread): "
              f"{len(noise)} of {len(METHODS) * len(NOISE_SEEDS)} pairs"
              + ("" if len(noise) == len(METHODS) * len(NOISE_SEEDS) else
                 f" (`{COMMANDS[3].format(M=momentum)}`)") + "."]
    if noise:
        lines += ["", "| |target-test Δ| raw | averaged | |source-val Δ| raw | averaged |",
                  "|---|---:|---:|---:|---:|"]
        for stat, fn in (("mean", np.mean), ("max", np.max)):
            lines.append(f"| {stat} | " + " | ".join(
                _f(float(fn([n[k] for n in noise])), ".2f") for k in
                ("raw_last", "avg_last", "source_val_raw", "source_val_avg")) + " |")
        lines.append(f"\nPairs with the same initial weights: "
                     f"{sum(n['paired'] for n in noise)} of {len(noise)}.")
    # Decision rules.
    if len(seeds) < len(SEEDS):
        lines += ["", "Decision rules: not applied until step 2 is complete."]
        return "\n".join(lines)
    pooled = {v: math.sqrt(np.mean([sd([main[(m, s)][v] for s in SEEDS]) ** 2
                                    for m in METHODS])) for v in ("raw_last", "avg_last")}
    source = {v: np.mean([o[k] for o in main.values()]) for v, k in
              (("raw_last", "source_val_raw"), ("avg_last", "source_val_avg"))}
    averaging = pooled["avg_last"] < pooled["raw_last"] and source["avg_last"] <= \
        source["raw_last"]
    regret = {r: np.mean([o[f"regret_{r}"] for o in main.values()]) for r in RULES}
    candidate = min(("source_val", "target_anchor"), key=regret.get)
    selection = (regret[candidate] <= regret["last"] - 0.2
                 and sd_diff[candidate] <= sd_diff["avg_last"])
    adopted = (candidate if selection else "avg_last") if averaging else "raw_last"
    s_d = sd_diff[adopted]
    lines += ["", "Decision rules (docs/study_grade.md):",
              f"- averaging: pooled between-seed SD {_f(pooled['avg_last'], '.2f')}° with vs "
              f"{_f(pooled['raw_last'], '.2f')}° without; mean source val "
              f"{_f(source['avg_last'], '.2f')}° vs {_f(source['raw_last'], '.2f')}° → "
              f"**{'adopted' if averaging else 'not adopted'}**;",
              f"- selection: mean regret last {_f(regret['last'], '.2f')}°, source_val "
              f"{_f(regret['source_val'], '.2f')}°, target_anchor "
              f"{_f(regret['target_anchor'], '.2f')}° → **"
              f"{candidate if selection and averaging else 'last'}**;",
              f"- next study's σ_d = {_f(s_d, '.2f')}° ({names[adopted]}): n = "
              f"{seeds_needed(s_d, 1.0)} seeds for 80 % power at 1.0°, "
              f"{seeds_needed(s_d, 0.5)} at 0.5°; at the upper end of σ_d's 80 % interval "
              f"({_f(sd_upper(s_d, len(seeds)), '.2f')}°): "
              f"{seeds_needed(sd_upper(s_d, len(seeds)), 1.0)} seeds at 1.0°."]
    return "\n".join(lines)


def main() -> int:
    from tada_keras.atomic import replace_marked_block

    text = build()
    try:
        replace_marked_block(README, BEGIN, END, text)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    raise SystemExit(main())
