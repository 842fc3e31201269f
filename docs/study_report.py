"""The pre-registered study's tables (docs/study_pretrained.md, comparisons 1-3) from its
committed records.

    python docs/study_report.py     # README block between <!-- study_pretrained --> markers
                                    # + docs/figures/study_pretrained_paired.png

Reads ``docs/results/study_pretrained/<run>/seed_<k>.json`` through the experiment harness
itself (the plan of ``--table=study_pretrained --data=pretrained --seeds=5 --steps=3000``,
whose runs count as finished when recorded), so the block is exactly the harness's
``results.md`` for those records: the mean ± std table, the paired comparisons with t
intervals and Holm-adjusted p-values, and the per-seed paired-difference figure. Nothing
is typed and nothing is trained; runs not recorded yet are listed as missing.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "results", "study_pretrained")
FIGURE = os.path.join(ROOT, "docs", "figures", "study_pretrained_paired.png")
README = os.path.join(ROOT, "README.md")
BEGIN, END = "<!-- study_pretrained -->", "<!-- /study_pretrained -->"
# The command whose records these are (docs/study_pretrained.md, "Reproducing").
TABLE, DATA, SEEDS, STEPS = "study_pretrained", "pretrained", 5, 3000


def _plan(out: str):
    sys.path.insert(0, ROOT)
    from tada_keras.experiments.plan import make_plan

    return make_plan(TABLE, DATA, SEEDS, out, steps=STEPS, results=RESULTS)


def build(out: str) -> tuple[str, str | None]:
    """(README block, path of the paired-difference figure or None) from the records."""
    from tada_keras.experiments import report

    plan = _plan(out)
    runs = plan.unique_runs()
    missing = [f"{r.row.label} seed {r.seed}" for r in runs if not r.done]
    text = report.write_results(plan).strip()
    status = (f"{len(runs) - len(missing)} of {len(runs)} runs recorded"
              + (f"; not recorded yet: {', '.join(missing)}." if missing else " (complete)."))
    lines = [f"Records: `docs/results/study_pretrained/`, {status}", "", text]
    figure = os.path.join(report.table_dir(plan), "paired_differences.png")
    if os.path.exists(figure):
        lines += ["", "![paired differences per seed](docs/figures/study_pretrained_paired.png)"]
        return "\n".join(lines), figure
    return "\n".join(lines), None


def main() -> int:
    from tada_keras.atomic import replace_marked_block

    with tempfile.TemporaryDirectory() as out:
        text, figure = build(out)
        if figure:
            os.makedirs(os.path.dirname(FIGURE), exist_ok=True)
            shutil.copyfile(figure, FIGURE + ".tmp")
            os.replace(FIGURE + ".tmp", FIGURE)
    try:
        replace_marked_block(README, BEGIN, END, text)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
