"""TFDS builder: NYU Depth v2 labeled subset (1449 images) with surface normals."""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import pickle
from typing import ClassVar

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath

from tada_keras import conventions as C

from ..common.image_io import read_png
from ..common.incomplete_builds import RemovesIncompleteBuilds
from ..common.manual_dir import require_files
from ..common.normals_feature import UnitNormals
from ..common.registration import already_registered
from . import conversions

MAT_FILE = "nyu_depth_v2_labeled.mat"
SPLITS_FILE = "splits.mat"
MAPPING_FILE = "classMapping40.mat"
EIGEN_NORMALS = "normals_gt/normals/{index0:04d}.png"  # 0-based
EIGEN_MASKS = "normals_gt/masks/{index0:04d}.png"
LADICKY_PNG = "nyu_normals_gt/{split}/{index1:05d}.png"  # 1-based
LADICKY_PKLZ = "surfacenormal_metadata/all_normals.pklz"

SCENE = "scene"  # e.g. "kitchen_0001a"
SCENE_TYPE = "scene_type"  # e.g. "kitchen"
DEPTH_FILLED = "depth_filled"

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
Put these files in `manual_dir` (default ~/tensorflow_datasets/downloads/manual/; set
another with `tfds build --manual_dir=DIR` or tfds.download.DownloadConfig(manual_dir=DIR)).

Every config:
  {MAT_FILE}   (2.8 GB, MATLAB v7.3)
      http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat
  {SPLITS_FILE}                 http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat
  {MAPPING_FILE}           https://github.com/ankurhanda/nyuv2-meta-data (894 -> 40 classes)

Config `eigen` (Eigen & Fergus, https://cs.nyu.edu/~deigen/dnl/normals_gt.tgz): extract the
archive in manual_dir so that these exist (0-based, 0000..1448):
  normals_gt/normals/0000.png ...   normals_gt/masks/0000.png ...

Config `ladicky_pklz` (FAIR copy of Ladicky et al.,
https://dl.fbaipublicfiles.com/fair_self_supervision_benchmark/nyuv2_surfacenormal_metadata.zip):
unzip in manual_dir so that this exists:
  {LADICKY_PKLZ}
  (a gzip pickle: trusted input only; loading it needs about 8 GB of RAM)

Config `ladicky_png` (https://www.inf.ethz.ch/personal/ladickyl/nyu_normals_gt.zip): unzip in
manual_dir so that these exist (1-based, 00001..01449, in the official split's folder):
  nyu_normals_gt/train/00003.png ...   nyu_normals_gt/test/00001.png ...

The axis convention of each normal source is documented (and partly assumed) in the
README; check it on your copy with
  python -m tada_datasets.nyu_depth_v2_normals.visual_check --manual_dir DIR --config eigen
"""


@dataclasses.dataclass
class NyuNormalsConfig(tfds.core.BuilderConfig):
    """Which normal source to read, how its axes map to ours, how big validation is.

    Attributes:
      normals_source: "eigen", "ladicky_pklz" or "ladicky_png".
      normal_axes: stored channels -> (x right, y up, z toward camera), e.g. "+0,-1,+2"
        (see conversions.parse_axes). None uses the source's documented default.
      validation_percent: share of the official training *scenes* moved to validation.
    """

    normals_source: str = "eigen"
    normal_axes: str | None = None
    validation_percent: int = 10


def _config(name: str, source: str, description: str) -> NyuNormalsConfig:
    return NyuNormalsConfig(name=name, normals_source=source, description=description)


class Builder(RemovesIncompleteBuilds, tfds.core.GeneratorBasedBuilder,
              skip_registration=already_registered("nyu_depth_v2_normals")):
    """NYU Depth v2 labeled images with normals, NYU-40 labels, depth and scene type."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS: ClassVar[list] = [
        _config("eigen", "eigen", "Normals from Eigen & Fergus normals_gt (PNG + mask)."),
        _config("ladicky_pklz", "ladicky_pklz", "Ladicky normals from FAIR's all_normals.pklz."),
        _config("ladicky_png", "ladicky_png", "Ladicky normals from nyu_normals_gt/*.png."),
    ]
    DEFAULT_CONFIG_NAME = "eigen"

    def _info(self) -> tfds.core.DatasetInfo:
        zlib = tfds.features.Encoding.ZLIB
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    C.IMAGE: tfds.features.Image(shape=(None, None, 3), dtype=np.uint8),
                    C.NORMALS: UnitNormals(shape=(None, None, 3)),
                    C.NORMALS_MASK: tfds.features.Tensor(
                        shape=(None, None), dtype=np.bool_, encoding=zlib
                    ),
                    C.SEGMENTATION: tfds.features.Image(shape=(None, None, 1), dtype=np.uint8),
                    C.DEPTH: tfds.features.Tensor(
                        shape=(None, None), dtype=np.float32, encoding=zlib
                    ),
                    DEPTH_FILLED: tfds.features.Tensor(
                        shape=(None, None), dtype=np.float32, encoding=zlib
                    ),
                    SCENE: tfds.features.Text(),
                    SCENE_TYPE: tfds.features.Text(),
                    C.EXAMPLE_ID: tfds.features.Text(),
                }
            ),
            supervised_keys=None,
            homepage="https://cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html",
        )

    # --- splits ----------------------------------------------------------------------

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = epath.Path(dl_manager.manual_dir)
        cfg = self.builder_config
        if cfg.normals_source not in conversions.DEFAULT_NORMAL_AXES:
            raise ValueError(f"unknown normals_source {cfg.normals_source!r}")
        conversions.parse_axes(self._axes())  # fail early on a bad override
        required = [MAT_FILE, SPLITS_FILE, MAPPING_FILE]
        required += {
            "eigen": ["normals_gt/normals", "normals_gt/masks"],
            "ladicky_pklz": [LADICKY_PKLZ],
            "ladicky_png": ["nyu_normals_gt"],
        }[cfg.normals_source]
        _require(root, required)

        train, test = read_splits(root / SPLITS_FILE)
        map_class = read_class_mapping(root / MAPPING_FILE)
        with LabeledMat(root / MAT_FILE) as mat:
            num_images = mat.num_images
            bad = [i for i in np.concatenate([train, test]) if not 1 <= i <= num_images]
            if bad:
                raise ValueError(
                    f"{root / SPLITS_FILE}: index {bad[0]} is outside 1..{num_images} of "
                    f"{root / MAT_FILE} (wrong or truncated file?)"
                )
            scenes = {int(i): mat.scene(int(i) - 1) for i in train}
        validation = [
            i
            for i in train
            if conversions.is_validation_scene(scenes[int(i)], cfg.validation_percent)
        ]
        train = sorted({int(i) for i in train} - {int(i) for i in validation})
        if cfg.normals_source == "eigen":
            _require(root, self._normal_paths(int(test[0]), "test"))
        elif cfg.normals_source == "ladicky_png":  # the reader accepts either folder
            first = [self._normal_paths(int(test[0]), split)[0] for split in ("test", "train")]
            if not any((root / p).exists() for p in first):
                _require(root, first[:1])
        official = {int(i): "train" for i in list(train) + list(validation)}
        official.update({int(i): "test" for i in test})
        reader = _NormalsReader(root, cfg.normals_source, self._axes(), official, num_images)
        splits = {"train": train, "validation": validation, "test": test}
        # TFDS cannot write an empty split (e.g. validation_percent=0): leave it out.
        return {
            name: self._generate_examples(root, indices, map_class, reader)
            for name, indices in splits.items()
            if len(indices)
        }

    def _axes(self) -> str:
        cfg = self.builder_config
        return cfg.normal_axes or conversions.DEFAULT_NORMAL_AXES[cfg.normals_source]

    def _normal_paths(self, index1: int, split: str) -> list[str]:
        source = self.builder_config.normals_source
        if source == "eigen":
            return [EIGEN_NORMALS.format(index0=index1 - 1), EIGEN_MASKS.format(index0=index1 - 1)]
        return [LADICKY_PNG.format(split=split, index1=index1)]

    def _generate_examples(self, root, indices, map_class, reader):
        mat_path = root / MAT_FILE
        with LabeledMat(mat_path) as mat:
            for index1 in sorted(int(i) for i in indices):
                i = index1 - 1
                where = f"{mat_path} (image {index1}, 1-based)"
                try:
                    image = mat.image(i)
                    labels = mat.labels(i)
                    depth_raw = mat.matrix("rawDepths", i)
                    depth_filled = mat.matrix("depths", i)
                    scene, scene_type = mat.scene(i), mat.scene_type(i)
                except (OSError, KeyError, ValueError) as err:
                    raise ValueError(f"{where}: {err}") from err
                height, width = image.shape[:2]
                for name, array in (
                    ("labels", labels),
                    ("rawDepths", depth_raw),
                    ("depths", depth_filled),
                ):
                    if array.shape != (height, width):
                        raise ValueError(
                            f"{where}: {name} has shape {array.shape}, image {(height, width)}"
                        )
                try:
                    label40 = conversions.map_894_to_40(labels, map_class)
                except ValueError as err:
                    raise ValueError(f"{where}: {err}") from err
                normals, mask = reader.read(index1, (height, width))
                depth_raw = np.where(np.isfinite(depth_raw) & (depth_raw > 0), depth_raw, 0)
                yield (
                    f"{index1:04d}",
                    {
                        C.IMAGE: image,
                        C.NORMALS: normals,
                        C.NORMALS_MASK: mask,
                        C.SEGMENTATION: label40[..., None],
                        C.DEPTH: depth_raw.astype(np.float32),
                        DEPTH_FILLED: depth_filled.astype(np.float32),
                        SCENE: scene,
                        SCENE_TYPE: scene_type,
                        C.EXAMPLE_ID: f"{index1:04d}",
                    },
                )


# --- File readers (I/O; the conversions they call are in conversions.py) ---------------


def _require(root: epath.Path, relative_paths) -> None:
    """Raises FileNotFoundError with the instructions and the first missing path."""
    require_files(root, relative_paths, MANUAL_DOWNLOAD_INSTRUCTIONS)


def read_splits(path: epath.Path):
    """splits.mat -> (trainNdxs, testNdxs), 1-based int arrays (MATLAB 5 file)."""
    mat = _loadmat(path)
    try:
        train = np.asarray(mat["trainNdxs"]).astype(np.int64).ravel()
        test = np.asarray(mat["testNdxs"]).astype(np.int64).ravel()
    except KeyError as err:
        raise ValueError(f"{path}: no {err} (is this NYU's splits.mat?)") from err
    if np.intersect1d(train, test).size or train.size == 0 or test.size == 0:
        raise ValueError(f"{path}: trainNdxs and testNdxs must be non-empty and disjoint")
    return np.sort(train), np.sort(test)


def read_class_mapping(path: epath.Path) -> np.ndarray:
    """classMapping40.mat -> mapClass (894,) uint8, checked against the published table."""
    mat = _loadmat(path)
    if "mapClass" not in mat:
        raise ValueError(f"{path}: no 'mapClass' (is this classMapping40.mat?)")
    names = None
    if "className" in mat:
        names = [str(np.asarray(n).ravel()[0]) for n in np.asarray(mat["className"]).ravel()]
    map_class = np.asarray(mat["mapClass"]).ravel().astype(np.uint8)
    try:
        conversions.check_class_mapping(map_class, names)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    return map_class


def _loadmat(path: epath.Path) -> dict:
    import scipy.io

    try:
        with tf.io.gfile.GFile(os.fspath(path), "rb") as f:
            return scipy.io.loadmat(io.BytesIO(f.read()))
    except Exception as err:  # scipy raises several types for corrupt files
        raise ValueError(f"{path}: cannot read as a MATLAB 5 .mat file ({err})") from err


class LabeledMat:
    """Lazy, per-index access to nyu_depth_v2_labeled.mat (HDF5, axes reversed)."""

    def __init__(self, path: epath.Path):
        self.path = path

    def __enter__(self):
        import h5py

        try:
            self.file = h5py.File(os.fspath(self.path), "r")
        except OSError as err:
            raise ValueError(
                f"{self.path}: cannot open as MATLAB v7.3/HDF5 (truncated or corrupt?): {err}"
            ) from err
        try:
            images = self.file["images"]
            self.num_images = images.shape[0]
            if images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(f"'images' has shape {images.shape}, expected (N, 3, W, H)")
            for key in ("depths", "rawDepths", "labels"):
                if self.file[key].shape != (self.num_images,) + images.shape[2:]:
                    raise ValueError(
                        f"{key!r} has shape {self.file[key].shape}, expected "
                        f"{(self.num_images,) + images.shape[2:]}"
                    )
            for key in ("scenes", "sceneTypes"):
                if self.file[key].size != self.num_images:
                    raise ValueError(f"{key!r} has {self.file[key].size} entries")
        except (KeyError, ValueError) as err:
            self.file.close()
            raise ValueError(f"{self.path}: {err}") from err
        return self

    def __exit__(self, *exc):
        self.file.close()

    def image(self, i: int) -> np.ndarray:
        image = conversions.matlab_image_to_hwc(self.file["images"][i])
        if image.dtype != np.uint8:
            raise ValueError(f"'images' has dtype {image.dtype}, expected uint8")
        return np.ascontiguousarray(image)

    def matrix(self, key: str, i: int) -> np.ndarray:
        return conversions.matlab_matrix_to_hw(self.file[key][i])

    def labels(self, i: int) -> np.ndarray:
        labels = self.matrix("labels", i)
        if labels.dtype.kind not in "ui":
            raise ValueError(f"'labels' has dtype {labels.dtype}, expected uint16")
        return labels

    def scene(self, i: int) -> str:
        return self._string("scenes", i)

    def scene_type(self, i: int) -> str:
        return self._string("sceneTypes", i)

    def _string(self, key: str, i: int) -> str:
        refs = self.file[key]
        ref = refs[0, i] if refs.shape[0] == 1 else refs[i, 0]
        target = self.file[ref]
        empty = bool(target.attrs.get("MATLAB_empty", 0))
        return conversions.decode_matlab_string(target[()], empty=empty)


class _NormalsReader:
    """Reads one image's normals from the configured source, in the project frame."""

    def __init__(self, root, source, axes, official_split, num_images):
        self.root, self.source, self.axes = root, source, axes
        self.official_split = official_split
        self.num_images = num_images
        self._pklz = None

    def read(self, index1: int, shape_hw):
        if self.source == "eigen":
            normal_path = self.root / EIGEN_NORMALS.format(index0=index1 - 1)
            mask_path = self.root / EIGEN_MASKS.format(index0=index1 - 1)
            png, mask_png = read_png(normal_path), read_png(mask_path)
            _check_shape(normal_path, png, shape_hw)
            _check_shape(mask_path, mask_png, shape_hw)
            normals, mask = conversions.decode_eigen_normals(png, mask_png, self.axes)
            path = normal_path
        elif self.source == "ladicky_png":
            split = self.official_split[index1]
            path = self.root / LADICKY_PNG.format(split=split, index1=index1)
            if not path.exists():  # tolerate a file filed under the other split
                other = self.root / LADICKY_PNG.format(
                    split="test" if split == "train" else "train", index1=index1
                )
                path = other if other.exists() else path
            png = read_png(path)
            _check_shape(path, png, shape_hw)
            normals, mask = conversions.decode_ladicky_png_normals(png, self.axes)
        else:
            path = self.root / LADICKY_PKLZ
            nxyz, valid = self._pklz_item(path, index1)
            _check_shape(path, nxyz, shape_hw)
            normals, mask = conversions.decode_ladicky_array_normals(nxyz, valid, self.axes)
        return normals, mask

    def _pklz_item(self, path, index1):
        if self._pklz is None:
            self._pklz = load_ladicky_pklz(path, self.num_images)
        normals, masks, position = self._pklz
        if index1 not in position:
            raise ValueError(f"{path}: no entry for NYU image {index1} in all_filenames")
        k = position[index1]
        return normals[k], masks[k]


def load_ladicky_pklz(path: epath.Path, num_images: int):
    """all_normals.pklz -> (all_normals, all_valid_depth_masks, {1-based index: row}).

    ``all_filenames`` holds the per-image .mat names ('000001', ...), i.e. the 1-based NYU
    index (inferred, see README); rows are matched through them, not by position.
    """
    try:
        with tf.io.gfile.GFile(os.fspath(path), "rb") as raw, gzip.GzipFile(fileobj=raw) as f:
            data = pickle.load(f, encoding="latin1")
    except Exception as err:
        raise ValueError(f"{path}: cannot read the gzip pickle (truncated?): {err}") from err
    try:
        normals = np.asarray(data["all_normals"])
        masks = data.get("all_valid_depth_masks")
        names = [str(n) for n in data["all_filenames"]]
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: missing key {err}") from err
    if normals.ndim != 4 or normals.shape[-1] != 3 or normals.shape[0] != len(names):
        raise ValueError(
            f"{path}: all_normals has shape {normals.shape} for {len(names)} names; "
            f"expected (N, H, W, 3)"
        )
    if masks is not None and np.shape(masks) != normals.shape[:3]:
        raise ValueError(f"{path}: all_valid_depth_masks has shape {np.shape(masks)}")
    if masks is None:
        masks = [None] * len(names)
    try:
        index = [int(os.path.basename(n).split(".")[0].split("_")[0]) for n in names]
    except ValueError as err:
        raise ValueError(f"{path}: all_filenames are not NYU indices: {names[:3]}") from err
    if len(set(index)) != len(index) or min(index) < 1 or max(index) > num_images:
        raise ValueError(f"{path}: all_filenames do not map to distinct images 1..{num_images}")
    return normals, masks, {k: row for row, k in enumerate(index)}


def _check_shape(path, array, shape_hw) -> None:
    if tuple(array.shape[:2]) != tuple(shape_hw):
        raise ValueError(f"{path}: shape {array.shape[:2]} does not match the image {shape_hw}")
