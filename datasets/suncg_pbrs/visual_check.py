"""One-command check of PBRS normals/labels on your own copy (figure + printed verdict).

From the raw files (no build; reads a few good-list views spread over houses):
    python -m tada_datasets.suncg_pbrs.visual_check \
        --manual_dir ~/tensorflow_datasets/downloads/manual --out pbrs_check.png
From a prepared TFDS dataset:
    python -m tada_datasets.suncg_pbrs.visual_check --data_dir ~/tensorflow_datasets \
        --config subset_10k --out pbrs_check.png

Each row: image, normals coloured (x, y, z) -> (R, G, B) from [-1, 1], the mask, and the
NYU-40 category labels. Floors should look green (+y), ceilings purple, left walls
red-ish, walls facing the camera blue, and the label legend should name what you see
(this is how to confirm that category40 ids are NYU-40 with 0 = void).
"""

from __future__ import annotations

import argparse
import pathlib

from ..common.image_io import decode_png_bytes
from ..nyu_depth_v2_normals import visual_check as nyu_visual_check
from . import conversions
from . import suncg_pbrs_dataset_builder as builder_lib


def load_from_manual_dir(manual_dir, count, normal_axes, with_category=True):
    root = pathlib.Path(manual_dir)
    views = builder_lib.read_goodlist(root / builder_lib.GOODLIST)
    picked = conversions.select_subset(views, count)
    rows = []
    for house, view in [hv for hv in views if hv in picked]:
        ex = builder_lib.read_view(root, house, view, with_category, normal_axes)
        image = ex["image"]
        if isinstance(image, bytes):  # read_view passes 8-bit RGB PNGs through undecoded
            image = decode_png_bytes(image)
        rows.append(
            (
                f"{house[:8]}…/{view}",
                image,
                ex["normals"],
                ex["normals_mask"],
                ex["segmentation"][..., 0],
            )
        )
    return rows


def load_from_data_dir(data_dir, config, split, count):
    import tensorflow_datasets as tfds

    builder = builder_lib.Builder(config=config, data_dir=data_dir)
    return [
        (
            ex["id"].decode(),
            ex["image"],
            ex["normals"],
            ex["normals_mask"],
            ex["segmentation"][..., 0],
        )
        for ex in tfds.as_numpy(builder.as_dataset(split=split).take(count))
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manual_dir", help="folder with the raw PBRS files (see README)")
    source.add_argument("--data_dir", help="TFDS data_dir with the prepared dataset")
    parser.add_argument("--config", default="full", help="with --data_dir")
    parser.add_argument("--split", default="validation", help="with --data_dir")
    parser.add_argument(
        "--normal_axes",
        default=conversions.PBRS_NORMAL_AXES,
        help="with --manual_dir: stored channels -> project axes",
    )
    parser.add_argument("--no_category", action="store_true", help="with --manual_dir")
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--out", default="pbrs_check.png")
    args = parser.parse_args(argv)
    if args.manual_dir:
        rows = load_from_manual_dir(
            args.manual_dir, args.count, args.normal_axes, not args.no_category
        )
        axes = args.normal_axes
    else:
        rows = load_from_data_dir(args.data_dir, args.config, args.split, args.count)
        axes = builder_lib.Builder.builder_configs[args.config].normal_axes
    lines = nyu_visual_check.report(rows, axes)
    if all(not (r[4] > 0).any() for r in rows):
        lines.append("(no category labels: the up/down direction is not checked)")
    print("\n".join(lines))
    nyu_visual_check.draw(rows, lines, args.out)
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
