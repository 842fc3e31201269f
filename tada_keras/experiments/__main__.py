"""Runs every row of a table over seeds, then writes the table and its figures.

    python -m tada_keras.experiments --table=2 --data=embedded --seeds=3 --out=runs/exp
    python -m tada_keras.experiments --list            # tables and their rows
    python -m tada_keras.experiments --table=1 ... --dry_run   # the runs, nothing trained

Re-running the same command trains only what is missing: finished runs (metrics.json)
are skipped and interrupted ones resume from their last checkpoint. Outputs:
``<out>/runs/<run>/seed_<k>/`` (one model_dir per row and seed, shared between tables
that contain the same run) and ``<out>/table_<name>/results.{md,csv,json}`` + figures/.
"""

from __future__ import annotations

import sys

from absl import app, flags

from tada_keras.experiments.tables import DATA, TABLES

flags.DEFINE_string("table", None, f"Which table: {', '.join(TABLES)}.")
flags.DEFINE_string("data", "embedded", f"{', '.join(DATA)}, or a flagfile path.")
flags.DEFINE_integer("seeds", 3, "Number of seeds (0 .. seeds-1) per row.")
flags.DEFINE_string("out", None, "Output directory (runs and tables).")
flags.DEFINE_integer("steps", None, "Override the flagfile's --steps for every run.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir passed to every run.")
flags.DEFINE_list("rows", None, "Only these row keys (see --list); the rows they start "
                  "from are added.")
flags.DEFINE_multi_string("train_flag", [], "Extra tada_keras.train flag for every run, "
                          "e.g. --train_flag=--jit_compile=false (repeatable).")
flags.DEFINE_string("da_method", None, "DA method of Tables 1 and 3 (default: the paper's "
                    "for the data: tsai for embedded/indoor, dann for faces).")
flags.DEFINE_string("frontal_source", None, "Pose-matched source dataset for Table 3 when "
                    "--data has none.")
flags.DEFINE_string("results", None, "Folder of committed run records (small JSON per "
                    "finished run; see tada_keras/experiments/records.py): recorded runs "
                    "count as finished on any machine, so a study can be completed across "
                    "sessions. E.g. docs/results/<study>.")
flags.DEFINE_bool("dry_run", False, "List the runs and their commands; train nothing.")
flags.DEFINE_bool("list", False, "List the tables and their rows.")
flags.DEFINE_bool("figures", True, "Draw the figures after training.")
flags.DEFINE_integer("num_images", 4, "Target test images in the qualitative figure.")
flags.DEFINE_integer("pca_images", 64, "Images per domain in the PCA feature figure.")
flags.DEFINE_integer("pca_locations", 3, "Anchor locations (classes/keypoints) in the PCA "
                     "figure.")
flags.DEFINE_float("alpha", 0.05, "Significance level of the tests.")
FLAGS = flags.FLAGS


def list_tables() -> str:
    lines = []
    for name, table in TABLES.items():
        lines.append(f"{name}: {table.title}" + (f" (data: {', '.join(table.data)})"
                                                 if table.data else ""))
        for row in table.rows:
            extra = " ".join(row.flags) + (f"  [starts from {row.init_from}, "
                                           f"{row.steps_scale:g}× steps]"
                                           if row.init_from else "")
            lines.append(f"    {row.key:28s} {row.label:40s} {extra}")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.list:
        print(list_tables())
        return 0
    for name in ("table", "out"):
        if not FLAGS[name].value:
            print(f"error: --{name} is required (see --list for tables)", file=sys.stderr)
            return 2
    from absl import logging

    logging.set_verbosity(logging.ERROR)  # TFDS deprecation chatter; runs log to train.log
    from tada_keras.experiments.plan import PlanError, check_out_dir, make_plan

    try:
        plan = make_plan(FLAGS.table, FLAGS.data, FLAGS.seeds, FLAGS.out, steps=FLAGS.steps,
                         data_dir=FLAGS.data_dir, train_flags=tuple(FLAGS.train_flag),
                         rows=FLAGS.rows, da=FLAGS.da_method,
                         frontal_source=FLAGS.frontal_source, results=FLAGS.results)
        check_out_dir(plan.out, plan.base, write=not FLAGS.dry_run)
        if FLAGS.results:  # its records are named relative to the same base settings
            check_out_dir(FLAGS.results, _portable(plan.base), write=not FLAGS.dry_run)
        from tada_keras.experiments.records import RecordError, read_record

        for run in plan.unique_runs():  # a record stands for its planned run or nothing
            if run.recorded:
                read_record(run.record, run.config)
    except (PlanError, RecordError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    runs = plan.unique_runs()
    if FLAGS.dry_run:
        from tada_keras.experiments.runner import train_command

        for run in runs:
            state = ("done" if run.local else "recorded" if run.done else
                     "todo (weights needed)" if run.recorded else "todo")
            print(f"{state}  {run.row.label} · seed {run.seed} · {run.steps} steps\n"
                  f"      {' '.join(train_command(run)[1:])}")
        print(f"{len(runs)} runs, {sum(not r.done for r in runs)} to train")
        return 0

    from tada_keras.experiments import report
    from tada_keras.experiments.runner import execute

    outcome = execute(runs)
    text = report.write_results(plan, FLAGS.alpha)
    if FLAGS.figures:
        from tada_keras.experiments.figures import write_table_figures

        labels = {r.key: r.label for r in plan.rows}
        dirs = {labels[k]: v for k, v in report.finished_dirs(plan).items()}
        try:
            write_table_figures(dirs, f"{report.table_dir(plan)}/figures", plan.table.title,
                                num_images=FLAGS.num_images, pca_images=FLAGS.pca_images,
                                pca_locations=FLAGS.pca_locations)
        except Exception as err:  # a figure must not hide the table printed below
            print(f"warning: figures failed: {type(err).__name__}: {err}", file=sys.stderr)
    print(f"\n{text}\nwritten to {report.table_dir(plan)}/")
    problems = len(outcome.failed) + len(outcome.blocked)
    if problems:
        print(f"{problems} runs did not finish; re-run the same command to retry them",
              file=sys.stderr)
    return 1 if problems else 0


def _portable(base):
    """The base settings without machine-specific paths (records move between machines)."""
    import dataclasses

    return dataclasses.replace(base, data_dir=None, model_dir="", source_manual_dir=None,
                               target_manual_dir=None)


def run():
    """The console script's entry (``pyproject.toml``): flagfiles resolved, then absl."""
    from tada_keras import flagfiles

    flagfiles.run(main)


if __name__ == "__main__":
    run()
