"""matplotlib figures of a run: the main task's panels (``Task.figure_rows``) and training
curves."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from tada_keras.atomic import atomic_path


def show_panel(ax, panel: dict):
    """Draws one ``Task.figure_rows`` panel; returns the image artist."""
    image = panel["image"]
    if "cmap" in panel:
        return ax.imshow(image, cmap=panel["cmap"], vmin=panel.get("vmin"),
                         vmax=panel.get("vmax"))
    return ax.imshow(image)


def task_figure(task, images, labels: dict, predictions, path, title=""):
    """Rows: input, then the task's panels (ground truth, prediction, error); one column
    per image. ``labels``: a batch at ground-truth resolution; ``predictions``: the task's
    postprocessed batch."""
    n = len(images)
    rows = [task.figure_rows(predictions[i], {k: v[i] for k, v in labels.items()})
            for i in range(n)]
    depth = 1 + max(len(r) for r in rows)
    fig, axes = plt.subplots(depth, n, figsize=(2.4 * n, 2.4 * depth), squeeze=False)
    bars = {}
    for i in range(n):
        axes[0, i].imshow(np.clip(images[i], 0, 255).astype(np.uint8))
        axes[0, i].set_title("input" if i == 0 else "", fontsize=9)
        for row, panel in enumerate(rows[i], start=1):
            artist = show_panel(axes[row, i], panel)
            if i == 0 or "colorbar" in panel:
                axes[row, i].set_title(panel["title"], fontsize=9)
            if "colorbar" in panel:
                bars[row] = (artist, panel["colorbar"])
        for ax in axes[:, i]:
            ax.axis("off")
    for row, (artist, label) in bars.items():
        fig.colorbar(artist, ax=axes[row, :].tolist(), shrink=0.8, label=label)
    fig.suptitle(title)
    _save(fig, path)


def training_curves(histories: dict, path):
    """One panel per phase with every logged loss group."""
    phases = [p for p in histories if histories[p]]
    if not phases:
        return
    fig, axes = plt.subplots(1, len(phases), figsize=(5 * len(phases), 3.5), squeeze=False)
    for ax, phase in zip(axes[0], phases):
        for key, values in histories[phase].items():
            if values and max(values) > 0:
                ax.plot(np.arange(1, len(values) + 1), values, label=key)
        ax.set_title(phase)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    _save(fig, path)


def _save(fig, path):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, bbox_inches="tight")
    plt.close(fig)


def write_run_figures(model, cfg, spec, histories, out_dir):
    from tada_keras.data import eval_dataset, load_split
    from tada_keras.inference import eval_split, predict_main

    name, split, manual, domain = eval_split(cfg, "target_test")
    ds = eval_dataset(load_split(name, split, cfg.data_dir, manual_dir=manual), spec, domain,
                      cfg.num_figures, cfg.eval_input_size, cfg.eval_scale)
    images, labels = next(ds.as_numpy_iterator())
    task_figure(model.main, images, labels, predict_main(model, images),
                os.path.join(out_dir, "target_test_examples.png"),
                f"{cfg.method} on {cfg.target_dataset}:{cfg.target_test_split}")
    training_curves(histories, os.path.join(out_dir, "training_curves.png"))
