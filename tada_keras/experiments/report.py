"""Reads a plan's finished runs and writes ``<out>/<table>/results.{md,csv,json}``."""

from __future__ import annotations

import dataclasses
import json
import os

from tada_keras.atomic import write_text
from tada_keras.experiments import aggregate as A
from tada_keras.experiments.plan import Plan


def table_dir(plan: Plan) -> str:
    return os.path.join(plan.out, f"table_{plan.table.name}")


def finished_dirs(plan: Plan) -> dict[str, list[str]]:
    """Row key -> model dirs of its runs finished on this machine (seed order; a run known
    only from its record has no weights for the figures)."""
    return {key: [r.model_dir for r in runs if r.local] for key, runs in plan.runs.items()}


def _uses_target_main(plan: Plan, key: str) -> bool:
    cfg = plan.runs[key][0].config
    return any(p.weights.target_main > 0 for p in cfg.resolved_method().phases)


def _task(task_name: str):
    from tada_keras.tasks import get_task

    return get_task(task_name)


def _unit(task_name: str) -> str:
    return _task(task_name).unit


def caption(plan: Plan) -> str:
    b = plan.base
    return (f"{plan.table.title}. Data: {plan.data} ({b.source_dataset} → "
            f"{b.target_dataset}), {plan.table.split_note} split, {b.steps} training steps "
            f"per run unless a row says otherwise; mean ± std over seeds (sample std). "
            f"{_task(b.main_task).caption_note}")


def write_results(plan: Plan, alpha: float = A.ALPHA) -> str:
    """Aggregates every finished run; writes the three files; returns the Markdown."""
    labels = {r.key: r.label for r in plan.rows}
    results, raw = {}, {}
    for key, runs in plan.runs.items():
        finished = [r for r in runs if r.done]
        if not finished:
            continue
        results[key] = [A.flat_metrics(r.metrics()) for r in finished]
        raw[key] = {"label": labels[key], "model_dirs": [r.model_dir for r in finished],
                    "records": [r.record for r in finished if r.recorded],
                    "per_seed": results[key]}
    reference = plan.table.reference if plan.table.reference in results else None
    oracle = tuple(k for k in results if _uses_target_main(plan, k))
    task = plan.base.main_task
    columns = A.task_columns(task)
    stats = A.aggregate(results, reference, exclude_from_best=oracle, columns=columns)
    parts = [caption(plan), A.markdown_table(stats, labels, alpha, columns),
             A.legend(labels.get(reference), alpha,
                      tuple(len(v) for v in results.values()))]
    out = table_dir(plan)
    os.makedirs(out, exist_ok=True)
    paired = []
    if plan.table.pairs:
        by_seed = {key: {r.seed: A.flat_metrics(r.metrics()) for r in runs if r.done}
                   for key, runs in plan.runs.items()}
        metric = A.primary_metric(task)
        paired = A.paired_comparisons(by_seed, plan.table.pairs, metric)
        parts.append("Pre-registered paired comparisons:\n\n"
                     + A.paired_markdown(paired, labels, metric, alpha, _unit(task)))
        parts.append(pairing_markdown(plan, plan.table.pairs, labels))
        _paired_figure(paired, labels, os.path.join(out, "paired_differences.png"))
    text = "\n\n".join(parts) + "\n"
    _write(os.path.join(out, "results.md"), text)
    _write(os.path.join(out, "results.csv"), A.csv_table(stats, labels, columns))
    summary = {"table": plan.table.name, "data": plan.data, "reference": reference,
               "alpha": alpha, "rows": raw,
               "paired": [dataclasses.asdict(c) for c in paired],
               "stats": {k: {m: dataclasses.asdict(c) for m, c in v.items()}
                         for k, v in stats.items()}}
    _write(os.path.join(out, "results.json"),
           json.dumps(summary, indent=2, default=str, allow_nan=True))
    return text


def provenance(run) -> dict:
    """What a finished run's pairing is judged by: its fingerprints (None for runs trained
    before them), CPU model and commit (from the fingerprints, else the record)."""
    prints = run.fingerprints()
    record = {}
    if prints is None and run.recorded:
        from tada_keras.experiments.records import read_record

        record = read_record(run.record, run.config)
    source = prints or record
    return {"fingerprints": prints, "cpu": (source.get("machine") or {}).get("cpu"),
            "commit": source.get("commit")}


def same_first_batch(a: dict, b: dict) -> bool:
    """Two runs' first training batches hold the same images and labels in every domain
    both see (the ``<task>_present`` flags say which labels a method trains on: they
    differ between methods by design and are not compared)."""
    domains = set(a["first_batch"]) & set(b["first_batch"])
    if not domains:
        return False
    for domain in domains:
        x, y = a["first_batch"][domain], b["first_batch"][domain]
        shared = {k for k in set(x) & set(y) if not k.endswith("_present")}
        if any(x[k] != y[k] for k in shared) or "image" not in shared:
            return False
    return True


def pairing(plan: Plan, a: str, b: str) -> dict:
    """Of the seeds where rows ``a`` and ``b`` both finished: how many pairs share the
    initial weights and the first batches, how many cannot tell (no fingerprints), and
    how many cross CPU models or commits."""
    runs_a = {r.seed: r for r in plan.runs.get(a, ()) if r.done}
    runs_b = {r.seed: r for r in plan.runs.get(b, ()) if r.done}
    counts = dict(pairs=0, same_weights=0, same_batches=0, unknown=0, cross_cpu=0,
                  cross_commit=0)
    for seed in sorted(set(runs_a) & set(runs_b)):
        pa, pb = provenance(runs_a[seed]), provenance(runs_b[seed])
        counts["pairs"] += 1
        fa, fb = pa["fingerprints"], pb["fingerprints"]
        if fa is None or fb is None:
            counts["unknown"] += 1
        else:
            counts["same_weights"] += fa["initial_weights"] == fb["initial_weights"]
            counts["same_batches"] += same_first_batch(fa, fb)
        counts["cross_cpu"] += pa["cpu"] != pb["cpu"]
        counts["cross_commit"] += pa["commit"] != pb["commit"]
    return counts


def pairing_markdown(plan: Plan, pairs, labels: dict) -> str:
    lines = ["Pairing of the compared runs (from the run records' fingerprints):", "",
             "| comparison | pairs | same initial weights | same first batches | no "
             "fingerprints | across CPU models | across commits |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for a, b in pairs:
        c = pairing(plan, a, b)
        lines.append(f"| {labels.get(a, a)} − {labels.get(b, b)} | {c['pairs']} | "
                     f"{c['same_weights']} | {c['same_batches']} | {c['unknown']} | "
                     f"{c['cross_cpu']} | {c['cross_commit']} |")
    return "\n".join(lines)


def _paired_figure(paired, labels, path) -> None:
    """Per-seed paired differences, one line per seed across the comparisons."""
    if not any(c.differences for c in paired):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2.2 + 2.0 * len(paired), 3.6))
    seeds = sorted({s for c in paired for s in c.seeds})
    for seed in seeds:
        xs = [i for i, c in enumerate(paired) if seed in c.seeds]
        ys = [c.differences[c.seeds.index(seed)] for c in paired if seed in c.seeds]
        ax.plot(xs, ys, marker="o", alpha=0.7, label=f"seed {seed}")
    for i, c in enumerate(paired):
        if not c.differences:
            continue
        ax.hlines(c.mean, i - 0.25, i + 0.25, colors="black", linewidth=2)
        if c.ci_low == c.ci_low:  # not nan
            ax.vlines(i, c.ci_low, c.ci_high, colors="black", linewidth=1)
    ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(paired)))
    ax.set_xticklabels([f"{labels.get(c.a, c.a)}\n− {labels.get(c.b, c.b)}" for c in paired],
                       fontsize=7)
    ax.set_ylabel("target test mean error difference (°)\nnegative: A better")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # off the CIs
    ax.set_title("Paired differences per seed (black: mean and 95 % CI)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write(path: str, text: str) -> None:
    write_text(path, text)
