"""TFDS builder: SUNCG physically-based renderings (PBRS) with normals and NYU-40 labels."""

from __future__ import annotations

import collections
import dataclasses
import os
from typing import ClassVar

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from tada_keras import conventions as C

from ..common import split_checks
from ..common.image_io import decode_png_bytes, read_bytes, read_png
from ..common.incomplete_builds import RemovesIncompleteBuilds
from ..common.manual_dir import require_files
from ..common.normals_feature import UnitNormals
from ..common.registration import already_registered
from . import conversions

GOODLIST = "data_goodlist_v2.txt"
IMAGE_PATH = "mlt_v2/{house}/{view}_mlt.png"
NORMAL_PATH = "normal_v2/{house}/{view}_norm_camera.png"
VALID_PATH = "normal_v2/{house}/{view}_valid.png"
CATEGORY_PATH = "category_v2/{house}/{view}_category40.png"
HOUSE = "house"  # SUNCG house id; every view of a house is in one split
_LOG_EVERY = 10_000
_LOG_FIRST_SKIPS = 20
_INVALID_NORMALS = ("all invalid (no pixel both marked in _valid.png and decoding to a unit "
                    "vector, e.g. an all-zero normal PNG)")
_INVALID_NORMALS_HINT = (
    "Check that these are PBRS's normal_v2 files (_norm_camera.png, 16-bit, n = 2 v / 65535 "
    "- 1) with their _valid.png masks, and the config's normal_axes.")

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
PBRS (Zhang et al., CVPR 2017) renders SUNCG houses; SUNCG requires its own agreement and
its public links were taken offline in 2019, so TFDS cannot download anything here. With a
copy of the release, put in `manual_dir` (default ~/tensorflow_datasets/downloads/manual/;
set another with `tfds build --manual_dir=DIR`):

  {GOODLIST}                                  one '<house>/<view>' per line
  mlt_v2/<house>/<view>_mlt.png                         (unzip mlt_v2.zip, 278 GB)
  normal_v2/<house>/<view>_norm_camera.png              (unzip normal_v2.zip, 27 GB)
  normal_v2/<house>/<view>_valid.png
  category_v2/<house>/<view>_category40.png             (NYU-40 ids; not needed by the
                                                         `full_no_category` config)

Only the views listed in {GOODLIST} are read. Build a subset first with the `subset_10k`
config, or `python -m tada_datasets.suncg_pbrs.prepare --max_examples N`.
"""


@dataclasses.dataclass
class PbrsConfig(tfds.core.BuilderConfig):
    """Attributes:
    max_examples: keep this many good-list views (a deterministic spread over all
      houses, split afterwards by house); None keeps all.
    with_category: read category_v2 labels; if False, segmentation is all 0 (void).
    skip_bad_views: skip views with a missing or corrupt file (logged, counted);
      if False the first such file stops the build with its path.
    max_skipped_fraction: fail at the end of a split if more views than this were
      skipped (a sign of an incomplete manual_dir rather than a few bad files).
    normal_axes: stored channels -> (x right, y up, z toward camera), see conversions.
    """

    max_examples: int | None = None
    with_category: bool = True
    skip_bad_views: bool = True
    max_skipped_fraction: float = 0.01
    normal_axes: str = conversions.PBRS_NORMAL_AXES


class Builder(RemovesIncompleteBuilds, tfds.core.GeneratorBasedBuilder,
              skip_registration=already_registered("suncg_pbrs")):
    """SUNCG PBRS views: MLT image, camera-frame normals + mask, NYU-40 labels."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS: ClassVar[list] = [
        PbrsConfig(name="full", description="All good-list views with category_v2 labels."),
        PbrsConfig(
            name="subset_10k",
            max_examples=10_000,
            description="10,000 good-list views, spread over all houses.",
        ),
        PbrsConfig(
            name="subset_100k",
            max_examples=100_000,
            description="100,000 good-list views, spread over all houses.",
        ),
        PbrsConfig(
            name="full_no_category",
            with_category=False,
            description="All good-list views; no category_v2 (segmentation = void).",
        ),
    ]
    DEFAULT_CONFIG_NAME = "full"

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    C.IMAGE: tfds.features.Image(shape=(None, None, 3), dtype=np.uint8),
                    C.NORMALS: UnitNormals(shape=(None, None, 3)),
                    C.NORMALS_MASK: tfds.features.Tensor(
                        shape=(None, None), dtype=np.bool_, encoding=tfds.features.Encoding.ZLIB
                    ),
                    C.SEGMENTATION: tfds.features.Image(shape=(None, None, 1), dtype=np.uint8),
                    HOUSE: tfds.features.Text(),
                    C.EXAMPLE_ID: tfds.features.Text(),
                }
            ),
            supervised_keys=None,
            homepage="https://github.com/yindaz/pbrs",
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = epath.Path(dl_manager.manual_dir)
        cfg = self.builder_config
        conversions.parse_axes(cfg.normal_axes)
        _require(
            root, [GOODLIST, "mlt_v2", "normal_v2"] + (["category_v2"] if cfg.with_category else [])
        )
        views = read_goodlist(root / GOODLIST)
        _require(root, view_paths(*views[0], with_category=cfg.with_category))
        selected = None
        if cfg.max_examples is not None:
            selected = conversions.select_subset(views, cfg.max_examples)
        counts = collections.Counter(
            conversions.split_of_house(house)
            for house, view in views
            if selected is None or (house, view) in selected
        )
        logging.info(
            "suncg_pbrs: %d good-list views; selected per split: %s", len(views), dict(counts)
        )
        self.info.metadata["skipped_invalid_normals"] = {
            name: 0 for name, _ in conversions.SPLIT_PERCENTS if counts[name]}
        # A small subset can leave a split empty, which TFDS cannot write: leave it out.
        return {
            name: self._generate_examples(root, views, selected, name)
            for name, _ in conversions.SPLIT_PERCENTS
            if counts[name]
        }

    def _generate_examples(self, root, views, selected, split):
        cfg = self.builder_config
        tally = split_checks.InvalidNormalsTally(
            "suncg_pbrs", split, root / "normal_v2", _INVALID_NORMALS, _INVALID_NORMALS_HINT)
        seen = skipped = 0
        first_problem = None
        for house, view in views:
            if conversions.split_of_house(house) != split:
                continue
            if selected is not None and (house, view) not in selected:
                continue
            seen += 1
            try:
                example = read_view(root, house, view, cfg.with_category, cfg.normal_axes)
            except (OSError, ValueError) as err:
                if not cfg.skip_bad_views:
                    raise
                skipped += 1
                first_problem = first_problem or str(err)
                if skipped <= _LOG_FIRST_SKIPS:
                    logging.warning("suncg_pbrs: skipping %s/%s: %s", house, view, err)
                continue
            if seen % _LOG_EVERY == 0:
                logging.info("suncg_pbrs %s: %d views read, %d skipped", split, seen, skipped)
            normal_path = root / NORMAL_PATH.format(house=house, view=view)
            if tally.keep(normal_path, int(np.count_nonzero(example[C.NORMALS_MASK]))):
                yield f"{house}/{view}", example
        logging.info("suncg_pbrs %s: %d views, %d skipped", split, seen, skipped)
        self.info.metadata["skipped_invalid_normals"][split] = tally.finish()
        if seen and skipped > cfg.max_skipped_fraction * seen:
            raise ValueError(
                f"suncg_pbrs {split}: skipped {skipped} of {seen} views (more than "
                f"{cfg.max_skipped_fraction:.1%}); first problem: {first_problem}\n"
                f"{MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )


# --- File readers ------------------------------------------------------------------------


def view_paths(house: str, view: str, with_category: bool = True) -> list[str]:
    paths = [IMAGE_PATH, NORMAL_PATH, VALID_PATH] + ([CATEGORY_PATH] if with_category else [])
    return [p.format(house=house, view=view) for p in paths]


def read_goodlist(path: epath.Path) -> list[tuple[str, str]]:
    """data_goodlist_v2.txt -> [(house, view), ...] in file order (streamed line by line)."""
    views = []
    with tf.io.gfile.GFile(os.fspath(path), "r") as f:
        for number, line in enumerate(f, start=1):
            try:
                parsed = conversions.parse_goodlist_line(line, number)
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from err
            if parsed is not None:
                views.append(parsed)
    if not views:
        raise ValueError(f"{path}: no '<house>/<view>' lines\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")
    return views


def read_view(
    root: epath.Path,
    house: str,
    view: str,
    with_category: bool = True,
    axes: str = conversions.PBRS_NORMAL_AXES,
) -> dict:
    """Reads and checks one view; ValueError/FileNotFoundError names the bad file."""
    image_path, normal_path, valid_path, *rest = [
        root / p for p in view_paths(house, view, with_category)
    ]
    image_bytes = read_bytes(image_path)
    image = decode_png_bytes(image_bytes, image_path)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"{image_path}: expected 8-bit RGB, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    if image.shape[-1] == 3:
        image = image_bytes  # already what the feature stores: skip a re-encode
    else:
        image = np.ascontiguousarray(image[..., :3])

    normal_png = read_png(normal_path)
    valid_png = read_png(valid_path)
    for path, array in ((normal_path, normal_png), (valid_path, valid_png)):
        if array.shape[:2] != (height, width):
            raise ValueError(f"{path}: shape {array.shape[:2]} != image {(height, width)}")
    try:
        normals, mask = conversions.decode_pbrs_normals(normal_png, valid_png, axes)
    except ValueError as err:
        raise ValueError(f"{normal_path}: {err}") from err

    if with_category:
        category_path = rest[0]
        category = read_png(category_path)
        if category.shape[:2] != (height, width):
            raise ValueError(
                f"{category_path}: shape {category.shape[:2]} != image {(height, width)}"
            )
        try:
            category = conversions.check_category40(category)
        except ValueError as err:
            raise ValueError(f"{category_path}: {err}") from err
    else:
        category = np.zeros((height, width), np.uint8)
    return {
        C.IMAGE: image,
        C.NORMALS: normals,
        C.NORMALS_MASK: mask,
        C.SEGMENTATION: category[..., None],
        HOUSE: house,
        C.EXAMPLE_ID: f"{house}/{view}",
    }


def _require(root: epath.Path, relative_paths) -> None:
    """Raises FileNotFoundError with the instructions and the first missing path."""
    require_files(root, relative_paths, MANUAL_DOWNLOAD_INSTRUCTIONS)
