"""Discriminator monitor: per-domain accuracy and adversarial losses while training.

The paper (§4.4) tunes adversarial training by the discriminator: "the discriminator
accuracy being very frequently lower than 55 % ... [is a] good indicator of successful
adaptation". ``DiscriminatorMonitor`` logs, every ``every`` steps, the means over those
steps of the per-domain patch accuracies, the discriminator and adversarial losses and
λ, to a CSV file (one row per logged step; figures are drawn from it), TensorBoard and
the console. ``summarize`` turns the CSV into the ``"discriminator"`` entry of
``metrics.json``.
"""

from __future__ import annotations

import csv
import itertools
import math
import os

import keras

from tada_keras.adaptation.adversarial import MONITOR_KEYS

CHANCE_THRESHOLD = 0.55
COLUMNS = ("step", "phase", "window", "da_lambda", "disc_loss", "adv_loss",
           "accuracy_source", "accuracy_target", "accuracy")


class DiscriminatorMonitor(keras.callbacks.Callback):
    """Logs window means of the discriminator's per-step values every ``every`` steps.

    Reads the raw per-step values that ``TadaModel.compute_metrics`` puts in the batch logs
    (``disc_acc_source``, ``disc_acc_target``, ``disc_loss``, ``adv_loss``,
    ``da_lambda``). ``accuracy`` is the domain-balanced accuracy (mean of the two).

    Args:
        csv_path: CSV file, appended to (a resumed run re-logs the steps it repeats;
            ``summarize`` keeps the last row of each step).
        log_dir: TensorBoard directory, or None.
        every: logging period in steps.
        phase: phase name written to each row.
        first_step: global steps done before this phase (HeadFreeze: phase-1 steps).
        steps_per_epoch: to turn (epoch, batch) into a global step.
        log: console printer, or None.
    """

    def __init__(self, csv_path: str, log_dir: str | None = None, every: int = 10,
                 phase: str = "", first_step: int = 0, steps_per_epoch: int = 1,
                 log=print):
        super().__init__()
        self.csv_path = csv_path
        self.log_dir = log_dir
        self.every = max(int(every), 1)
        self.phase = phase
        self.first_step = int(first_step)
        self.steps_per_epoch = int(steps_per_epoch)
        self.log = log
        self._epoch = 0
        self._window = []
        self._writer = None
        self._last_step = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        if not all(k in logs for k in MONITOR_KEYS):
            return
        step = self.first_step + self._epoch * self.steps_per_epoch + batch + 1
        self._window.append({k: float(logs[k]) for k in MONITOR_KEYS})
        self._last_step = step
        if step % self.every == 0:
            self._flush(step)

    def on_train_end(self, logs=None):
        if self._window and self._last_step is not None:
            self._flush(self._last_step)  # the phase's last, shorter window
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _flush(self, step):
        n = len(self._window)
        mean = {k: sum(w[k] for w in self._window) / n for k in MONITOR_KEYS}
        self._window = []
        row = {
            "step": step, "phase": self.phase, "window": n,
            "da_lambda": mean["da_lambda"], "disc_loss": mean["disc_loss"],
            "adv_loss": mean["adv_loss"], "accuracy_source": mean["disc_acc_source"],
            "accuracy_target": mean["disc_acc_target"],
            "accuracy": 0.5 * (mean["disc_acc_source"] + mean["disc_acc_target"]),
        }
        new = not os.path.exists(self.csv_path) or os.path.getsize(self.csv_path) == 0
        with open(self.csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.log_dir:
            self._tensorboard(row)
        if self.log:
            self.log(f"[discriminator] step {step}: accuracy source {row['accuracy_source']:.3f}"
                     f" target {row['accuracy_target']:.3f} (balanced {row['accuracy']:.3f})"
                     f"  disc_loss {row['disc_loss']:.4f}  adv_loss {row['adv_loss']:.4f}"
                     f"  lambda {row['da_lambda']:.4g}")

    def _tensorboard(self, row):
        import tensorflow as tf  # tf.summary works whatever the Keras backend

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for key in COLUMNS[3:]:
                tf.summary.scalar(f"discriminator/{key}", row[key], step=row["step"])
        self._writer.flush()


def read_rows(csv_path: str) -> list[dict]:
    """Rows of the monitor CSV, one per step (the last one written wins), by step."""
    if not os.path.exists(csv_path):
        return []
    rows = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            parsed = {k: (v if k == "phase" else float(v)) for k, v in row.items()}
            parsed["step"] = int(parsed["step"])
            rows[parsed["step"]] = parsed
    return [rows[s] for s in sorted(rows)]


def _stats(values):
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return None
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values),
            "last": values[-1]}


def summarize(csv_path: str, warmup_steps: int = 0) -> dict:
    """The ``"discriminator"`` entry of metrics.json.

    Statistics are over the logged steps after the warm-up (when the network's
    adversarial loss is on). ``fraction_below_55`` is the fraction of those logged steps
    whose domain-balanced accuracy is below 55 % (the paper's sign of adaptation); None
    if no step was logged after the warm-up.
    """
    rows = read_rows(csv_path)
    active = [r for r in rows if r["step"] > warmup_steps]
    below = [r["accuracy"] < CHANCE_THRESHOLD for r in active]
    return {
        "csv": os.path.basename(csv_path),
        "logged_steps": len(rows),
        "adversarial_logged_steps": len(active),
        "fraction_below_55": (sum(below) / len(below)) if below else None,
        "accuracy": {
            "source": _stats([r["accuracy_source"] for r in active]),
            "target": _stats([r["accuracy_target"] for r in active]),
            "balanced": _stats([r["accuracy"] for r in active]),
        },
        "disc_loss": _stats([r["disc_loss"] for r in active]),
        "adv_loss": _stats([r["adv_loss"] for r in active]),
    }


def plot_monitor(csv_path: str, path: str, warmup_steps: int = 0, title: str = "") -> None:
    """Per-domain and balanced discriminator accuracy (and λ) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_rows(csv_path)
    if not rows:
        return
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    ax.plot(steps, [r["accuracy_source"] for r in rows], lw=1, label="source")
    ax.plot(steps, [r["accuracy_target"] for r in rows], lw=1, label="target")
    ax.plot(steps, [r["accuracy"] for r in rows], lw=2, color="k", label="balanced")
    ax.axhline(CHANCE_THRESHOLD, color="r", ls="--", lw=1, label="55 %")
    if warmup_steps:
        ax.axvspan(0, warmup_steps, color="0.9", label="warm-up")
    # Phase boundaries (HeadFreeze: phase 2 starts here), from the CSV's phase column.
    for before, after in itertools.pairwise(rows):
        if after["phase"] != before["phase"]:
            ax.axvline(before["step"], color="0.4", lw=1, ls="-.",
                       label=f"{before['phase']} | {after['phase']}")
            ax.text(before["step"], 1.01, f" {after['phase']} ", fontsize=8, ha="left",
                    va="bottom", transform=ax.get_xaxis_transform())
    ax.set_ylim(0, 1)
    ax.set_xlabel("step")
    ax.set_ylabel("discriminator accuracy")
    twin = ax.twinx()
    twin.plot(steps, [r["da_lambda"] for r in rows], color="tab:green", lw=1, ls=":",
              label="λ (right axis)")
    twin.set_ylabel("gradient-reversal λ", color="tab:green")
    twin.tick_params(axis="y", colors="tab:green")
    lines, labels = ax.get_legend_handles_labels()
    more, more_labels = twin.get_legend_handles_labels()
    # Below the axes, so it never hides the curves.
    ax.legend(lines + more, labels + more_labels, loc="upper center", fontsize=8,
              ncol=4, bbox_to_anchor=(0.5, -0.16), frameon=False)
    ax.set_title(title or "discriminator monitor", pad=14)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")  # keeps the right axis label
    plt.close(fig)
