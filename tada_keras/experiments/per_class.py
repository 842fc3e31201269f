"""Per-class angular error of trained networks and of the label-free predictors.

    python -m tada_keras.experiments.per_class --model_dirs=runs/demo/baseline \
        [--split=target_test] [--data_dir=.tfds]

For each class of the split: its share of the valid pixels, the mean angular error of the
constant and reference predictors (see ``sim2real_rooms.measure``) and of each network.
It says *where* a network loses to "ground-truth segmentation -> class-mean source
normal", i.e. where the benchmark's anchor is (too) informative about the main task.
"""

from __future__ import annotations

import argparse

import numpy as np

from tada_datasets.sim2real_rooms import generator, measure
from tada_datasets.sim2real_rooms.sim2real_rooms_dataset_builder import Builder


def per_class_errors(angles: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Mean error per class id (NaN for classes without pixels)."""
    sums = np.bincount(seg, weights=angles, minlength=generator.NUM_CLASSES)
    counts = np.bincount(seg, minlength=generator.NUM_CLASSES)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dirs", default="", help="Comma-separated finished runs.")
    parser.add_argument("--split", default="target_test")
    parser.add_argument("--config", default="default")
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args(argv)

    from tada_keras.inference import load_run, predict_main

    builder = Builder(config=args.config, data_dir=args.data_dir)
    builder.download_and_prepare()
    constant, per_class = measure.source_means(builder)
    nets = [d for d in args.model_dirs.split(",") if d]
    models = [load_run(d)[1] for d in nets]
    for d, model in zip(nets, models):
        if model.main.name != "normals":  # the class-mean predictors are normals
            parser.error(f"--model_dirs: {d} predicts {model.main.name}, not normals")
    errors = {"constant": [], "reference": [], **{d: [] for d in nets}}
    segs = []
    ds = builder.as_dataset(split=args.split, shuffle_files=False).batch(32)
    import tensorflow_datasets as tfds

    for batch in tfds.as_numpy(ds):
        mask, gt, seg = batch["normals_mask"], batch["normals"], batch["segmentation"][..., 0]
        segs.append(seg[mask])
        errors["constant"].append(measure._angles(constant, gt[mask]))
        errors["reference"].append(measure._angles(per_class[seg[mask]], gt[mask]))
        for d, model in zip(nets, models):
            pred = predict_main(model, batch["image"])
            # Output is at half resolution: compare at GT resolution (nearest up-sampling
            # is enough for a per-class breakdown; the metrics use bilinear).
            pred = pred.repeat(2, axis=1).repeat(2, axis=2)[:, :gt.shape[1], :gt.shape[2]]
            pred /= np.maximum(np.linalg.norm(pred, axis=-1, keepdims=True), 1e-12)
            errors[d].append(measure._angles(pred[mask], gt[mask]))
    seg = np.concatenate(segs)
    share = np.bincount(seg, minlength=generator.NUM_CLASSES) / len(seg)
    table = {k: per_class_errors(np.concatenate(v), seg) for k, v in errors.items()}
    overall = {k: float(np.concatenate(v).mean()) for k, v in errors.items()}
    names = list(errors)
    print("| class | pixels % | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for cid in np.argsort(-share):
        if share[cid] == 0:
            continue
        print(f"| {generator.CLASS_NAMES[cid]} | {100 * share[cid]:.1f} | "
              + " | ".join(f"{table[k][cid]:.1f}" for k in names) + " |")
    print("| **all** | 100 | " + " | ".join(f"{overall[k]:.1f}" for k in names) + " |")


if __name__ == "__main__":
    main()
