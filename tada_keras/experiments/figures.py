"""The paper's figures for a table's runs (PNG + PDF).

* ``task_grid`` (Figure 4): input, ground truth, each row's prediction and its error
  map (the main task's figure rows), on the first target-test images (a fixed set).
* ``curves_figure``: training losses of every row against training steps, phases
  concatenated (dotted line where a row's phase 2 starts), mean over seeds.
* ``pca_figure`` (Figure 3): encoder features — the output of the freeze point, where
  HeadFreeze's head starts — at anchor locations, projected on their top-2 principal
  components fitted on source and target together, per row and per location. Locations
  are segmentation classes (one point per image and class: the mean feature over that
  class's pixels, its centroid) or keypoints (the feature at the keypoint). As in the
  paper, PCA is fitted per location: features of different locations encode different
  things and would otherwise dominate the components.

The math (``pca_2d``, ``class_centroids``, ``keypoint_features``, ``domain_separation``)
is pure numpy; the rest loads models and data and draws.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from tada_keras.atomic import atomic_path
from tada_keras.tasks.keypoints import keypoint_features  # noqa: F401  (re-exported)
from tada_keras.tasks.segmentation import class_centroids  # noqa: F401  (re-exported)
from tada_keras.viz import show_panel

SOURCE_COLOUR, TARGET_COLOUR = "tab:blue", "tab:orange"


# --- pure math ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Projection:
    """``points`` (N, k) = (features - mean) @ components.T; ``explained`` is the fraction
    of the total variance along each component (descending)."""

    points: np.ndarray
    components: np.ndarray
    explained: np.ndarray
    mean: np.ndarray


def pca_2d(features: np.ndarray, n_components: int = 2) -> Projection:
    """Top principal components of ``features`` (N, D) by SVD of the centred data.

    Each component's sign is fixed (largest-magnitude loading positive) so plots of
    re-runs do not flip at random.
    """
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"pca_2d needs (N >= 2, D) features, got shape {x.shape}")
    mean = x.mean(0)
    centred = x - mean
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(n_components, vt.shape[0])
    components = vt[:k]
    signs = np.sign(components[np.arange(k), np.abs(components).argmax(1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    total = float((s ** 2).sum())
    explained = (s[:k] ** 2) / total if total > 0 else np.zeros(k)
    if k < n_components:  # fewer samples/dims than components: pad with zeros
        components = np.vstack([components, np.zeros((n_components - k, x.shape[1]))])
        explained = np.concatenate([explained, np.zeros(n_components - k)])
    return Projection(centred @ components.T, components, explained, mean)


def domain_separation(source: np.ndarray, target: np.ndarray) -> float:
    """Distance between the domains' mean features in units of their within-domain
    spread: ||mu_s - mu_t|| / sqrt((tr Cov_s + tr Cov_t) / 2). About 0 when the domains
    overlap, large when they occupy different regions (the paper's MTL(+tgt) case)."""
    s, t = np.asarray(source, np.float64), np.asarray(target, np.float64)
    if len(s) < 2 or len(t) < 2:
        return math.nan
    spread = (s.var(0, ddof=1).sum() + t.var(0, ddof=1).sum()) / 2
    gap = np.linalg.norm(s.mean(0) - t.mean(0))
    return float(gap / np.sqrt(spread)) if spread > 0 else math.inf


# --- drawing -----------------------------------------------------------------------------
def save_figure(fig, stem: str) -> list[str]:
    """Writes ``stem``.png and ``stem``.pdf (atomically); returns their paths."""
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = f"{stem}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def task_grid(task, images, labels: dict, preds: dict[str, np.ndarray], stem: str,
              title: str = "") -> list[str]:
    """Per image two rows: [input, ground truth, each method's prediction] and below each
    method's error map (the task's ``figure_rows``: ground truth, prediction, error)."""
    n, k = len(images), len(preds)
    fig, axes = plt.subplots(2 * n, 2 + k, figsize=(1.9 * (2 + k), 3.8 * n), squeeze=False)
    bar = None
    for i in range(n):
        top, bottom = axes[2 * i], axes[2 * i + 1]
        example = {key: v[i] for key, v in labels.items()}
        top[0].imshow(np.clip(images[i], 0, 255).astype(np.uint8))
        if i == 0:
            top[0].set_title("input", fontsize=9)
        for j, (label, p) in enumerate(preds.items(), start=2):
            truth, prediction, error = task.figure_rows(p[i], example)[:3]
            if j == 2:
                show_panel(top[1], truth)
                if i == 0:
                    top[1].set_title(truth["title"], fontsize=9)
            show_panel(top[j], prediction)
            if i == 0:
                top[j].set_title(label, fontsize=9)
            bar = (show_panel(bottom[j], error), error.get("colorbar", ""))
            bottom[j].set_title(error["title"], fontsize=8)
        for ax in (*top, *bottom):
            ax.axis("off")
    if bar is not None:
        fig.colorbar(bar[0], ax=axes.ravel().tolist(), shrink=0.4, label=f"error ({bar[1]})")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, stem)


@dataclasses.dataclass(frozen=True)
class PhaseCurve:
    """One phase's logged losses; ``steps`` are global training steps at epoch ends."""

    phase: str
    start: int
    steps: np.ndarray
    values: dict[str, np.ndarray]


def read_curves(model_dir: str) -> list[PhaseCurve]:
    """A finished run's per-phase ``history.csv`` files, on one training-step axis."""
    from tada_keras.config import method_of_config

    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    method = method_of_config(cfg)
    curves, start = [], 0
    for phase in method.phases:
        path = os.path.join(model_dir, f"phase_{phase.name}", "history.csv")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            rows = list(csv.DictReader(f))
        if not rows:
            continue
        keys = [k for k in rows[0] if k != "epoch" and not k.startswith("val_")]
        values = {k: np.array([_float(r[k]) for r in rows]) for k in keys}
        steps = start + cfg["steps_per_epoch"] * (np.arange(len(rows)) + 1)
        curves.append(PhaseCurve(phase.name, start, steps, values))
        start = int(steps[-1])
    return curves


def _float(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def joined_curve(run: list[PhaseCurve], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``key`` over all phases of a run; nan where a phase lacks it."""
    if not run:
        return np.zeros(0), np.zeros(0)
    steps = np.concatenate([p.steps for p in run])
    values = np.concatenate([p.values.get(key, np.full(len(p.steps), np.nan)) for p in run])
    return steps, values


def curves_figure(curves: dict[str, list[list[PhaseCurve]]], stem: str,
                  title: str = "") -> list[str]:
    """One panel per logged loss; a line per row (mean over its seeds), phases joined."""
    keys = []
    for seeds in curves.values():
        for run in seeds:
            for phase in run:
                for k, v in phase.values.items():
                    if k not in keys and np.isfinite(v).any() and np.nanmax(np.abs(v)) > 0:
                        keys.append(k)
    if not keys:
        return []
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, seeds) in enumerate(curves.items()):
        colour = colours[i % len(colours)]
        if not seeds or not seeds[0]:
            continue
        for ax, key in zip(axes[0], keys):
            steps, _ = joined_curve(seeds[0], key)
            stack = [v for s, v in (joined_curve(run, key) for run in seeds)
                     if np.array_equal(s, steps)]
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-nan steps stay nan
                mean = np.nanmean(np.stack(stack), 0)
            if np.isfinite(mean).any():
                ax.plot(steps, mean, color=colour, label=label,
                        marker="." if len(steps) < 20 else None)
            for phase in seeds[0][1:]:
                ax.axvline(phase.start, color=colour, linestyle=":", linewidth=1)
    for ax, key in zip(axes[0], keys):
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("training step")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title + "  (dotted: start of phase 2)", fontsize=10)
    return save_figure(fig, stem)


def pca_figure(panels: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]],
               locations: list[int], location_names: dict[int, str], stem: str,
               title: str = "") -> list[str]:
    """Rows: anchor locations; columns: table rows. Each panel: PCA of that row's features
    at that location, source (blue) vs target (orange)."""
    labels = list(panels)
    fig, axes = plt.subplots(len(locations), len(labels),
                             figsize=(3.0 * len(labels), 3.0 * len(locations)), squeeze=False)
    for c, label in enumerate(labels):
        for r, loc in enumerate(locations):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            src, tgt = panels[label].get(loc, (np.zeros((0, 1)), np.zeros((0, 1))))
            if r == 0:
                ax.set_title(label, fontsize=9)
            if c == 0:
                ax.set_ylabel(location_names.get(loc, str(loc)), fontsize=9)
            if len(src) + len(tgt) < 3:
                ax.text(0.5, 0.5, "too few points", ha="center", va="center",
                        transform=ax.transAxes, fontsize=8)
                continue
            proj = pca_2d(np.concatenate([src, tgt]))
            ax.scatter(*proj.points[:len(src)].T, s=8, alpha=0.6, color=SOURCE_COLOUR,
                       label="source")
            ax.scatter(*proj.points[len(src):].T, s=8, alpha=0.6, color=TARGET_COLOUR,
                       label="target")
            ax.set_xlabel(f"PC1 {proj.explained[0]:.0%} · PC2 {proj.explained[1]:.0%} · "
                          f"sep {domain_separation(src, tgt):.2f}", fontsize=7)
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(title + "\nencoder features at the freeze point; sep = ‖μs − μt‖ / "
                 "within-domain spread", fontsize=10)
    return save_figure(fig, stem)


# --- models and data ---------------------------------------------------------------------
def encoder_features(model, images: np.ndarray) -> np.ndarray:
    """Freeze-point features (N, h, w, D) of images of any size (zero-padded to a multiple
    of 32 like ``predict_padded``; the padding's cells are cropped)."""
    import keras

    from tada_keras.inference import pad_to_stride

    h, w = np.shape(images)[1:3]
    padded = pad_to_stride(images)
    # A direct call, not predict(): predict retraces for every new batch shape.
    out = model.get_layer("encoder")(padded, training=False)
    feats = keras.ops.convert_to_numpy(out[0] if isinstance(out, (list, tuple)) else out)
    stride = padded.shape[1] // feats.shape[1]
    return feats[:, :math.ceil(h / stride), :math.ceil(w / stride)]


def load_target_examples(cfg, spec, count: int):
    """The first ``count`` target-test images (fixed: the split is read in order)."""
    from tada_keras.data import eval_dataset, load_split
    from tada_keras.inference import eval_split

    name, split, manual, domain = eval_split(cfg, "target_test")
    ds = eval_dataset(load_split(name, split, cfg.data_dir, manual_dir=manual), spec, domain,
                      count, cfg.eval_input_size, cfg.eval_scale)
    return next(ds.as_numpy_iterator())


def anchor_feature_sets(model, cfg, spec, which: str,
                        max_images: int) -> dict[int, np.ndarray]:
    """Location -> (n, D) features of up to ``max_images`` images of split ``which``
    (``"source_val"`` or ``"target_test"``)."""
    from tada_keras.data import eval_dataset, load_split
    from tada_keras.inference import eval_split

    name, split, manual, domain = eval_split(cfg, which)
    ds = eval_dataset(load_split(name, split, cfg.data_dir, manual_dir=manual), spec, domain,
                      cfg.eval_batch_size, cfg.eval_input_size, cfg.eval_scale)
    found: dict[int, list[np.ndarray]] = {}
    seen = 0
    for images, labels in ds.as_numpy_iterator():
        feats = encoder_features(model, images[:max_images - seen])
        for i, f in enumerate(feats):
            per_loc = model.anchor.feature_locations(f, {k: v[i] for k, v in
                                                         labels.items()})
            for loc, v in per_loc.items():
                found.setdefault(loc, []).append(v)
        seen += len(feats)
        if seen >= max_images:
            break
    return {k: np.stack(v) for k, v in found.items()}


def location_names(cfg, anchor=None) -> dict[int, str]:
    from tada_keras.data import prepare_builder
    from tada_keras.tasks import get_task

    info = prepare_builder(cfg.target_dataset, cfg.data_dir, cfg.target_manual_dir).info
    return (anchor or get_task(cfg.anchor_task)).location_names(info)


def pick_locations(panels: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]],
                   count: int) -> list[int]:
    """The ``count`` locations seen in the most images of the scarcer domain."""
    first = next(iter(panels.values()), {})
    score = {loc: min(len(s), len(t)) for loc, (s, t) in first.items()}
    return sorted(score, key=lambda k: (-score[k], k))[:count]


def write_table_figures(model_dirs: dict[str, list[str]], out_dir: str, title: str, *,
                        num_images: int = 4, pca_images: int = 64, pca_locations: int = 3,
                        log=print) -> list[str]:
    """All figures of a table. ``model_dirs``: row label -> finished run dirs (seeds);
    the first seed's model stands for the row in the qualitative and PCA figures."""
    from tada_keras.inference import data_spec, load_run, predict_main

    written = []
    curves = {label: [read_curves(d) for d in dirs] for label, dirs in model_dirs.items()
              if dirs}
    written += curves_figure(curves, os.path.join(out_dir, "training_curves"), title)

    preds, panels, example, names = {}, {}, None, {}
    for label, dirs in model_dirs.items():
        if not dirs:
            continue
        cfg, model = load_run(dirs[0])
        spec = data_spec(cfg, model)
        if example is None:
            example = load_target_examples(cfg, spec, num_images)
            names = location_names(cfg, model.anchor)
            main = model.main
        preds[label] = predict_main(model, example[0])
        src = anchor_feature_sets(model, cfg, spec, "source_val", pca_images)
        tgt = anchor_feature_sets(model, cfg, spec, "target_test", pca_images)
        dim = next(iter(src.values()), next(iter(tgt.values()), np.zeros((0, 1)))).shape[-1]
        empty = np.zeros((0, dim))
        panels[label] = {loc: (src.get(loc, empty), tgt.get(loc, empty))
                         for loc in set(src) | set(tgt)}
        del model
    if example is None:
        log("figures: no finished run yet")
        return written
    images, labels = example
    written += task_grid(main, images, labels, preds, os.path.join(out_dir, "qualitative"),
                         title)
    locations = pick_locations(panels, pca_locations)
    if locations:
        written += pca_figure(panels, locations, names, os.path.join(out_dir, "pca_features"),
                              title)
    return written
