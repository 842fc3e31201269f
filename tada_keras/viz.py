"""matplotlib figures: normal maps, error maps, training curves."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from tada_keras import conventions as C
from tada_keras import metrics as M


def normals_to_rgb(normals, mask=None):
    """Camera-frame normals -> RGB uint8 ((n + 1) / 2, invalid pixels black)."""
    rgb = np.clip((np.asarray(normals, np.float32) + 1.0) * 127.5, 0, 255).astype(np.uint8)
    if mask is not None:
        rgb[~np.asarray(mask, bool)] = 0
    return rgb


def angular_error_map(pred, gt, mask):
    pred = M.resize_normals(pred[None], gt.shape[0], gt.shape[1])[0]
    cos = np.clip(np.sum(pred * gt, -1) / np.maximum(np.linalg.norm(gt, axis=-1), 1e-6), -1, 1)
    err = np.degrees(np.arccos(cos))
    return np.where(mask, err, np.nan)


def qualitative_figure(images, gts, masks, preds, path, title=""):
    """Rows: input, ground truth, prediction, angular error (degrees)."""
    n = len(images)
    fig, axes = plt.subplots(4, n, figsize=(2.4 * n, 9.6), squeeze=False)
    for i in range(n):
        err = angular_error_map(preds[i], gts[i], masks[i])
        cells = [(np.clip(images[i], 0, 255).astype(np.uint8), "input"),
                 (normals_to_rgb(gts[i], masks[i]), "ground truth"),
                 (normals_to_rgb(M.resize_normals(preds[i][None], *gts[i].shape[:2])[0]),
                  "prediction")]
        for row, (img, label) in enumerate(cells):
            axes[row, i].imshow(img)
            axes[row, i].set_title(label if i == 0 else "", fontsize=9)
        im = axes[3, i].imshow(err, cmap="inferno", vmin=0, vmax=60)
        axes[3, i].set_title(f"error, mean {np.nanmean(err):.1f}°", fontsize=9)
        for ax in axes[:, i]:
            ax.axis("off")
    fig.colorbar(im, ax=axes[3, :].tolist(), shrink=0.8, label="degrees")
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
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=90, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def write_run_figures(model, cfg, spec, histories, out_dir):
    from tada_keras.data import eval_dataset, load_split
    from tada_keras.run import eval_split, predict_normals

    name, split, manual, domain = eval_split(cfg, "target_test")
    ds = eval_dataset(load_split(name, split, cfg.data_dir, manual_dir=manual), spec, domain,
                      cfg.num_figures, cfg.eval_input_size, cfg.eval_scale)
    images, labels = next(ds.as_numpy_iterator())
    preds = predict_normals(model, images)
    qualitative_figure(images, labels[C.NORMALS], labels[C.NORMALS_MASK], preds,
                       os.path.join(out_dir, "target_test_examples.png"),
                       f"{cfg.method} on {cfg.target_dataset}:{cfg.target_test_split}")
    training_curves(histories, os.path.join(out_dir, "training_curves.png"))
