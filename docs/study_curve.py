"""The pre-registered study's learning curve (docs/study_pretrained.md) from its records.

    python docs/study_curve.py        # README table between <!-- study_curve --> markers
                                      # + docs/figures/study_pretrained_curve.png

Reads ``docs/results/study_pretrained_curve/<row>/seed_<k>.json`` (written by the harness
with ``--results``); nothing is typed. Applies the design's budget rule to **source-val**
only: ``S`` is the smallest measured budget after which doubling improves source-val mean
error by less than 0.5° for both methods. If no measured doubling meets it, the rule is
unresolved within the curve and ``S`` falls back to the largest measured budget (the
fallback written into the design's status on 2026-12-01, before the curve's last run had
finished): the study then runs short of the rule's convergence, and says so.
"""

from __future__ import annotations

import glob
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "results", "study_pretrained_curve")
FIGURE = os.path.join(ROOT, "docs", "figures", "study_pretrained_curve.png")
README = os.path.join(ROOT, "README.md")
BEGIN, END = "<!-- study_curve -->", "<!-- /study_curve -->"
METHODS = {"baseline": "Baseline", "mtl_both": "MTL (+both)"}
THRESHOLD = 0.5  # degrees of source-val improvement per doubling


def read_curve() -> dict[str, dict[int, dict]]:
    """method -> steps -> metrics (seed 0)."""
    curve: dict[str, dict[int, dict]] = {m: {} for m in METHODS}
    for path in sorted(glob.glob(os.path.join(RESULTS, "*", "seed_0.json"))):
        with open(path) as f:
            record = json.load(f)
        cfg, metrics = record["config"], record["metrics"]
        if cfg["method"] in curve:
            curve[cfg["method"]][int(cfg["steps"])] = metrics
    return curve


def budget(curve) -> tuple[int | None, list[str]]:
    """The rule's S (None if unresolved) and one line per measured doubling (and per last
    step of the curve that is not a doubling, for information)."""
    notes, ok_from = [], {}
    for method, points in curve.items():
        ok_from[method] = set()
        for steps in sorted(points):
            if 2 * steps in points:
                gain = points[steps]["source_val"]["mean"] - points[2 * steps]["source_val"]["mean"]
                notes.append(f"{METHODS[method]} {steps} → {2 * steps}: source-val improves "
                             f"{gain:.2f}°")
                if gain < THRESHOLD:
                    ok_from[method].add(steps)
        ordered = sorted(points)
        if len(ordered) > 1 and ordered[-1] != 2 * ordered[-2]:
            a, b = ordered[-2], ordered[-1]
            gain = points[a]["source_val"]["mean"] - points[b]["source_val"]["mean"]
            notes.append(f"{METHODS[method]} {a} → {b} (not a doubling): {gain:.2f}°")
    common = set.intersection(*ok_from.values()) if ok_from else set()
    return (min(common) if common else None), notes


def table(curve) -> str:
    steps = sorted({s for points in curve.values() for s in points})
    lines = ["| method | split | " + " | ".join(f"{s} steps" for s in steps) + " |",
             "|---|---|" + "---:|" * len(steps)]
    for method, points in curve.items():
        for split, label in (("source_val", "source val (chooses S)"),
                             ("target_test", "target test (reported only)")):
            cells = [f"{points[s][split]['mean']:.2f}" if s in points else "not run"
                     for s in steps]
            lines.append(f"| {METHODS[method]} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(curve) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for (method, points), colour in zip(curve.items(), ("tab:blue", "tab:orange")):
        steps = sorted(points)
        for split, style in (("source_val", "-o"), ("target_test", "--s")):
            ax.plot(steps, [points[s][split]["mean"] for s in steps], style, color=colour,
                    label=f"{METHODS[method]}, {split.replace('_', ' ')}")
    ax.set_xlabel("training steps (batch 8 + 8, 128²)")
    ax.set_ylabel("mean angular error (°)")
    ax.set_title("Learning curve, EfficientNet-Lite0 ImageNet, seed 0", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    os.makedirs(os.path.dirname(FIGURE), exist_ok=True)
    tmp = FIGURE + ".tmp.png"
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, FIGURE)


def render(curve) -> str:
    """The README block (between the markers) for ``curve``."""
    s, notes = budget(curve)
    largest = max((st for points in curve.values() for st in points), default=None)
    rule = (f"Budget rule (source val only): S = {s} steps." if s else
            "Budget rule (source val only): **unresolved within the measured curve** — no "
            f"measured doubling improved source val by less than {THRESHOLD}° for both "
            f"methods, so S falls back to the largest measured budget, **S = {largest} "
            "steps**, short of the rule's convergence.")
    return "\n".join([table(curve), "", rule + " " + "; ".join(notes) + ".",
                      "", "![learning curve](docs/figures/study_pretrained_curve.png)"])


def main() -> int:
    curve = read_curve()
    text = render(curve)
    figure(curve)
    from tada_keras.atomic import replace_marked_block

    try:
        replace_marked_block(README, BEGIN, END, text)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
