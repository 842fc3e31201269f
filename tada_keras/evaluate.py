"""Evaluate a trained run on its target test split (pooled angular error).

    python -m tada_keras.evaluate --model_dir=runs/demo/headfreeze [--out=results.json]

Scores the run's target test split and source val split (the main task's pooled metrics,
the anchor's mIoU) and prints them as JSON on stdout (messages on stderr). The datasets
must be the ones the run recorded at training (name, config, version, examples per split);
a changed one is refused, or scored with ``--allow_changed_data`` (the JSON then lists the
changes under ``data_changed``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

from absl import flags

flags.DEFINE_string("model_dir", None, "A directory written by tada_keras.train.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir (default: the run's).")
flags.DEFINE_bool("allow_changed_data", False, "Score the run even if its datasets changed "
                  "since training (other examples or another version than it recorded); "
                  "the output then lists the changes under data_changed.")
flags.DEFINE_string("out", None, "Write the results as JSON to this file (its folder is "
                    "created; default: print only).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    from tada_keras.atomic import check_writable, write_text
    from tada_keras.inference import (
        data_spec,
        dataset_changes,
        dataset_identity,
        evaluate_model,
        load_run,
        recorded_identity,
    )

    try:
        if FLAGS.out:
            check_writable(FLAGS.out, "out", kind="file")  # before the work, not after it
        cfg, model = load_run(FLAGS.model_dir)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if FLAGS.data_dir:
        cfg.data_dir = FLAGS.data_dir
    recorded = recorded_identity(FLAGS.model_dir)
    changes = []
    if recorded is None:
        print("warning: this run did not record its datasets (trained before that was "
              "done), so they cannot be checked to be the ones it was trained on",
              file=sys.stderr)
    else:
        try:
            # A changed dataset is prepared here; TFDS's lines must not join the JSON.
            with contextlib.redirect_stdout(sys.stderr):
                current = dataset_identity(cfg)
            changes = dataset_changes(recorded, current)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        if changes and not FLAGS.allow_changed_data:
            print(f"error: the data changed since --model_dir={FLAGS.model_dir} was trained "
                  f"({'; '.join(changes)}): its scores would not be comparable with the "
                  "training's; pass --allow_changed_data to score it anyway",
                  file=sys.stderr)
            return 2
        if changes:
            print(f"warning: the data changed since training ({'; '.join(changes)}); "
                  "scoring it anyway (--allow_changed_data)", file=sys.stderr)
    # stdout carries the JSON: messages go to stderr, the progress bar only to a terminal.
    results = evaluate_model(model, cfg, data_spec(cfg, model),
                             log=lambda message: print(message, file=sys.stderr),
                             progress=sys.stdout.isatty())
    if changes:
        results["data_changed"] = changes
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
