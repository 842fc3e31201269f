"""Measure sim2real_rooms: build time and the target-test error of two label-free predictors.

    python -m tada_datasets.sim2real_rooms.measure [--config default] [--data_dir DIR]
    python datasets/sim2real_rooms/measure.py       # by path also works

Predictors (pooled over all valid target_test pixels, like the project's metrics):
  constant   the mean source_train normal, renormalised;
  reference  ground-truth segmentation -> mean source_train normal of that class,
             renormalised (what a perfect anchor alone gives without shape information).
A network that reads shading and geometry must beat both by far.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    from . import generator
    from .sim2real_rooms_dataset_builder import Builder
except ImportError:  # run by path: make `sim2real_rooms` and `tada_keras` importable
    _here = Path(__file__).resolve().parent
    sys.path[:0] = [str(_here.parent), str(_here.parent.parent)]
    from sim2real_rooms import generator  # type: ignore[no-redef]
    from sim2real_rooms.sim2real_rooms_dataset_builder import Builder  # type: ignore[no-redef]


def normal_error_stats(angles_deg: np.ndarray) -> dict[str, float]:
    """Pooled angular-error statistics (keys as tada_keras.metrics.normal_error_stats)."""
    a = np.asarray(angles_deg, np.float64)
    return {
        "mean": float(a.mean()),
        "median": float(np.median(a)),
        "rmse": float(np.sqrt((a**2).mean())),
        "a11_25": float((a < 11.25).mean()),
        "a22_5": float((a < 22.5).mean()),
        "a30": float((a < 30.0).mean()),
    }


def _angles(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((pred * gt).sum(-1), -1.0, 1.0)))


def _batches(builder, split: str):
    import tensorflow_datasets as tfds

    ds = builder.as_dataset(split=split, shuffle_files=False).batch(64)
    for batch in tfds.as_numpy(ds):
        yield batch["normals"], batch["normals_mask"], batch["segmentation"][..., 0]


def source_means(builder) -> tuple[np.ndarray, np.ndarray]:
    """(mean normal, per-class mean normals) of source_train, renormalised."""
    total = np.zeros(3)
    per_class = np.zeros((generator.NUM_CLASSES, 3))
    for normals, mask, seg in _batches(builder, "source_train"):
        n = normals[mask].astype(np.float64)
        total += n.sum(0)
        np.add.at(per_class, seg[mask], n)
    constant = total / np.linalg.norm(total)
    norms = np.linalg.norm(per_class, axis=1, keepdims=True)
    # A class never seen in source_train falls back to the constant predictor.
    per_class = np.where(norms > 0, per_class / np.maximum(norms, 1e-12), constant)
    return constant, per_class


def evaluate(builder, split: str, constant, per_class):
    """Stats of both predictors on a split, and its fraction of valid pixels with n_z <= 0."""
    const_err, ref_err, nz = [], [], []
    for normals, mask, seg in _batches(builder, split):
        gt = normals[mask].astype(np.float64)
        const_err.append(_angles(constant, gt))
        ref_err.append(_angles(per_class[seg[mask]], gt))
        nz.append(gt[:, 2] <= 0)
    stats = {
        "constant": normal_error_stats(np.concatenate(const_err)),
        "reference": normal_error_stats(np.concatenate(ref_err)),
    }
    return stats, float(np.concatenate(nz).mean())


def render_cost_ms(image_size: int, n: int = 20) -> dict[str, float]:
    """Single-core CPU time per rendered example, per domain."""
    spec = generator.GenerationSpec(image_size=image_size)
    out = {}
    for split in ("source_train", "target_train"):
        start = time.process_time()
        for i in range(n):
            generator.generate_example(spec, split, i)
        out[generator.SPLITS[split][0]] = 1000 * (time.process_time() - start) / n
    return out


def _row(name: str, s: dict[str, float]) -> str:
    return (
        f"| {name} | {s['mean']:.1f} | {s['median']:.1f} | {s['rmse']:.1f} | "
        f"{100 * s['a11_25']:.1f} | {100 * s['a22_5']:.1f} | {100 * s['a30']:.1f} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default")
    parser.add_argument(
        "--data_dir",
        default=None,
        help="Build here and keep it (default: a temporary dir, removed).",
    )
    args = parser.parse_args(argv)

    data_dir = args.data_dir or tempfile.mkdtemp(prefix="sim2real_rooms_")
    try:
        builder = Builder(config=args.config, data_dir=data_dir)
        cfg = builder.builder_config
        total = sum(cfg.num_examples(s) for s in generator.SPLITS)
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        builder.download_and_prepare()
        wall = time.perf_counter() - start_wall
        cpu = time.process_time() - start_cpu  # main process only (workers not counted)
        print(
            f"config={cfg.name} image_size={cfg.image_size} examples={total} "
            f"workers={Builder.NUM_WORKERS}"
        )
        print(
            f"build wall time: {wall:.1f} s ({1000 * wall / total:.1f} ms/example); "
            f"main-process CPU {cpu:.1f} s"
        )
        costs = render_cost_ms(cfg.image_size)
        print(
            "render CPU ms/example (1 core): " + ", ".join(f"{k} {v:.1f}" for k, v in costs.items())
        )

        constant, per_class = source_means(builder)
        print("| predictor (split) | mean | median | rmse | <11.25 % | <22.5 % | <30 % |")
        print("|---|---|---|---|---|---|---|")
        nz_fraction = {}
        for split in ("target_test", "source_val"):
            stats, nz_fraction[split] = evaluate(builder, split, constant, per_class)
            for name, s in stats.items():
                print(_row(f"{name} ({split})", s))
        print(
            "valid pixels with n_z <= 0 (ceilings, grazing walls at the border): "
            + ", ".join(f"{k} {100 * v:.1f}%" for k, v in nz_fraction.items())
        )
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
