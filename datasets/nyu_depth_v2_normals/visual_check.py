"""One-command check of NYU normal conventions on your own copy (figure + printed verdict).

From the raw files (no build needed; reads a few images lazily):
    python -m tada_datasets.nyu_depth_v2_normals.visual_check \
        --manual_dir ~/tensorflow_datasets/downloads/manual --config eigen --out nyu_eigen.png
From a prepared TFDS dataset (what the training pipeline will see):
    python -m tada_datasets.nyu_depth_v2_normals.visual_check \
        --data_dir ~/tensorflow_datasets --config eigen --out nyu_eigen.png

Each row: image, normals coloured (x, y, z) -> (R, G, B) from [-1, 1], the mask, and the
NYU-40 labels. In the project frame floors look green (+y), ceilings purple (−y), walls on
the left of the image red-ish (+x), and walls facing the camera blue (+z). The script also
scores those expectations (floor/ceiling labels, left/right thirds) and, if another axes
mapping fits better, prints the ``normal_axes`` value to build with.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

from . import conversions
from . import nyu_depth_v2_normals_dataset_builder as builder_lib


def load_from_manual_dir(manual_dir, config, normal_axes, count):
    """-> list of (title, image, normals, mask, labels) for the first ``count`` test images."""
    root = pathlib.Path(manual_dir)
    axes = normal_axes or conversions.DEFAULT_NORMAL_AXES[config]
    train, test = builder_lib.read_splits(root / builder_lib.SPLITS_FILE)
    map_class = builder_lib.read_class_mapping(root / builder_lib.MAPPING_FILE)
    official = {int(i): "train" for i in train} | {int(i): "test" for i in test}
    rows = []
    with builder_lib.LabeledMat(root / builder_lib.MAT_FILE) as mat:
        reader = builder_lib._NormalsReader(root, config, axes, official, mat.num_images)
        for index1 in [int(i) for i in test[:count]]:
            image = mat.image(index1 - 1)
            labels = conversions.map_894_to_40(mat.labels(index1 - 1), map_class)
            normals, mask = reader.read(index1, image.shape[:2])
            title = f"{index1:04d} {mat.scene_type(index1 - 1)}"
            rows.append((title, image, normals, mask, labels))
    return rows, axes


def load_from_data_dir(data_dir, config, split, count):
    import tensorflow_datasets as tfds

    builder = builder_lib.Builder(config=config, data_dir=data_dir)
    rows = []
    for ex in tfds.as_numpy(builder.as_dataset(split=split).take(count)):
        title = f"{ex['id'].decode()} {ex['scene_type'].decode()}"
        rows.append(
            (title, ex["image"], ex["normals"], ex["normals_mask"], ex["segmentation"][..., 0])
        )
    return rows, builder.builder_config.normal_axes or conversions.DEFAULT_NORMAL_AXES[config]


def report(rows, axes: str) -> list[str]:
    """Scores the conventions over all rows; returns printable lines."""
    normals = np.stack([r[2] for r in rows])
    mask = np.stack([r[3] for r in rows])
    labels = np.stack([r[4] for r in rows])
    score, stats = conversions.convention_score(normals, mask, labels)
    lines = [
        f"normal_axes in use: {axes}",
        "  " + ", ".join(f"{k}={v:+.2f}" for k, v in sorted(stats.items())),
        (
            "  expected: floor_y > 0.5, ceiling_y < -0.5, toward_camera > 0.9, "
            "left_minus_right_x > 0"
        ),
    ]
    correction = conversions.suggest_correction(normals, mask, labels)
    if correction == "+0,+1,+2":
        lines.append("VERDICT: the decoded normals fit the project frame.")
    else:
        better, _ = conversions.convention_score(
            conversions.apply_axes(normals, correction), mask, labels
        )
        lines.append(
            f"VERDICT: axes look wrong (score {score:.2f}; {better:.2f} with a fix). Build with "
            f"normal_axes='{conversions.compose_axes(axes, correction)}' (see README)."
        )
    return lines


def draw(rows, lines, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(
        len(rows), 4, figsize=(16, 3.4 * len(rows) + 1.0), squeeze=False, layout="constrained"
    )
    for row, (title, image, normals, mask, labels) in zip(axs, rows):
        row[0].imshow(image)
        row[0].set_title(title)
        row[1].imshow(np.clip((normals + 1.0) / 2.0, 0, 1) * mask[..., None])
        row[1].set_title("normals: R=x right, G=y up, B=z to camera")
        row[2].imshow(mask, cmap="gray", vmin=0, vmax=1)
        row[2].set_title(f"normals_mask ({mask.mean():.0%} valid)")
        row[3].imshow(labels, cmap="tab20", vmin=0, vmax=40, interpolation="nearest")
        present = [c for c in (1, 2, 22) if (labels == c).any()]
        row[3].set_title(
            "NYU-40: " + ", ".join(f"{c}={conversions.NYU40_CLASS_NAMES[c - 1]}" for c in present)
        )
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("\n".join(lines), fontsize=9, family="monospace", x=0.01, ha="left")
    fig.savefig(out, dpi=80)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manual_dir", help="folder with the raw files (see README)")
    source.add_argument("--data_dir", help="TFDS data_dir with the prepared dataset")
    parser.add_argument(
        "--config", default="eigen", choices=sorted(conversions.DEFAULT_NORMAL_AXES)
    )
    parser.add_argument("--normal_axes", default=None, help="override, e.g. '+0,-1,+2' (raw only)")
    parser.add_argument("--split", default="test", help="with --data_dir")
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--out", default="nyu_normals_check.png")
    args = parser.parse_args(argv)
    if args.manual_dir:
        rows, axes = load_from_manual_dir(
            args.manual_dir, args.config, args.normal_axes, args.count
        )
    else:
        rows, axes = load_from_data_dir(args.data_dir, args.config, args.split, args.count)
    lines = report(rows, axes)
    print("\n".join(lines))
    draw(rows, lines, args.out)
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
