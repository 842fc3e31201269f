"""TFDS builder for SfSNet's synthetic faces ("SfSsyn"), the source domain of the face setting."""

from __future__ import annotations

import collections
import json
import re
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from tada_keras import conventions as C

try:
    from ..common import image_io, split_checks
    from ..common.face_features import face_features
    from ..common.incomplete_builds import RemovesIncompleteBuilds
    from ..common.registration import already_registered
    from ..face_landmarks import face_region, head_pose, landmarks_file, splits
except ImportError:  # `datasets/` imported as a top-level folder (no parent package).
    from tada_datasets.common import image_io, split_checks
    from tada_datasets.common.face_features import face_features
    from tada_datasets.common.incomplete_builds import RemovesIncompleteBuilds
    from tada_datasets.common.registration import already_registered
    from tada_datasets.face_landmarks import face_region, head_pose, landmarks_file, splits

ROOT_DIRNAME = "DATA_pose_15"
NUM_LIGHT_COEFFS = 27
# Modalities read for every example; a render missing any of them is skipped and counted.
REQUIRED_MODALITIES = ("face", "normal", "mask", "light")
# Present in the release but not read (depth's encoding is undocumented).
UNUSED_MODALITIES = ("albedo", "depth")
_FILE_RE = re.compile(r"^(\d+)_(face|normal|mask|albedo|depth|light)_(\d+)_(\d+)\.(png|txt)$")
# What each PNG should hold, for the error raised when one cannot be decoded.
_EXPECTED = {
    "face": "the rendered face, an 8-bit RGB PNG",
    "normal": "an 8-bit RGB normal map PNG (n = 2 v / 255 - 1)",
    "mask": "an 8-bit face mask PNG (255 = face)",
}
_INVALID_NORMALS = "all invalid (no pixel decodes to a unit vector, e.g. an all-black PNG)"
_INVALID_NORMALS_HINT = (
    "Check that they are SfSNet's 8-bit normal PNGs (n = 2 v / 255 - 1) and that the manual "
    "directory holds the release's DATA_pose_15.")

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
SfSNet's synthetic data cannot be downloaded automatically.
1. Request access with the form linked from https://github.com/senguptaumd/SfSNet (README,
   "research purposes only"; the archive is about 120 GB).
2. Unpack it into the manual directory so that these paths exist:
     <manual_dir>/{ROOT_DIRNAME}/<dddd>/<nnnnnn>_face_<i>_<j>.png      (the rendered image)
     <manual_dir>/{ROOT_DIRNAME}/<dddd>/<nnnnnn>_normal_<i>_<j>.png    (8-bit normals)
     <manual_dir>/{ROOT_DIRNAME}/<dddd>/<nnnnnn>_mask_<i>_<j>.png
     <manual_dir>/{ROOT_DIRNAME}/<dddd>/<nnnnnn>_light_<i>_<j>.txt     (27 SH coefficients)
   (albedo and depth PNGs may be present; they are not read).
3. Anchor labels (optional but needed for the anchor task and the face-region mask): run
     python -m tada_datasets.face_landmarks.annotate --images_dir <manual_dir> \\
         --pattern '{ROOT_DIRNAME}/*/*_face_*.png' \\
         --out <manual_dir>/{landmarks_file.LANDMARKS_FILENAME}
4. Config `frontal` only: put the target's pose histogram at
     <manual_dir>/{head_pose.TARGET_HISTOGRAM_FILENAME}
   written by `python -m tada_datasets.facewarehouse.pose_histogram`.
The default manual directory is ~/tensorflow_datasets/downloads/manual/; override it with
`tfds build --manual_dir=...`.
"""


class SfsnetConfig(tfds.core.BuilderConfig):
    """`all` keeps every complete render; `frontal` keeps a target-pose-matched subset."""

    def __init__(self, *, frontal: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.frontal = frontal


def decode_sfsnet_normals(png: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-bit SfSNet normal PNG (H, W, 3) -> (project-frame unit normals, valid mask).

    SfSNet stores n = 2 v / 255 - 1 with R = image-down, G = image-right, B = toward the
    camera (SfSNet `spherical_harmonics.py` get_sphere_normals). The project frame is
    x right, y up, z toward the camera, so n_project = (G, -R, B).
    """
    n = png[..., :3].astype(np.float32) * (2.0 / 255.0) - 1.0
    cam = np.stack([n[..., 1], -n[..., 0], n[..., 2]], axis=-1)
    norm = np.linalg.norm(cam, axis=-1, keepdims=True)
    # Background pixels, black (norm sqrt(3)) or grey (norm ~0), are not unit vectors.
    valid = np.abs(norm[..., 0] - 1.0) < 0.25
    cam = np.where(valid[..., None], cam / np.maximum(norm, 1e-6), 0.0).astype(np.float32)
    return cam, valid


def _read_png(path: epath.Path, modality: str) -> np.ndarray:
    arr = image_io.read_image(path, expected=_EXPECTED[modality])
    if arr.dtype != np.uint8:
        raise ValueError(f"{path}: expected an 8-bit PNG, got dtype {arr.dtype}")
    return arr


def _to_rgb(arr: np.ndarray, path) -> np.ndarray:
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return arr[..., :3]
    raise ValueError(f"{path}: unexpected image shape {arr.shape}")


def _read_light(path: epath.Path) -> np.ndarray:
    try:
        values = np.array(path.read_text().split(), np.float32)
    except ValueError as e:
        raise ValueError(f"{path}: unparsable SH lighting ({e})") from e
    if values.shape != (NUM_LIGHT_COEFFS,):
        raise ValueError(f"{path}: expected {NUM_LIGHT_COEFFS} SH coefficients, "
                         f"found {values.size}")
    return values


class Builder(RemovesIncompleteBuilds, tfds.core.GeneratorBasedBuilder,
              skip_registration=already_registered("sfsnet_synthetic")):
    """SfSNet synthetic faces with camera-frame normals and 68 3D landmark anchor labels."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS: ClassVar = [
        SfsnetConfig(name="all", description="Every complete render."),
        SfsnetConfig(
            name="frontal",
            frontal=True,
            description=(
                "Renders selected so that their estimated head-pose histogram follows the "
                "target's (substitute for the paper's re-rendered SfSsyn-front)."
            ),
        ),
    ]
    DEFAULT_CONFIG_NAME = "all"

    def _info(self) -> tfds.core.DatasetInfo:
        k = landmarks_file.NUM_LANDMARKS
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                **face_features(k),
                "identity": tfds.features.Text(),
                "light": tfds.features.Tensor(shape=(NUM_LIGHT_COEFFS,), dtype=np.float32),
            }),
            supervised_keys=(C.IMAGE, C.NORMALS),
            homepage="https://github.com/senguptaumd/SfSNet",
            metadata=tfds.core.MetadataDict(),
        )

    # --- Listing ----------------------------------------------------------------------------

    def _list_render_sets(self, root: epath.Path):
        """Complete render sets sorted by key, and the skipped incomplete ones."""
        sets = collections.defaultdict(dict)
        for folder in sorted(root.iterdir(), key=lambda p: p.name):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                m = _FILE_RE.match(path.name)
                if m:
                    ident, modality, i, j, _ = m.groups()
                    sets[(folder.name, ident, i, j)][modality] = path
        complete, incomplete = [], []
        for key in sorted(sets):
            missing = [m for m in REQUIRED_MODALITIES if m not in sets[key]]
            (incomplete if missing else complete).append((key, sets[key], missing))
        return complete, incomplete

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual = epath.Path(dl_manager.manual_dir)
        root = manual / ROOT_DIRNAME
        if not root.is_dir():
            raise FileNotFoundError(
                f"Missing {root}.\n\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")
        complete, incomplete = self._list_render_sets(root)
        if not complete:
            raise FileNotFoundError(
                f"No complete render set (<nnnnnn>_{{face,normal,mask}}_<i>_<j>.png + light "
                f".txt) under {root}/<dddd>/.\n\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")
        if incomplete:
            (folder, ident, i, j), _, missing = incomplete[0]
            logging.warning(
                "SfSNet: skipped %d incomplete render sets; first: %s/%s/%s_*_%s_%s lacks %s",
                len(incomplete), root, folder, ident, i, j, missing)
        self.info.metadata["skipped_incomplete_sets"] = len(incomplete)
        self.info.metadata["complete_sets"] = len(complete)

        landmarks = self._read_landmarks(manual)
        identity_split = splits.split_groups(key[1] for key, _, _ in complete)
        by_split = {"train": [], "validation": [], "test": []}
        for key, paths, _ in complete:
            by_split[identity_split[key[1]]].append((key, paths))
        tallies = {
            name: split_checks.InvalidNormalsTally(
                "SfSNet", name, root, _INVALID_NORMALS, _INVALID_NORMALS_HINT)
            for name in by_split}
        self.info.metadata["skipped_invalid_normals"] = dict.fromkeys(by_split, 0)

        num_identities = collections.Counter(identity_split.values())
        why_empty = {
            name: (f"no identity falls in it: the 70/15/15 split by identity of the "
                   f"{len(identity_split)} identities under {root} gives "
                   + ", ".join(f"{n} {num_identities[n]}" for n in by_split)
                   + " (every split needs at least 4 identities)")
            for name in by_split}
        if_all_empty = f"no render to write under {root}"
        if self.builder_config.frontal:
            by_split, why_frontal, if_all_empty = self._select_frontal(
                manual, by_split, landmarks, tallies)
            why_empty.update(why_frontal)
            for name, items in by_split.items():
                if not items:  # Never written, so its skipped renders are reported here.
                    self._finish_tally(tallies[name])
        by_split = split_checks.drop_empty_splits("SfSNet", by_split, why_empty, if_all_empty)
        return {
            name: self._generate_examples(items, manual, landmarks, tallies[name])
            for name, items in by_split.items()
        }

    def _finish_tally(self, tally: split_checks.InvalidNormalsTally) -> None:
        self.info.metadata["skipped_invalid_normals"][tally.split] = tally.finish()

    def _read_landmarks(self, manual: epath.Path):
        path = manual / landmarks_file.LANDMARKS_FILENAME
        if not path.exists():
            logging.warning(
                "SfSNet: %s not found: keypoints will be empty (all invisible) and "
                "normals_mask falls back to the rendered face mask. See the instructions.",
                path)
            return {}
        return landmarks_file.read_landmarks(path)

    # --- Examples ---------------------------------------------------------------------------

    def _load(self, key, paths, manual: epath.Path, landmarks):
        return self._load_checked(key, paths, manual, landmarks)[0]

    def _load_checked(self, key, paths, manual: epath.Path, landmarks):
        """(example, number of valid pixels in the normal map, before any mask)."""
        folder, ident, i, j = key
        image = _to_rgb(_read_png(paths["face"], "face"), paths["face"])
        normal_png = _read_png(paths["normal"], "normal")
        if normal_png.ndim != 3 or normal_png.shape[-1] < 3:
            raise ValueError(f"{paths['normal']}: expected an RGB normal map, "
                             f"got shape {normal_png.shape}")
        mask_png = _read_png(paths["mask"], "mask")
        mask = (mask_png[..., 0] if mask_png.ndim == 3 else mask_png) > 127
        h, w = image.shape[:2]
        for name, arr in (("normal", normal_png), ("mask", mask_png)):
            if arr.shape[:2] != (h, w):
                raise ValueError(
                    f"{paths[name]}: size {arr.shape[:2]} differs from the image "
                    f"{paths['face']} ({h}, {w})")
        normals, valid = decode_sfsnet_normals(normal_png)
        num_valid = int(valid.sum())
        valid &= mask
        rel = f"{ROOT_DIRNAME}/{folder}/{paths['face'].name}"
        record = landmarks.get(rel)
        region = None
        if record is not None:
            landmarks_file.check_record_matches_image(
                record, rel, h, w, manual / landmarks_file.LANDMARKS_FILENAME)
            region = face_region.face_region_mask(record.keypoints, record.visible, h, w)
        else:
            record = landmarks_file.empty_record(h, w)
        normals_mask = valid & region if region is not None else valid
        return {
            C.IMAGE: image,
            C.NORMALS: np.where(normals_mask[..., None], normals, 0.0).astype(np.float32),
            C.NORMALS_MASK: normals_mask,
            C.KEYPOINTS: record.keypoints.astype(np.float32),
            C.KEYPOINTS_VISIBLE: record.visible.astype(bool),
            C.EXAMPLE_ID: f"{ROOT_DIRNAME}/{folder}/{ident}_{i}_{j}",
            "identity": ident,
            "light": _read_light(paths["light"]),
        }, num_valid

    def _select_frontal(self, manual: epath.Path, by_split, landmarks, tallies):
        """(selected renders by split, why each empty split is empty, error if all are)."""
        hist_path = manual / head_pose.TARGET_HISTOGRAM_FILENAME
        if not hist_path.exists():
            raise FileNotFoundError(
                f"Missing {hist_path} (needed by config 'frontal').\n\n"
                f"{MANUAL_DOWNLOAD_INSTRUCTIONS}")
        target = head_pose.read_histogram(hist_path)
        source = head_pose.PoseHistogram(target.yaw_edges, target.pitch_edges)
        poses = {}
        for name, items in by_split.items():
            for key, paths in items:
                ex, num_valid = self._load_checked(key, paths, manual, landmarks)
                if not tallies[name].keep(paths["normal"], num_valid):
                    continue
                pose = head_pose.pose_from_normals(ex[C.NORMALS], ex[C.NORMALS_MASK])
                if pose is not None:
                    poses[key] = pose
                    source.add(*pose)
        keep_prob = head_pose.acceptance_table(target, source)
        selected_hist = head_pose.PoseHistogram(target.yaw_edges, target.pitch_edges)
        out = {}
        for name, items in by_split.items():
            out[name] = []
            for key, paths in items:
                if key not in poses:
                    continue
                b = source.bin_of(*poses[key])
                if head_pose.hashed_uniform("/".join(key)) < keep_prob[b]:
                    out[name].append((key, paths))
                    selected_hist.add(*poses[key])
        logging.info(
            "SfSNet frontal: kept %d of %d renders.\nTarget (%s):\n%s\nSource, all renders:\n"
            "%s\nSource, selected:\n%s", sum(len(v) for v in out.values()), len(poses),
            hist_path, target.marginals_text(), source.marginals_text(),
            selected_hist.marginals_text())
        self.info.metadata["pose_histograms"] = json.dumps({
            "target": target.to_dict(), "source_all": source.to_dict(),
            "source_selected": selected_hist.to_dict()})
        why_empty = {
            name: (f"the frontal pose selection kept none of its {len(by_split[name])} "
                   f"renders (target histogram {hist_path})")
            for name in by_split if by_split[name]}
        if_all_empty = (
            f"the frontal pose selection kept no render: {len(poses)} of the "
            f"{sum(len(v) for v in by_split.values())} complete renders under "
            f"{manual / ROOT_DIRNAME} have a pose estimate, and none falls in a pose bin that "
            f"the target histogram {hist_path} fills. Check that this histogram was written by "
            "`python -m tada_datasets.facewarehouse.pose_histogram` (the log shows both).")
        return out, why_empty, if_all_empty

    def _generate_examples(self, items, manual: epath.Path, landmarks, tally):
        for key, paths in items:
            example, num_valid = self._load_checked(key, paths, manual, landmarks)
            if tally.keep(paths["normal"], num_valid):
                yield "_".join(key), example
        self._finish_tally(tally)
