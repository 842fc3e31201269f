"""Mean ± std over seeds, significance tests, and the Markdown / CSV tables.

Pure functions of per-seed results: ``{row key: [per-seed metrics dict, ...]}``, each dict
holding at least the target main-task stats (``mean, median, rmse, a11_25, a22_5, a30``).

Statistics (the paper reports "significance computed from 3 runs" without naming a test):

* std is the sample standard deviation over seeds (ddof=1).
* Each row is compared with the table's reference row (the paper's Baseline; MTL(+both
  anchor) in Tables 4-5) and with the best row of each column by **Welch's t-test**
  (two-sided, ``scipy.stats.ttest_ind(equal_var=False)``). Welch, not Student, because
  methods differ in stability (adversarial rows vary much more across seeds than others),
  so equal variances cannot be assumed. Not a paired test, because seed k of two methods
  is not a matched unit: methods draw different random numbers from the same seed, so
  there is no shared per-seed effect to pair on, and rows with a failed seed can still be
  compared.
* Markers use **Benjamini–Hochberg-adjusted** p-values (``scipy.stats.
  false_discovery_control``), adjusted over the family of one column's tests of one kind
  (every row against the reference; every row against the best): a table of many rows
  would otherwise mark about one row in twenty by chance. The CSV has the raw and the
  adjusted p-values. (The pre-registered paired comparisons below use Holm, as their
  design says.)
* With 3 seeds per row the test has little power (about 2-4 degrees of freedom: only
  differences of several standard deviations reach p < 0.05). A missing marker therefore
  does not mean "no difference". The CSV has the p-values.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import warnings

import numpy as np

ALPHA = 0.05
REF_MARK = "*"  # differs from the reference row (p < ALPHA)
BEST_MARK = "†"  # worse than the column's best row (p < ALPHA)


from tada_keras.tasks.base import MetricColumn as Column  # noqa: E402
from tada_keras.tasks.normals import NormalsTask  # noqa: E402

# The default columns: the normals task's own, in the paper's order; other main tasks
# bring theirs (``task_columns``).
COLUMNS = tuple(NormalsTask.columns)


def main_task_of(metrics: dict) -> str:
    """The main task a run's metrics.json belongs to (runs before it was recorded:
    normals, the only main task then)."""
    return metrics.get("main_task", "normals")


def task_columns(task_name: str) -> tuple[Column, ...]:
    from tada_keras.tasks import get_task

    return tuple(get_task(task_name).columns)


def primary_metric(task_name: str) -> str:
    from tada_keras.tasks import get_task

    return get_task(task_name).primary


# Reported when the runs have them: (key in flat_metrics, Markdown title or None = CSV only).
EXTRAS = (
    ("discriminator_fraction_below_55", "disc. acc. < 55 %"),
    ("target_test_anchor_miou", None),
    ("source_val_mean", None),
    ("train_seconds", None),
)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One metric of one row: mean ± std over n seeds and the two tests."""

    mean: float
    std: float
    n: int
    p_ref: float = math.nan
    p_best: float = math.nan
    best: bool = False
    p_ref_adjusted: float = math.nan  # Benjamini-Hochberg over the column's family
    p_best_adjusted: float = math.nan

    def significant_vs_ref(self, alpha: float = ALPHA) -> bool:
        return self.p_ref_adjusted < alpha  # nan compares False

    def worse_than_best(self, alpha: float = ALPHA) -> bool:
        return not self.best and self.p_best_adjusted < alpha


def flat_metrics(metrics: dict) -> dict[str, float]:
    """A run's metrics.json -> the flat dict the aggregation reads."""
    flat = {k: float(v) for k, v in metrics["target_test"].items()}
    primary = primary_metric(main_task_of(metrics))
    if "source_val" in metrics:
        flat[f"source_val_{primary}"] = float(metrics["source_val"][primary])
    for key in ("target_test_anchor_miou",):
        if key in metrics:
            flat[key] = float(metrics[key])
    disc = metrics.get("discriminator") or {}
    if disc.get("fraction_below_55") is not None:  # None: no step logged after warm-up
        flat["discriminator_fraction_below_55"] = float(disc["fraction_below_55"])
    timings = metrics.get("timings_s") or {}
    if timings:
        flat["train_seconds"] = float(sum(timings.values()))
    return flat


def _extra_keys(present: set[str]) -> list[str]:
    """The ``EXTRAS`` present, then any other ``source_val_<primary>`` (other main tasks)."""
    known = [k for k, _ in EXTRAS if k in present]
    return known + sorted(k for k in present if k.startswith("source_val_") and k not in known)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1; nan for fewer than 2 values)."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of Welch's t-test; nan when it is undefined (fewer than 2 values
    in a group, or no variance in either)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = stats.ttest_ind(a, b, equal_var=False).pvalue
    return float(p)


def aggregate(results: dict[str, list[dict[str, float]]], reference: str | None = None,
              exclude_from_best: tuple[str, ...] = (),
              columns: tuple[Column, ...] = COLUMNS) -> dict[str, dict[str, Cell]]:
    """``{row: {metric: Cell}}`` for every metric of ``COLUMNS`` and ``EXTRAS`` present.

    ``exclude_from_best``: rows never bold and never the "best row" of a test (the
    Oracle, which uses target main-task labels no other method has).
    """
    present = {k for rs in results.values() for r in rs for k in r}
    keys = [c.key for c in columns] + _extra_keys(present)
    values = {row: {k: [r[k] for r in runs if k in r] for k in keys}
              for row, runs in results.items()}
    table = {row: {} for row in results}
    columns = {c.key: c for c in columns}
    for key in keys:
        column = columns.get(key)
        best = None
        if column:
            eligible = [r for r in results if r not in exclude_from_best and values[r][key]]
            if eligible:
                pick = max if column.higher_is_better else min
                best = pick(eligible, key=lambda r: float(np.mean(values[r][key])))
        for row in results:
            v = values[row][key]
            mean, std = mean_std(v)
            if column is None:
                table[row][key] = Cell(mean, std, len(v))
                continue
            p_ref = (welch_p(v, values[reference][key])
                     if reference in values and row != reference else math.nan)
            # Excluded rows (the Oracle) may beat the best row: "worse than best" is moot.
            p_best = (welch_p(v, values[best][key])
                      if best and row != best and row not in exclude_from_best else math.nan)
            is_best = best is not None and row not in exclude_from_best and bool(v) and \
                mean == float(np.mean(values[best][key]))
            table[row][key] = Cell(mean, std, len(v), p_ref, p_best, is_best)
        if column is not None:
            _adjust_column(table, key)
    return table


def benjamini_hochberg(p_values: list[float]) -> list[float]:
    """BH-adjusted p-values (``scipy.stats.false_discovery_control``), in the input order;
    nan stays nan and is not part of the family."""
    from scipy import stats

    finite = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    out = [math.nan] * len(p_values)
    if finite:
        adjusted = stats.false_discovery_control([p_values[i] for i in finite], method="bh")
        for i, p in zip(finite, np.atleast_1d(adjusted)):
            out[i] = float(p)
    return out


def _adjust_column(table: dict[str, dict[str, Cell]], key: str) -> None:
    rows = list(table)
    ref = benjamini_hochberg([table[r][key].p_ref for r in rows])
    best = benjamini_hochberg([table[r][key].p_best for r in rows])
    for row, p_ref, p_best in zip(rows, ref, best):
        table[row][key] = dataclasses.replace(table[row][key], p_ref_adjusted=p_ref,
                                              p_best_adjusted=p_best)


def format_cell(cell: Cell, decimals: int, alpha: float = ALPHA) -> str:
    if cell.n == 0:
        return "–"
    text = f"{cell.mean:.{decimals}f}"
    if cell.n > 1:
        text += f" ± {cell.std:.{decimals}f}"
    if cell.best:
        text = f"**{text}**"
    marks = (REF_MARK if cell.significant_vs_ref(alpha) else "") + \
        (BEST_MARK if cell.worse_than_best(alpha) else "")
    return text + marks


def legend(reference_label: str | None, alpha: float = ALPHA,
           seeds: tuple[int, ...] = (3,)) -> str:
    """``seeds``: the rows' seed counts (the power caveat names them)."""
    ref = (f"`{REF_MARK}`: differs from {reference_label} (two-sided Welch's t-test over "
           f"seeds, Benjamini–Hochberg-adjusted p < {alpha} over the column's rows); "
           if reference_label else "")
    counts = sorted(set(seeds)) or [0]
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    return (f"**Bold**: best mean of the column (the Oracle excluded). {ref}`{BEST_MARK}`: "
            f"worse than the column's best row (the same test and adjustment). With {n} "
            f"seeds per row this unpaired test has little power: no marker does not mean "
            f"no difference.")


def markdown_table(stats: dict[str, dict[str, Cell]], labels: dict[str, str],
                   alpha: float = ALPHA, columns: tuple[Column, ...] = COLUMNS) -> str:
    """The table in the paper's column order; ``labels``: row key -> row name."""
    extras = [(k, t) for k, t in EXTRAS if t and any(k in s for s in stats.values())]
    head = ["method"] + [c.title for c in columns] + [t for _, t in extras] + ["seeds"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for row, cells in stats.items():
        n = max((c.n for c in cells.values()), default=0)
        parts = [labels.get(row, row)]
        parts += [format_cell(cells[c.key], c.decimals, alpha) for c in columns]
        parts += [format_cell(cells[k], 3, alpha) if k in cells else "–" for k, _ in extras]
        lines.append("| " + " | ".join(parts + [str(n)]) + " |")
    return "\n".join(lines)


def csv_table(stats: dict[str, dict[str, Cell]], labels: dict[str, str],
              columns: tuple[Column, ...] = COLUMNS) -> str:
    """Every number of the table, the p-values included, one row per table row."""
    extras = _extra_keys({k for s in stats.values() for k in s})
    head = ["row", "label", "seeds"]
    for c in columns:
        head += [f"{c.key}_mean", f"{c.key}_std", f"{c.key}_p_vs_reference",
                 f"{c.key}_p_vs_best", f"{c.key}_p_vs_reference_bh", f"{c.key}_p_vs_best_bh",
                 f"{c.key}_is_best"]
    for k in extras:
        head += [f"{k}_mean", f"{k}_std"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(head)
    for row, cells in stats.items():
        n = max((c.n for c in cells.values()), default=0)
        values = [row, labels.get(row, row), n]
        for c in columns:
            cell = cells[c.key]
            values += [_num(cell.mean), _num(cell.std), _num(cell.p_ref), _num(cell.p_best),
                       _num(cell.p_ref_adjusted), _num(cell.p_best_adjusted), int(cell.best)]
        for k in extras:
            cell = cells.get(k)
            values += [_num(cell.mean), _num(cell.std)] if cell else ["", ""]
        writer.writerow(values)
    return buf.getvalue()


def _num(x: float) -> str:
    return "" if x is None or math.isnan(x) else f"{x:.6g}"


# --- pre-registered paired comparisons ------------------------------------------------------
@dataclasses.dataclass
class Paired:
    """A − B over the seeds both rows finished (the same seed = the same initial weights
    and data order for both, so the per-seed differences are paired)."""

    a: str
    b: str
    seeds: list[int]
    differences: list[float]
    mean: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p: float = math.nan
    p_holm: float = math.nan


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (Holm 1979), in the input order; nan stays nan
    and does not count towards the family size."""
    order = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m, adjusted, running = len(order), [math.nan] * len(p_values), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))  # monotone step-down
        adjusted[i] = running
    return adjusted


def paired_comparisons(by_seed: dict[str, dict[int, dict[str, float]]],
                       pairs: tuple[tuple[str, str], ...], metric: str = "mean",
                       confidence: float = 0.95) -> list[Paired]:
    """Mean paired difference, its t confidence interval, the paired t-test p-value, and
    Holm's adjustment over the comparisons that could be computed (the family)."""
    from scipy import stats

    out = []
    for a, b in pairs:
        seeds = sorted(set(by_seed.get(a, {})) & set(by_seed.get(b, {})))
        diffs = [by_seed[a][s][metric] - by_seed[b][s][metric] for s in seeds]
        cmp = Paired(a, b, seeds, diffs)
        if diffs:
            cmp.mean = float(np.mean(diffs))
        if len(diffs) >= 2 and np.std(diffs) > 0:
            test = stats.ttest_1samp(diffs, 0.0)
            ci = test.confidence_interval(confidence)
            cmp.p, cmp.ci_low, cmp.ci_high = float(test.pvalue), float(ci.low), float(ci.high)
        out.append(cmp)
    for cmp, adjusted in zip(out, holm([c.p for c in out])):
        cmp.p_holm = adjusted
    return out


def paired_markdown(comparisons: list[Paired], labels: dict[str, str], metric: str = "mean",
                    alpha: float = ALPHA, unit: str = "°") -> str:
    head = (f"| comparison (A − B, target {metric}{' ' + unit if unit else ''}) | seeds | "
            "mean difference | 95 % CI | "
            "paired t p | Holm p |")
    lines = [head, "|---|---:|---:|---|---:|---:|"]

    def num(v, fmt):
        return "—" if math.isnan(v) else format(v, fmt)

    for c in comparisons:
        mark = " *" if not math.isnan(c.p_holm) and c.p_holm < alpha else ""
        ci = ("—" if math.isnan(c.ci_low) else f"[{c.ci_low:+.2f}, {c.ci_high:+.2f}]")
        lines.append(f"| {labels.get(c.a, c.a)} − {labels.get(c.b, c.b)} | {len(c.seeds)} | "
                     f"{num(c.mean, '+.2f')}{mark} | {ci} | {num(c.p, '.3f')} | "
                     f"{num(c.p_holm, '.3f')} |")
    lines.append("")
    lines.append(f"Negative = A has the lower error. `*`: Holm-adjusted p < {alpha} over the "
                 f"{sum(not math.isnan(c.p) for c in comparisons)} comparisons of this "
                 "pre-registered family; CI: Student t over seeds (n − 1 d.o.f.).")
    return "\n".join(lines)
