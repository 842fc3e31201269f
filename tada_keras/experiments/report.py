"""Reads a plan's finished runs and writes ``<out>/<table>/results.{md,csv,json}``."""

from __future__ import annotations

import dataclasses
import json
import os

from tada_keras.experiments import aggregate as A
from tada_keras.experiments.plan import Plan
from tada_keras.methods import get_method


def table_dir(plan: Plan) -> str:
    return os.path.join(plan.out, f"table_{plan.table.name}")


def finished_dirs(plan: Plan) -> dict[str, list[str]]:
    """Row key -> model dirs of its finished runs (seed order)."""
    return {key: [r.model_dir for r in runs if r.done] for key, runs in plan.runs.items()}


def _uses_target_main(plan: Plan, key: str) -> bool:
    cfg = plan.runs[key][0].config
    return any(p.weights.target_main > 0 for p in get_method(cfg.method).phases)


def caption(plan: Plan) -> str:
    b = plan.base
    return (f"{plan.table.title}. Data: {plan.data} ({b.source_dataset} → "
            f"{b.target_dataset}), {plan.table.split_note} split, {b.steps} training steps "
            f"per run unless a row says otherwise; mean ± std over seeds (sample std). "
            "Accuracies are fractions of pixels, errors are degrees.")


def write_results(plan: Plan, alpha: float = A.ALPHA) -> str:
    """Aggregates every finished run; writes the three files; returns the Markdown."""
    labels = {r.key: r.label for r in plan.rows}
    results, raw = {}, {}
    for key, dirs in finished_dirs(plan).items():
        metrics = []
        for d in dirs:
            with open(os.path.join(d, "metrics.json")) as f:
                metrics.append(json.load(f))
        results[key] = [A.flat_metrics(m) for m in metrics]
        raw[key] = {"label": labels[key], "model_dirs": dirs, "per_seed": results[key]}
    reference = plan.table.reference if plan.table.reference in results else None
    oracle = tuple(k for k in results if _uses_target_main(plan, k))
    stats = A.aggregate(results, reference, exclude_from_best=oracle)
    text = "\n\n".join([
        caption(plan),
        A.markdown_table(stats, labels, alpha),
        A.legend(labels.get(reference), alpha),
    ]) + "\n"
    out = table_dir(plan)
    os.makedirs(out, exist_ok=True)
    _write(os.path.join(out, "results.md"), text)
    _write(os.path.join(out, "results.csv"), A.csv_table(stats, labels))
    summary = {"table": plan.table.name, "data": plan.data, "reference": reference,
               "alpha": alpha, "rows": raw,
               "stats": {k: {m: dataclasses.asdict(c) for m, c in v.items()}
                         for k, v in stats.items()}}
    _write(os.path.join(out, "results.json"),
           json.dumps(summary, indent=2, default=str, allow_nan=True))
    return text


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
