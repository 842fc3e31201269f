"""TFDS builder for sim2real_rooms, the embedded procedural sim2real indoor benchmark.

Nothing is downloaded: ``_split_generators`` renders every example from (config seed, split,
index) with ``generator.generate_example``, in worker processes when a split is large.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import sys
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds

from tada_keras import conventions

from ..common.incomplete_builds import RemovesIncompleteBuilds
from ..common.registration import already_registered
from . import generator

CLASS_NAMES = generator.CLASS_NAMES
NUM_CLASSES = generator.NUM_CLASSES
NUM_KEYPOINTS = generator.NUM_KEYPOINTS
KEYPOINT_NAMES = generator.KEYPOINT_NAMES
HAS_ANCHOR = "has_anchor"  # bool: are this example's anchor labels usable?
SPLIT_NAMES = tuple(generator.SPLITS)

# Splits below this size are rendered in-process (tests, `tiny`): forking costs more.
_MIN_EXAMPLES_FOR_WORKERS = 32


@dataclasses.dataclass(eq=False)
class Sim2RealRoomsConfig(tfds.core.BuilderConfig):
    """BuilderConfig of sim2real_rooms.

    Args:
        image_size: height = width of every image and label map, in pixels.
        num_source_train, num_source_val, num_target_train, num_target_val,
            num_target_test: examples per split.
        target_anchor_count: how many target_train examples carry usable anchor labels
            (segmentation, keypoints); None = all. The others have `has_anchor` False and
            zeroed anchor labels. Main-task labels are stored for every example (oracle).
        noisy_anchor: erode/jitter segmentation boundaries and jitter keypoints of target_train
            anchor labels, like "free" real-world labels.
        match_pose: draw the source camera pitch/roll/height from the target's prior (the
            paper's "SfSsyn-frontal" analogue: no pose label-distribution shift).
        seed: the random seed every example derives from.
    """

    image_size: int = 128
    num_source_train: int = 2000
    num_source_val: int = 200
    num_target_train: int = 400
    num_target_val: int = 200
    num_target_test: int = 300
    target_anchor_count: int | None = None
    noisy_anchor: bool = True
    match_pose: bool = False
    seed: int = 0

    def num_examples(self, split: str) -> int:
        return int(getattr(self, f"num_{split}"))

    def generation_spec(self) -> generator.GenerationSpec:
        return generator.GenerationSpec(
            self.image_size, self.seed, self.match_pose, self.noisy_anchor
        )


def make_config(
    name: str = "custom", description: str | None = None, **fields: Any
) -> Sim2RealRoomsConfig:
    """A custom config, e.g. ``make_config("small", image_size=64, num_source_train=500)``;
    use it as ``tfds.builder("sim2real_rooms", config=make_config(...))``."""
    if description is None:
        changed = ", ".join(f"{k}={v}" for k, v in sorted(fields.items()))
        description = f"Custom sim2real_rooms config ({changed or 'defaults'})."
    return Sim2RealRoomsConfig(name=name, description=description, **fields)


DEFAULT_CONFIG = make_config(
    "default",
    "128x128; source camera level, target camera looks down and rolls (pose shift).",
)
MATCHED_CONFIG = make_config(
    "matched",
    "As default, but the source camera pose prior equals the target's (no pose shift).",
    match_pose=True,
)
# Anchor-label ablations: as default except the target anchor labels (same images).
ANCHOR_CONFIGS = [
    make_config("anchors_25", "As default, but only 25 target_train images carry anchor "
                "labels.", target_anchor_count=25),
    make_config("anchors_100", "As default, but only 100 target_train images carry anchor "
                "labels.", target_anchor_count=100),
    make_config("clean_anchors", "As default, but the target anchor labels are exact (no "
                "eroded/jittered boundaries).", noisy_anchor=False),
]
TINY_CONFIG = make_config(
    "tiny",
    "32x32, a handful of examples per split, for tests.",
    image_size=32,
    num_source_train=4,
    num_source_val=2,
    num_target_train=4,
    num_target_val=2,
    num_target_test=3,
    target_anchor_count=2,
)

class Builder(RemovesIncompleteBuilds, tfds.core.GeneratorBasedBuilder,
              skip_registration=already_registered("sim2real_rooms")):
    """Procedural synthetic (source) -> real-like (target) indoor scenes."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "Initial release.",
        "1.1.0": "Architecture (pilasters, cut corners, platforms, beams, attic slopes) in "
        "the layout classes; overlapping source/target camera pitch; milder target sensor "
        "noise.",
    }
    BUILDER_CONFIGS: ClassVar[list[Sim2RealRoomsConfig]] = [
        DEFAULT_CONFIG,
        MATCHED_CONFIG,
        *ANCHOR_CONFIGS,
        TINY_CONFIG,
    ]
    DEFAULT_CONFIG_NAME = "default"
    # Worker processes that render a split (the output does not depend on it); the main
    # process encodes and writes, so more than a few workers gain little.
    NUM_WORKERS = min(4, multiprocessing.cpu_count())

    def _info(self) -> tfds.core.DatasetInfo:
        s, k = self.builder_config.image_size, NUM_KEYPOINTS
        features = tfds.features.FeaturesDict(
            {
                conventions.IMAGE: tfds.features.Image(shape=(s, s, 3), dtype=np.uint8),
                conventions.NORMALS: tfds.features.Tensor(
                    shape=(s, s, 3),
                    dtype=np.float32,
                    encoding=tfds.features.Encoding.ZLIB,
                    doc="Unit normals, camera frame (x right, y up, z toward camera); 0 invalid.",
                ),
                conventions.NORMALS_MASK: tfds.features.Tensor(
                    shape=(s, s), dtype=np.bool_, encoding=tfds.features.Encoding.ZLIB
                ),
                conventions.SEGMENTATION: tfds.features.LabeledImage(
                    labels=list(CLASS_NAMES), shape=(s, s, 1), doc="Class ids, 0 = void (ignore)."
                ),
                conventions.DEPTH: tfds.features.Tensor(
                    shape=(s, s),
                    dtype=np.float32,
                    encoding=tfds.features.Encoding.ZLIB,
                    doc="Metres along the viewing axis; 0 where invalid.",
                ),
                conventions.KEYPOINTS: tfds.features.Tensor(
                    shape=(k, 3),
                    dtype=np.float32,
                    doc="x, y in [0, 1] (top-left origin, y down), depth in metres; 0 if hidden.",
                ),
                conventions.KEYPOINTS_VISIBLE: tfds.features.Tensor(shape=(k,), dtype=np.bool_),
                HAS_ANCHOR: tfds.features.Scalar(
                    dtype=np.bool_, doc="False: segmentation/keypoints are unlabeled (zeros)."
                ),
                conventions.EXAMPLE_ID: tfds.features.Text(),
            }
        )
        return self.dataset_info_from_configs(
            features=features,
            supervised_keys=None,
            homepage="https://arxiv.org/abs/1908.06079",
            metadata=tfds.core.MetadataDict(
                class_names=list(CLASS_NAMES),
                keypoint_names=list(KEYPOINT_NAMES),
                split_domains={name: generator.SPLITS[name][0] for name in SPLIT_NAMES},
                normal_frame="camera: x right, y up, z toward the camera",
                depth_unit="metres along the viewing axis",
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Everything is generated locally.
        return {name: self._generate_examples(name) for name in SPLIT_NAMES}

    def _generate_examples(self, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
        cfg = self.builder_config
        spec = cfg.generation_spec()
        n = cfg.num_examples(split)
        anchored = (
            generator.anchor_indices(cfg.seed, n, cfg.target_anchor_count)
            if split == "target_train"
            else None
        )
        jobs = [(spec, split, i, anchored is None or i in anchored) for i in range(n)]
        yield from enumerate(_render_all(jobs, self.NUM_WORKERS))


def _render_job(job: tuple) -> dict[str, Any]:
    spec, split, index, has_anchor = job
    return generator.generate_example(spec, split, index, has_anchor)


def _render_all(jobs: list[tuple], num_workers: int) -> Iterator[dict[str, Any]]:
    """Examples in job order; forked workers when worthwhile (numpy only in the children)."""
    use_workers = (
        num_workers > 1
        and len(jobs) >= _MIN_EXAMPLES_FOR_WORKERS
        and sys.platform.startswith("linux")
    )
    if not use_workers:
        yield from map(_render_job, jobs)
        return
    with multiprocessing.get_context("fork").Pool(num_workers) as pool:
        yield from pool.imap(_render_job, jobs, chunksize=4)
