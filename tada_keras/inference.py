"""Evaluation and inference of a trained model: the data spec, padded prediction, the
main task's postprocessed prediction, pooled evaluation of a split, loading a finished run.

Used by ``run`` (the end of training), ``evaluate``, ``predict``, the figures and the
harness; it never trains.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

import tada_keras
from tada_keras import conventions as C
from tada_keras import metrics as M
from tada_keras.config import RunConfig


def data_spec(cfg: RunConfig, model):
    from tada_keras.data import DataSpec

    # The model's configured tasks read and make their labels (Task.read_dense /
    # make_labels), never default-configured ones of the same name.
    return DataSpec(main_task=model.main, anchor_task=model.anchor,
                    crop_size=cfg.crop_size, image_size=cfg.image_size,
                    augment=cfg.augment)


def predict_main(model, images, size=None):
    """The main task's prediction of a batch of images of any size (its ``postprocess``:
    unit normals, depth in metres), at 1/2 input size or resized to ``size`` = (H, W)."""
    return model.main.postprocess(predict_padded(model, images), size)


NETWORK_STRIDE = 32  # the encoder's total down-sampling: inputs are a multiple of it


def pad_to_stride(images, stride: int = NETWORK_STRIDE) -> np.ndarray:
    """(N, H, W, C) images zero-padded at the bottom and right to a multiple of
    ``stride`` (the one padding rule of prediction and feature extraction)."""
    images = np.asarray(images, np.float32)
    h, w = images.shape[1:3]
    ph, pw = -h % stride, -w % stride
    return np.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0))) if ph or pw else images


def predict_padded(model, images):
    """Predicts on images of any size: zero-pads to a multiple of 32, crops the outputs.

    One batch goes through Keras's compiled predict function directly
    (``predict_on_batch``): the same function and the same outputs as ``model.predict``,
    without its per-call dataset and callbacks (2.4x less time per batch of 8 at the
    demo's size: ``benchmarks/eval_speed.py``)."""
    h, w = np.shape(images)[1:3]
    out = model.predict_on_batch(pad_to_stride(images))
    oh, ow = (h + 1) // 2, (w + 1) // 2
    return {k: (np.asarray(v)[:, :oh, :ow] if np.ndim(v) == 4 else np.asarray(v))
            for k, v in out.items()}


def eval_split(cfg: RunConfig, which: str):
    """(dataset name, split, manual_dir, domain) of 'target_test', 'source_val', ..."""
    domain, role = which.split("_")
    name = cfg.target_dataset if domain == "target" else cfg.source_dataset
    manual = cfg.target_manual_dir if domain == "target" else cfg.source_manual_dir
    split = getattr(cfg, f"{domain}_{role}_split")
    return name, split, manual, (C.DOMAIN_TARGET if domain == "target" else C.DOMAIN_SOURCE)


def evaluate_model(model, cfg: RunConfig, spec, log=print, progress: bool | None = None) -> dict:
    """Pooled main-task stats on target test and source val (+ anchor mIoU), computed at
    the ground truth's original resolution.

    ``progress``: a Keras progress bar per split (batches done / total); None = a live bar
    on a terminal, one line per split when the output is a file or a pipe.
    """
    import sys

    import keras

    from tada_keras.data import eval_dataset, load_split

    if progress is None:
        progress = True
        mode = 1 if sys.stdout.isatty() else 2
    else:
        mode = 1

    results = {}
    for key in ("target_test", "source_val"):
        name, split, manual, domain = eval_split(cfg, key)
        ds = eval_dataset(load_split(name, split, cfg.data_dir, manual_dir=manual), spec,
                          domain, cfg.eval_batch_size, cfg.eval_input_size, cfg.eval_scale)
        main, anchor = model.main.evaluator(), (model.anchor.evaluator()
                                                 if model.anchor is not None else None)
        total = int(ds.cardinality())
        bar = keras.utils.Progbar(total if total >= 0 else None, unit_name="batch",
                                  verbose=mode) if progress else None
        if bar is not None:
            log(f"evaluating {key} ({name}:{split})")
        for done, (images, labels) in enumerate(ds.as_numpy_iterator(), 1):
            out = predict_padded(model, images)
            main.update(out, labels)
            if anchor is not None:
                anchor.update(out, labels)
            if bar is not None:
                bar.update(done, finalize=done == total)
        results[key] = main.result()
        if results[key].get(M.NONFINITE_KEY, 0) > 0:
            log(f"warning: {key}: {100 * results[key][M.NONFINITE_KEY]:.2f} % of the valid "
                f"pixels have non-finite predictions; each counts as the worst error")
        for name, value in (anchor.result() if anchor is not None else {}).items():
            results[f"{key}_anchor_{name}"] = value
        log(f"{key}: " + " ".join(f"{k}={v:.4f}" for k, v in results[key].items()))
    return results


def checkpoint_scorer(cfg: RunConfig, spec, model):
    """``model -> scores`` of a checkpoint for ``--select`` (``training/selection.py``):
    the main task's metrics on source val (``val_source_main_<key>``) and the anchor's on
    target val (``val_target_anchor_<key>``).

    Target main-task labels are never read here: the target-val examples lose every
    feature only the main task reads before the pipeline sees them, and they are prepared
    for the anchor task alone.
    """
    import dataclasses as dc

    from tada_keras.data import eval_dataset, load_split
    from tada_keras.training.selection import ANCHOR_PREFIX, SOURCE_PREFIX

    def split(key, hidden=(), task_spec=spec):
        name, split_name, manual, domain = eval_split(cfg, key)
        ds = load_split(name, split_name, cfg.data_dir, manual_dir=manual)
        if hidden:
            keep = set(ds.element_spec) - set(hidden)
            ds = ds.map(lambda ex: {k: v for k, v in ex.items() if k in keep})
        return eval_dataset(ds, task_spec, domain, cfg.eval_batch_size, cfg.eval_input_size,
                            cfg.eval_scale)

    source = split("source_val")
    target = None
    anchor = model.anchor
    if anchor is not None and anchor.evaluator() is not None:
        hidden = ((set(model.main.required_features()) | set(model.main.label_keys))
                  - set(anchor.required_features()) - set(anchor.label_keys))
        target = split("target_val", hidden=hidden, task_spec=dc.replace(spec, main_task=None))

    def score(model) -> dict:
        # The main task's primary metric only (e.g. mean angular error): the epoch logs
        # stay readable; target_test_curve keeps every metric.
        scores = _scores(model, SOURCE_PREFIX, source, model.main.evaluator(),
                         keys=(model.main.primary,))
        if target is not None:
            scores.update(_scores(model, ANCHOR_PREFIX, target, anchor.evaluator()))
        return scores

    return score


def target_test_scorer(cfg: RunConfig, spec):
    """``model -> {"target_test_<key>": ...}``: the main task's target-test metrics, for
    the analysis-only ``--target_test_curve`` (never used to choose anything)."""
    from tada_keras.data import eval_dataset, load_split

    name, split, manual, domain = eval_split(cfg, "target_test")
    ds = eval_dataset(load_split(name, split, cfg.data_dir, manual_dir=manual), spec, domain,
                      cfg.eval_batch_size, cfg.eval_input_size, cfg.eval_scale)
    return lambda model: _scores(model, "target_test_", ds, model.main.evaluator())


def _scores(model, prefix, ds, evaluator, keys=None) -> dict:
    for images, labels in ds.as_numpy_iterator():
        evaluator.update(predict_padded(model, images), labels)
    return {prefix + k: float(v) for k, v in evaluator.result().items()
            if keys is None or k in keys}


def dataset_identity(cfg: RunConfig) -> dict:
    """What the run's datasets are: per domain the TFDS ``full_name`` (builder, config,
    version; a manifest's config name carries the hash of its manifest) and the number of
    examples of every split. Training records it in ``config.json`` as ``datasets``."""
    from tada_keras.data import prepare_builder

    identity = {}
    for domain in ("source", "target"):
        name = getattr(cfg, f"{domain}_dataset")
        try:
            info = prepare_builder(name, cfg.data_dir,
                                   getattr(cfg, f"{domain}_manual_dir")).info
        except Exception as err:  # tfds: not found, a bad config, a manual dir
            first = str(err).strip().splitlines()[0] if str(err).strip() else \
                type(err).__name__
            raise ValueError(f"--{domain}_dataset={name}: {first}") from None
        identity[domain] = {"name": info.full_name,
                            "examples": {split: int(info.splits[split].num_examples)
                                         for split in sorted(info.splits)}}
    return identity


def dataset_changes(recorded: dict, current: dict) -> list[str]:
    """How ``current`` (``dataset_identity``) differs from the ``recorded`` one, one
    phrase per difference (empty: the same datasets)."""
    changes = []
    for domain in ("source", "target"):
        was, now = recorded.get(domain), current.get(domain)
        if not was or not now:
            continue
        if was["name"] != now["name"]:
            changes.append(f"{domain} dataset {was['name']} is now {now['name']}")
        for split in sorted(set(was["examples"]) | set(now["examples"])):
            a, b = was["examples"].get(split), now["examples"].get(split)
            if a != b:
                changes.append(f"{domain} split {split}: "
                               f"{'no' if a is None else a} examples at training, "
                               f"{'none' if b is None else b} now")
    return changes


def recorded_identity(model_dir) -> dict | None:
    """The ``datasets`` a run recorded in its ``config.json`` (None: a run trained before
    it was recorded)."""
    try:
        with open(os.path.join(model_dir, "config.json")) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return None
    return saved.get("datasets") if isinstance(saved, dict) else None


# The demo's comparison table (the README's normals table: its header predates the
# tasks' column titles).
_NORMALS_TITLES = {"mean": "mean °", "median": "median °", "rmse": "RMSE °"}


def comparison_table(rows: dict[str, dict], task) -> str:
    """Markdown table: one row per method, the main task's summary metrics (``task``'s
    ``summary_keys``, else its columns; normals: the paper's columns plus 22.5°)."""
    columns = {c.key: c for c in task.columns}
    keys = task.summary_keys or tuple(columns)
    titles = [(_NORMALS_TITLES.get(k) if task.name == "normals" else None)
              or columns[k].title for k in keys]
    lines = ["| method | " + " | ".join(titles) + " |",
             "|---|" + "---:|" * len(keys)]
    for name, r in rows.items():
        t = r["target_test"]
        lines.append(f"| {name} | " + " | ".join(f"{t[k]:.{columns[k].decimals}f}"
                                                 for k in keys) + " |")
    return "\n".join(lines)


def load_run(model_dir):
    """Returns (RunConfig, model) of a finished run."""
    import keras

    config_path = os.path.join(model_dir or "", "config.json")
    model_path = os.path.join(model_dir or "", "model.keras")
    for path in (config_path, model_path):
        if not os.path.isfile(path):
            raise ValueError(f"--model_dir={model_dir}: {os.path.basename(path)} not found "
                             "(is the training run finished?)")
    known = {f.name for f in dataclasses.fields(RunConfig)}
    try:
        with open(config_path) as f:
            saved = json.load(f)
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
        # Settings of later versions are ignored; missing ones take their defaults.
        cfg = RunConfig(**{k: v for k, v in saved.items() if k in known})
    except ValueError as err:
        raise ValueError(f"{config_path} is damaged ({err}); it is written by "
                         "tada_keras.train, re-run that command to restore it") from None
    tada_keras.register_serializables()

    try:
        # compile=False: inference needs no optimizer (loading its slots into an unbuilt
        # one only warns about "skipped" variables).
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as err:
        raise ValueError(f"{model_path} cannot be loaded ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:200] if str(err) else ''}); it is written "
                         "at the end of tada_keras.train: delete it and re-run that "
                         "command") from None
    return cfg, model
