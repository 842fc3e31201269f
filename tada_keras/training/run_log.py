"""A run's log file and TensorBoard summaries with one global step across phases.

* ``RunLog``: every message of a run (``log(...)`` of the run, the phase runner, the
  evaluation, the discriminator monitor) goes to the console as before and, timestamped,
  to ``<model_dir>/run.log`` through Python's ``logging`` (which absl's logging is built
  on; absl's own warnings, e.g. TensorFlow Datasets', land in the same file while the run
  is open). A resumed run appends to it. Epoch ends are logged to the file only (the
  console has Keras's progress bar).
* ``GlobalStepTensorBoard``: Keras's ``TensorBoard`` callback restarts its step at every
  ``fit``, i.e. at every phase; this one writes every epoch's logs to one event folder
  (``logs/train``) at the run's global step (steps of the earlier phases + steps done in
  this one), with the phase's number as a scalar, so phase 2 continues phase 1's curves.
* ``write_figure_images``: the run's PNG figures as TensorBoard image summaries.

TensorBoard files are written with ``tf.summary`` whatever the Keras backend (TensorFlow is
a core dependency; Keras's own TensorBoard callback does the same).
"""

from __future__ import annotations

import logging
import os

import keras

LOG_FILE = "run.log"
_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class RunLog:
    """``log(message)``: prints (``echo``) and appends to ``<model_dir>/run.log``."""

    def __init__(self, model_dir: str, echo=print):
        self.path = os.path.join(model_dir, LOG_FILE)
        self.echo = echo
        self._handler = logging.FileHandler(self.path, mode="a", encoding="utf-8")
        self._handler.setFormatter(logging.Formatter(_FORMAT))
        self.logger = logging.getLogger(f"tada_keras.run.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self._handler)
        self._absl = logging.getLogger("absl")
        self._absl.addHandler(self._handler)

    def __call__(self, message: str) -> None:
        if self.echo is not None:
            self.echo(message)
        self.file(message)

    def file(self, message: str) -> None:
        """To the log file only."""
        text = str(message)
        level = logging.WARNING if text.lower().startswith(("warning", "error")) else \
            logging.INFO
        self.logger.log(level, text)

    def close(self) -> None:
        self._absl.removeHandler(self._handler)
        self.logger.removeHandler(self._handler)
        self._handler.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def epoch_callback(self, phase: str, epochs: int) -> keras.callbacks.Callback:
        return _EpochLog(self, phase, epochs)


class _EpochLog(keras.callbacks.Callback):
    def __init__(self, run_log: RunLog, phase: str, epochs: int):
        super().__init__()
        self.run_log, self.phase, self.epochs = run_log, phase, epochs

    def on_epoch_end(self, epoch, logs=None):
        values = " ".join(f"{k}={float(v):.5g}" for k, v in sorted((logs or {}).items())
                          if _is_number(v))
        self.run_log.file(f"[{self.phase}] epoch {epoch + 1}/{self.epochs}: {values}")


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


class GlobalStepTensorBoard(keras.callbacks.Callback):
    """Epoch logs as TensorBoard scalars at the run's global step (see the module doc).

    Args:
        log_dir: the event folder shared by every phase of the run.
        first_step: global steps done before this phase.
        steps: this phase's steps; steps_per_epoch: as given to ``fit``.
        phase_index: 1 for the first phase, 2 for HeadFreeze's second, ...
    """

    def __init__(self, log_dir: str, first_step: int, steps: int, steps_per_epoch: int,
                 phase_index: int):
        super().__init__()
        self.log_dir, self.first_step, self.steps = log_dir, int(first_step), int(steps)
        self.steps_per_epoch, self.phase_index = int(steps_per_epoch), int(phase_index)
        self._writer = None

    def global_step(self, epoch: int) -> int:
        return self.first_step + min((epoch + 1) * self.steps_per_epoch, self.steps)

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        step = self.global_step(epoch)
        with self._writer.as_default():
            tf.summary.scalar("phase", self.phase_index, step=step)
            for key, value in (logs or {}).items():
                if _is_number(value):
                    tf.summary.scalar(key, float(value), step=step)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def write_figure_images(log_dir: str, pngs: list[str], step: int) -> None:
    """Each PNG as an image summary named after its file, at ``step``."""
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        for path in pngs:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            name = os.path.splitext(os.path.basename(path))[0]
            tf.summary.image(f"figures/{name}", pixels[None], step=step)
    writer.close()
