"""Train a method and evaluate it on the target domain.

    python -m tada_keras.train --flagfile=configs/demo.flags [--method=headfreeze ...]

Re-running the same command after an interruption resumes from the last checkpoint; a
finished phase is never repeated.
"""

from __future__ import annotations

import sys

from tada_keras.flags import config_from_flags, define_run_flags

define_run_flags()


def summary_table(results: dict) -> str:
    """The main task's metrics (its result-table columns, in order) per evaluated split."""
    from tada_keras.tasks import get_task

    task = get_task(results.get("main_task", "normals"))
    keys = task.summary_keys or tuple(c.key for c in task.columns)
    rows = [("split",) + keys]
    for key in ("target_test", "source_val"):
        if key in results:
            rows.append((key,) + tuple(f"{results[key][k]:.4f}" for k in keys))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}: every setting is a --flag=value",
              file=sys.stderr)
        return 2
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    from tada_keras.run import os_error_line, train_run

    cfg = config_from_flags()
    from tada_keras.training.callbacks import TrainingDivergedError

    try:
        results = train_run(cfg)  # validates the settings first (exit 2 below)
    except TrainingDivergedError as err:
        print(flush=True)  # end the progress bar's line
        print(f"error: {err}", file=sys.stderr)
        return 1
    except ValueError as err:  # settings that only the data or model_dir can refute
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the last checkpoint stays valid
        print(flush=True)
        line, code = os_error_line(err, cfg)
        print(f"error: {line}", file=sys.stderr)
        return code
    print(f"\n{cfg.method} -> {cfg.model_dir}/metrics.json")
    print(summary_table(results))
    return 0


def run():
    """The console script's entry (``pyproject.toml``): flagfiles resolved, then absl."""
    from tada_keras import flagfiles

    flagfiles.run(main, interrupted=flagfiles.RESUMES)


if __name__ == "__main__":
    run()
