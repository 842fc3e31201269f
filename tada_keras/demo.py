"""The README's demo: several methods on the embedded benchmark, compared side by side.

    python -m tada_keras.demo --flagfile=configs/demo.flags --out=runs/demo

Every method trains with the same flags into ``<out>/<method>`` (finished runs are
reused, interrupted ones resume), then one table of target-test metrics is printed and
written to ``<out>/summary.md``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from absl import flags

from tada_keras.flags import config_from_flags, define_run_flags
from tada_keras.inference import comparison_table

define_run_flags()
flags.DEFINE_list("methods", ["baseline", "headfreeze"], "Methods to train and compare.")
flags.DEFINE_string("out", "runs/demo", "Output directory (one model_dir per method).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    from tada_keras.methods import METHOD_NAMES
    from tada_keras.run import os_error_line, train_run, validate
    from tada_keras.training.callbacks import TrainingDivergedError

    unknown = [m for m in FLAGS.methods if m not in METHOD_NAMES]
    if unknown:
        print(f"error: --methods: unknown {unknown}; expected {list(METHOD_NAMES)}",
              file=sys.stderr)
        return 2
    base = config_from_flags()
    configs = {m: dataclasses.replace(base, method=m, model_dir=os.path.join(FLAGS.out, m))
               for m in FLAGS.methods}
    try:
        for cfg in configs.values():
            validate(cfg)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    start = time.time()
    rows = {}
    for name, cfg in configs.items():
        print(f"\n=== {name} ({cfg.steps} steps, backbone {cfg.backbone}) ===", flush=True)
        try:
            rows[name] = train_run(cfg, verbose=2)
        except TrainingDivergedError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except OSError as err:
            print(flush=True)
            line, code = os_error_line(err, cfg)
            print(f"error: {line}", file=sys.stderr)
            return code
    from tada_keras.tasks import get_task

    task = get_task(base.main_task)
    table = comparison_table(rows, task)
    minutes = (time.time() - start) / 60
    text = (f"Target test ({base.target_dataset}:{base.target_test_split}), "
            f"{task.metrics_title}; "
            f"{minutes:.1f} min of training and evaluation.\n\n{table}\n")
    from tada_keras.atomic import write_text

    os.makedirs(FLAGS.out, exist_ok=True)
    write_text(os.path.join(FLAGS.out, "summary.md"), text)
    print("\n" + text)
    return 0


def run():
    """The console script's entry (``pyproject.toml``): flagfiles resolved, then absl."""
    from tada_keras import flagfiles

    flagfiles.run(main, interrupted=flagfiles.RESUMES)


if __name__ == "__main__":
    run()
