"""Evaluate a trained run on its target test split (pooled angular error).

    python -m tada_keras.evaluate --model_dir=runs/demo/headfreeze [--out=results.json]

Scores the run's target test split and source val split (the main task's pooled metrics,
the anchor's mIoU) and prints them as JSON on stdout (messages on stderr).
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags

flags.DEFINE_string("model_dir", None, "A directory written by tada_keras.train.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir (default: the run's).")
flags.DEFINE_string("out", None, "Write the results as JSON to this file (its folder is "
                    "created; default: print only).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    from tada_keras.atomic import check_writable, write_text
    from tada_keras.inference import data_spec, evaluate_model, load_run

    try:
        if FLAGS.out:
            check_writable(FLAGS.out, "out", kind="file")  # before the work, not after it
        cfg, model = load_run(FLAGS.model_dir)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if FLAGS.data_dir:
        cfg.data_dir = FLAGS.data_dir
    # stdout carries the JSON: messages go to stderr, the progress bar only to a terminal.
    results = evaluate_model(model, cfg, data_spec(cfg, model),
                             log=lambda message: print(message, file=sys.stderr),
                             progress=sys.stdout.isatty())
    text = json.dumps(results, indent=2, sort_keys=True)
    print(text)
    if FLAGS.out:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
            write_text(FLAGS.out, text)
        except OSError as err:  # checked before the work: only if that changed since
            print(f"error: --out={FLAGS.out}: {err.strerror or err} (the results are "
                  "printed above)", file=sys.stderr)
            return 1
    return 0


def run():
    """The console script's entry (``pyproject.toml``): flagfiles resolved, then absl."""
    from tada_keras import flagfiles

    flagfiles.run(main)


if __name__ == "__main__":
    run()
