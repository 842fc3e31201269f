"""Builds suncg_pbrs with a custom size: ``--max_examples`` and friends.

    python -m tada_datasets.suncg_pbrs.prepare --manual_dir DIR --data_dir ~/tensorflow_datasets \
        --max_examples 20000 [--no_category] [--strict]

The views are the ``max_examples`` good-list entries of lowest hash (spread over all
houses), then split 90/5/5 by house; the config is named ``subset_<N>`` (or
``subset_<N>_no_category``). Load it later with
``Builder(config=PbrsConfig(name=..., max_examples=N, ...), data_dir=...)`` or
``tfds.builder_from_directory(<data_dir>/suncg_pbrs/<name>/1.0.0)``.
For the predefined sizes use ``tfds build`` with ``--config subset_10k`` etc.
"""

from __future__ import annotations

import argparse

import tensorflow_datasets as tfds

from .suncg_pbrs_dataset_builder import Builder, PbrsConfig


def config_for(max_examples: int | None, with_category: bool, strict: bool) -> PbrsConfig:
    name = "full" if max_examples is None else f"subset_{max_examples}"
    if not with_category:
        name += "_no_category"
    if strict:
        name += "_strict"
    return PbrsConfig(
        name=name,
        max_examples=max_examples,
        with_category=with_category,
        skip_bad_views=not strict,
        description=f"{max_examples or 'all'} good-list views.",
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manual_dir", required=True)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--max_examples", type=int, default=None)
    parser.add_argument("--no_category", action="store_true")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first missing/corrupt file instead of skipping it",
    )
    args = parser.parse_args(argv)
    config = config_for(args.max_examples, not args.no_category, args.strict)
    builder = Builder(config=config, data_dir=args.data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=args.manual_dir)
    )
    print(
        f"{builder.data_dir}: "
        + ", ".join(f"{name} {split.num_examples}" for name, split in builder.info.splits.items())
    )


if __name__ == "__main__":
    main()
