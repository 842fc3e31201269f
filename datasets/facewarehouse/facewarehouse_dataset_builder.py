"""TFDS builder for FaceWarehouse (the face target domain), normals rendered from its meshes."""

from __future__ import annotations

import collections
import dataclasses
import json
import re
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from tada_keras import conventions as C

from . import mesh_io, mesh_render

try:
    from ..common import image_io, split_checks
    from ..common.face_features import face_features
    from ..common.incomplete_builds import RemovesIncompleteBuilds
    from ..common.registration import already_registered
    from ..face_landmarks import face_region, landmarks_file, splits
except ImportError:  # `datasets/` imported as a top-level folder (no parent package).
    from tada_datasets.common import image_io, split_checks
    from tada_datasets.common.face_features import face_features
    from tada_datasets.common.incomplete_builds import RemovesIncompleteBuilds
    from tada_datasets.common.registration import already_registered
    from tada_datasets.face_landmarks import face_region, landmarks_file, splits

CAMERA_FILENAME = "camera.json"
VERTEX_INDEX_FILENAME = "landmark_vertex_indices.txt"
_TESTER_RE = re.compile(r"^Tester_(\d+)$")
_POSE_RE = re.compile(r"^pose_(\d+)\.png$")
_INVALID_NORMALS = "empty (the rendered mesh covers no pixel of the photo)"
_INVALID_NORMALS_HINT = (
    f"Check the camera configuration ({CAMERA_FILENAME} or {VERTEX_INDEX_FILENAME}) with "
    "`python -m tada_datasets.facewarehouse.overlay`.")

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
FaceWarehouse cannot be downloaded automatically.
1. Request the data from the authors (http://kunzhou.net/zjugaps/facewarehouse/).
2. Unpack it into the manual directory so that, for every subject k and pose j in 0..19,
     <manual_dir>/[FaceWarehouse_Data_0/]Tester_<k>/TrainingPose/pose_<j>.png
     <manual_dir>/[FaceWarehouse_Data_0/]Tester_<k>/TrainingPose/pose_<j>.land
     <manual_dir>/[FaceWarehouse_Data_0/]Tester_<k>/TrainingPose/pose_<j>.obj
   exist (the Tester_<k> folders may sit directly in manual_dir or one folder below it).
3. Camera (normals are rendered from pose_<j>.obj into the photo's camera):
   - either put {VERTEX_INDEX_FILENAME} in manual_dir: one 0-based mesh vertex index per
     .land point, in .land order (-1 for points without a vertex); the mesh-to-camera pose is
     then estimated per image from the .land points (perspective-n-point);
   - or write {CAMERA_FILENAME} (see the README) with intrinsics and a fixed mesh-to-camera
     transform.
   Check the result with `python -m tada_datasets.facewarehouse.overlay`.
4. Anchor labels (needed for the anchor task and the face-region mask): run
     python -m tada_datasets.face_landmarks.annotate --images_dir <manual_dir> \\
         --pattern '**/TrainingPose/pose_*.png' \\
         --out <manual_dir>/{landmarks_file.LANDMARKS_FILENAME}
The default manual directory is ~/tensorflow_datasets/downloads/manual/; override it with
`tfds build --manual_dir=...`.
"""


@dataclasses.dataclass
class CameraConfig:
    """How meshes are put into each photo's camera (OpenCV frame: x right, y down, z forward).

    Intrinsics are pixels if ``fx`` is set, else ``fx = fy = focal_over_width * W`` and the
    principal point is the image centre (FaceWarehouse photos are 640x480 Kinect frames;
    focal_over_width = 1.0 gives f = 640 px as in public FaceWarehouse tracking code, an
    assumption, not a calibration).
    ``pose``: "landmarks" (estimate R, t per image from the .land points and
    ``landmark_vertex_indices``) or "fixed" (the same ``rotation``/``translation`` for all).
    """

    pose: str = "fixed"
    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    focal_over_width: float = 1.0
    # Default fixed pose: the mesh is already in an OpenGL-style camera frame (y up, z toward
    # the viewer), so only the axes flip. Unverified for FaceWarehouse: check the overlay.
    rotation: tuple = ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0))
    translation: tuple = (0.0, 0.0, 0.0)
    landmark_vertex_indices: tuple | None = None
    max_reprojection_rms_px: float = 10.0

    def intrinsics(self, height: int, width: int) -> mesh_render.Intrinsics:
        if self.fx is not None:
            fy = self.fy if self.fy is not None else self.fx
            cx = self.cx if self.cx is not None else width / 2
            cy = self.cy if self.cy is not None else height / 2
            return mesh_render.Intrinsics(self.fx, fy, cx, cy)
        f = self.focal_over_width * width
        return mesh_render.Intrinsics(f, f, width / 2, height / 2)


def _read_indices(path: epath.Path) -> tuple:
    try:
        return tuple(int(t) for t in path.read_text().split())
    except ValueError as e:
        raise ValueError(f"{path}: expected one integer vertex index per line ({e})") from e


def load_camera_config(manual: epath.Path) -> CameraConfig:
    """Reads ``camera.json`` when present, else picks the default described in the README."""
    cam_path = manual / CAMERA_FILENAME
    idx_path = manual / VERTEX_INDEX_FILENAME
    if cam_path.exists():
        try:
            d = json.loads(cam_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{cam_path}: not valid JSON ({e})") from e
        fields = {f.name for f in dataclasses.fields(CameraConfig)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(
                f"{cam_path}: unknown keys {sorted(unknown)}; allowed {sorted(fields)}")
        if isinstance(d.get("landmark_vertex_indices"), str):
            d["landmark_vertex_indices"] = _read_indices(manual / d["landmark_vertex_indices"])
        cfg = CameraConfig(**d)
    elif idx_path.exists():
        cfg = CameraConfig(pose="landmarks", landmark_vertex_indices=_read_indices(idx_path))
    else:
        logging.warning(
            "FaceWarehouse: neither %s nor %s found; assuming the meshes are already in an "
            "OpenGL-style camera frame. Verify with the overlay figure.", cam_path, idx_path)
        cfg = CameraConfig()
    if cfg.pose not in ("fixed", "landmarks"):
        raise ValueError(f"{cam_path}: pose must be 'fixed' or 'landmarks', got {cfg.pose!r}")
    if cfg.pose == "landmarks" and not cfg.landmark_vertex_indices:
        raise ValueError(f"pose 'landmarks' needs landmark_vertex_indices ({idx_path})")
    return cfg


def find_subjects(manual: epath.Path) -> list[tuple[str, epath.Path]]:
    """(subject name, folder) for every Tester_<k> in manual_dir or one level below."""
    found = {}
    for candidate in [manual] + sorted(p for p in manual.iterdir() if p.is_dir()):
        for p in candidate.iterdir():
            if _TESTER_RE.match(p.name) and p.is_dir():
                if p.name in found:
                    raise ValueError(f"Subject {p.name} found twice: {found[p.name]} and {p}")
                found[p.name] = p
    return sorted(found.items(), key=lambda kv: int(_TESTER_RE.match(kv[0]).group(1)))


def _read_image(path: epath.Path) -> np.ndarray:
    return image_io.read_image(
        path, expected="a photo (an RGB PNG, 640x480 in the release)", mode="RGB")


def mesh_to_camera(
    vertices: np.ndarray, land: np.ndarray, camera: CameraConfig,
    intr: mesh_render.Intrinsics, height: int, width: int, land_path, obj_path,
) -> tuple[np.ndarray, np.ndarray, float]:
    """(R, t, reprojection rms in pixels or -1 for a fixed pose) for one image."""
    if camera.pose == "fixed":
        return (np.asarray(camera.rotation, np.float64),
                np.asarray(camera.translation, np.float64), -1.0)
    idx = np.asarray(camera.landmark_vertex_indices, np.int64)
    if len(idx) != len(land):
        raise ValueError(f"{land_path}: {len(land)} points but the landmark-to-vertex list has "
                         f"{len(idx)} entries")
    if idx.max() >= len(vertices):
        raise ValueError(f"{obj_path}: has {len(vertices)} vertices but the landmark-to-vertex "
                         f"list uses index {idx.max()}")
    use = idx >= 0
    pixels = land[use] * np.array([width, height]) - 0.5  # -> OpenCV pixel-centre coordinates
    r, t, rms = mesh_render.estimate_pose(vertices[idx[use]], pixels, intr)
    return r, t, rms


def make_example(subject: str, folder: epath.Path, pose: int, rel_png: str,
                 camera: CameraConfig, landmarks: dict, landmarks_path) -> dict:
    """Reads one (png, land, obj) triple and renders its normals."""
    base = folder / "TrainingPose" / f"pose_{pose}"
    png, land_path, obj_path = (base.with_suffix(s) for s in (".png", ".land", ".obj"))
    for p in (land_path, obj_path):
        if not p.exists():
            raise FileNotFoundError(f"Missing {p} (needed with {png}).")
    image = _read_image(png)
    h, w = image.shape[:2]
    land = mesh_io.parse_land(land_path.read_text(), source=land_path)
    vertices, faces = mesh_io.parse_obj(obj_path.read_text(), source=obj_path)
    intr = camera.intrinsics(h, w)
    r, t, rms = mesh_to_camera(vertices, land, camera, intr, h, w, land_path, obj_path)
    if rms > camera.max_reprojection_rms_px:
        logging.warning("FaceWarehouse: %s: landmark reprojection rms %.1f px > %.1f px; the "
                        "rendered normals may be misaligned", land_path, rms,
                        camera.max_reprojection_rms_px)
    # An empty render (mesh outside the photo) is returned as is: the builder skips and
    # counts it, and the overlay tool can still show it.
    render = mesh_render.render_normals(vertices, faces, r, t, intr, h, w)
    record = landmarks.get(rel_png)
    region = None
    if record is not None:
        landmarks_file.check_record_matches_image(record, rel_png, h, w, landmarks_path)
        region = face_region.face_region_mask(record.keypoints, record.visible, h, w)
    else:
        record = landmarks_file.empty_record(h, w)
    normals_mask = render.mask & region if region is not None else render.mask
    return {
        C.IMAGE: image,
        C.NORMALS: np.where(normals_mask[..., None], render.normals, 0.0).astype(np.float32),
        C.NORMALS_MASK: normals_mask,
        C.KEYPOINTS: record.keypoints.astype(np.float32),
        C.KEYPOINTS_VISIBLE: record.visible.astype(bool),
        C.EXAMPLE_ID: f"{subject}/TrainingPose/pose_{pose}",
        "subject": subject,
        "land_points": land.astype(np.float32),
        "mesh_to_camera": np.concatenate([r, t[:, None]], axis=1).astype(np.float32),
        "render_mask": render.mask,
    }


def list_examples(manual: epath.Path) -> list[tuple[str, epath.Path, int, str]]:
    """(subject, subject folder, pose index, png path relative to manual_dir), sorted."""
    subjects = find_subjects(manual)
    if not subjects:
        raise FileNotFoundError(
            f"No Tester_<k> folder in {manual} or one level below.\n\n"
            f"{MANUAL_DOWNLOAD_INSTRUCTIONS}")
    out = []
    for subject, folder in subjects:
        poses_dir = folder / "TrainingPose"
        if not poses_dir.is_dir():
            raise FileNotFoundError(f"Missing {poses_dir}.\n\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")
        poses = sorted(int(m.group(1)) for p in poses_dir.iterdir()
                       if (m := _POSE_RE.match(p.name)))
        if not poses:
            raise FileNotFoundError(f"No pose_<j>.png in {poses_dir}.")
        rel_folder = folder.relative_to(manual).as_posix()
        out += [(subject, folder, j, f"{rel_folder}/TrainingPose/pose_{j}.png") for j in poses]
    return out


def read_landmarks_if_present(manual: epath.Path) -> tuple[dict, epath.Path]:
    path = manual / landmarks_file.LANDMARKS_FILENAME
    if not path.exists():
        logging.warning(
            "FaceWarehouse: %s not found: keypoints will be empty (all invisible) and "
            "normals_mask is the whole rendered mesh. See the instructions.", path)
        return {}, path
    return landmarks_file.read_landmarks(path), path


class Builder(RemovesIncompleteBuilds, tfds.core.GeneratorBasedBuilder,
              skip_registration=already_registered("facewarehouse")):
    """FaceWarehouse photos with normals rendered from the fitted meshes, plus anchor labels."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        k = landmarks_file.NUM_LANDMARKS
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                **face_features(k),
                "subject": tfds.features.Text(),
                # The dataset's own .land points, x, y normalised, origin top-left, y down.
                "land_points": tfds.features.Tensor(shape=(None, 2), dtype=np.float32),
                # x_cam = R x_mesh + t, OpenCV camera frame; as used for rendering.
                "mesh_to_camera": tfds.features.Tensor(shape=(3, 4), dtype=np.float32),
                # Every pixel the mesh covers (normals_mask is this AND the landmark region).
                "render_mask": tfds.features.Tensor(
                    shape=(None, None), dtype=np.bool_, encoding=tfds.features.Encoding.ZLIB),
            }),
            supervised_keys=(C.IMAGE, C.NORMALS),
            homepage="http://kunzhou.net/zjugaps/facewarehouse/",
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual = epath.Path(dl_manager.manual_dir)
        examples = list_examples(manual)
        camera = load_camera_config(manual)
        landmarks, landmarks_path = read_landmarks_if_present(manual)
        subject_split = splits.split_groups(s for s, _, _, _ in examples)
        by_split = {"train": [], "validation": [], "test": []}
        for ex in examples:
            by_split[subject_split[ex[0]]].append(ex)
        num_subjects = collections.Counter(subject_split.values())
        why_empty = {
            name: (f"no subject falls in it: the 70/15/15 split by subject of the "
                   f"{len(subject_split)} Tester_<k> folders under {manual} gives "
                   + ", ".join(f"{n} {num_subjects[n]}" for n in by_split)
                   + " (every split needs at least 4 subjects)")
            for name in by_split}
        # The all-empty error is only a guard: list_examples finds at least one subject.
        by_split = split_checks.drop_empty_splits(
            "FaceWarehouse", by_split, why_empty, f"no example under {manual}")
        self.info.metadata["skipped_invalid_normals"] = dict.fromkeys(by_split, 0)
        return {
            name: self._generate_examples(
                items, camera, landmarks, landmarks_path,
                split_checks.InvalidNormalsTally(
                    "FaceWarehouse", name, manual, _INVALID_NORMALS, _INVALID_NORMALS_HINT))
            for name, items in by_split.items()
        }

    def _generate_examples(self, items, camera, landmarks, landmarks_path, tally):
        for subject, folder, pose, rel_png in items:
            example = make_example(
                subject, folder, pose, rel_png, camera, landmarks, landmarks_path)
            obj = folder / "TrainingPose" / f"pose_{pose}.obj"
            if tally.keep(obj, int(example["render_mask"].sum())):
                yield f"{subject}_pose_{pose}", example
        self.info.metadata["skipped_invalid_normals"][tally.split] = tally.finish()
