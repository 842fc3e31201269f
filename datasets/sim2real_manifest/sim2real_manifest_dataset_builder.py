"""TFDS builder ``sim2real_manifest``: your own synthetic (source) and real (target) images
and labels, listed in a manifest, as a dataset every tada_keras command reads.

The folder given as ``manual_dir`` (``--source_manual_dir`` / ``--target_manual_dir``)
holds ``manifest.csv`` or ``manifest.jsonl`` and ``dataset.json``. The config (and so the
prepared dataset's directory) is named after the folder and a hash of those two files, so
a changed manifest is a new dataset and never silently reuses an old build. Before
anything is written every row is checked (files exist, decode, and match the image's
size); then each example is converted into ``tada_keras.conventions``.
"""

from __future__ import annotations

import dataclasses
import logging as pylogging
import posixpath
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from tada_keras import conventions as C

from ..common.image_io import read_image
from ..common.incomplete_builds import RemovesIncompleteBuilds
from ..common.normals_feature import UnitNormals
from ..common.registration import already_registered
from ..common.split_checks import InvalidNormalsTally
from . import encodings as E
from . import manifest as M
from .manifest import ManifestError

NAME = "sim2real_manifest"

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Point manual_dir (tada_keras: --source_manual_dir and --target_manual_dir) at the folder
that holds your manifest:

  manifest.csv (or manifest.jsonl)   one row per example: domain (source|target),
                                     split (train|val|test), image, and optional label
                                     files normals, normals_mask, segmentation, depth,
                                     depth_mask, keypoints; paths relative to this folder
  dataset.json                       class_names, keypoints.count, normals.axes,
                                     depth.metres_per_unit, ...

See docs/own_data.md; `python -m tada_datasets.sim2real_manifest.make_example --out=DIR`
writes a small complete example.
"""

# Image modes of 8-bit pictures (PIL); 16-bit and float images are refused.
_IMAGE_MODES = {"RGB", "RGBA", "L", "LA", "P", "CMYK", "YCbCr"}
_INVALID_NORMALS = "all invalid (zero, non-finite, non-unit or masked out)"
_NORMALS_HINT = ("Check 'normals.axes' and the files' encoding in dataset.json "
                 "(docs/own_data.md).")


@dataclasses.dataclass(eq=False)
class ManifestConfig(tfds.core.BuilderConfig):
    """A config of ``sim2real_manifest``: the manifest file it reads.

    Args:
        manifest: path of ``manifest.csv`` / ``manifest.jsonl``.
        description_file: path of the description; default ``dataset.json`` beside it.
    """

    manifest: str = ""
    description_file: str = ""


def find_manifest(folder) -> str:
    """The one manifest file in ``folder``; ManifestError if there is none or two."""
    folder = epath.Path(folder)
    found = [folder / n for n in M.MANIFEST_NAMES if (folder / n).exists()]
    if len(found) != 1:
        what = "no" if not found else "two manifests,"
        raise ManifestError(f"{folder}: {what} {' or '.join(M.MANIFEST_NAMES)} (expected "
                            "exactly one: see docs/own_data.md)")
    return str(found[0])


def make_config(manifest, description_file=None, name: str | None = None) -> ManifestConfig:
    """The config of a manifest file, or of the folder holding one.

    Its name is ``<folder>_<hash>``: the hash covers the manifest and the description, so
    editing either gives a new config (and a new build under ``data_dir``).
    """
    path = epath.Path(manifest)
    if path.is_dir():
        path = epath.Path(find_manifest(path))
    description = epath.Path(description_file) if description_file else (
        path.parent / M.DESCRIPTION_NAME)
    parsed = load_manifest(str(path), str(description))
    label = M.slug(name or parsed.description.name or path.parent.name)
    return ManifestConfig(
        name=f"{label}_{parsed.fingerprint[:10]}",
        description=f"Examples listed in {path}.",
        manifest=str(path),
        description_file=str(description))


def _quiet_custom_config(record) -> bool:
    return not record.getMessage().startswith("Using custom data configuration")


_PARSED: dict[tuple, M.Manifest] = {}


def load_manifest(manifest: str, description: str) -> M.Manifest:
    """Parses (and caches, by content) a manifest and its description."""
    texts = []
    for path in (manifest, description):
        p = epath.Path(path)
        if not p.exists():
            raise ManifestError(f"{path}: not found" + (
                f" (the description {M.DESCRIPTION_NAME} must sit beside the manifest)"
                if path == description else ""))
        try:
            # A byte-order mark (Excel's "CSV UTF-8", Notepad) is not part of the text.
            texts.append(p.read_text(encoding="utf-8").removeprefix("\ufeff"))
        except (OSError, UnicodeDecodeError) as err:
            raise ManifestError(f"{path}: cannot read it as UTF-8 text ({err})") from None
    key = (manifest, description, *texts)
    if key not in _PARSED:
        _PARSED.clear()  # one or two manifests per process: keep the latest only
        _PARSED[key] = M.parse(manifest, texts[0], description, texts[1])
    return _PARSED[key]


class Builder(RemovesIncompleteBuilds, tfds.core.GeneratorBasedBuilder,
              skip_registration=already_registered(NAME)):
    """Source and target examples listed in a manifest (domain, split, image, labels)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    # The config comes from the manifest (``manual_dir`` or ``manifest``), never a name.
    BUILDER_CONFIGS: ClassVar[list] = []
    # tada_keras.data.prepare_builder passes --*_manual_dir to the constructor.
    CONFIG_FROM_MANUAL_DIR = True

    def __init__(self, *, manual_dir=None, manifest=None, config=None, **kwargs):
        if not isinstance(config, ManifestConfig):
            if config is not None:
                raise ManifestError(
                    f"{NAME} has no named configs (got {config!r}): give the folder of your "
                    "manifest as manual_dir (tada_keras: --source_manual_dir / "
                    f"--target_manual_dir) and the dataset as plain '{NAME}'")
            source = manifest or manual_dir
            if not source:
                raise ManifestError(
                    f"{NAME} needs the folder of your manifest: give it as manual_dir "
                    "(tada_keras: --source_manual_dir and --target_manual_dir; see "
                    "docs/own_data.md)")
            config = make_config(source)
        # Every config of this builder is "custom": TFDS's warning about it says nothing.
        absl_logger = pylogging.getLogger("absl")
        absl_logger.addFilter(_quiet_custom_config)
        try:
            super().__init__(config=config, **kwargs)
        finally:
            absl_logger.removeFilter(_quiet_custom_config)

    @property
    def manifest(self) -> M.Manifest:
        cfg = self.builder_config
        return load_manifest(cfg.manifest, cfg.description_file)

    def _info(self) -> tfds.core.DatasetInfo:
        m = self.manifest
        d, labels = m.description, m.labels()
        features = {C.IMAGE: tfds.features.Image(shape=(None, None, 3), dtype=np.uint8)}
        if "normals" in labels:
            features[C.NORMALS] = UnitNormals(shape=(None, None, 3))
            features[C.NORMALS_MASK] = tfds.features.Tensor(
                shape=(None, None), dtype=np.bool_, encoding=tfds.features.Encoding.ZLIB)
        if "segmentation" in labels:
            features[C.SEGMENTATION] = tfds.features.LabeledImage(
                labels=list(d.class_names), shape=(None, None, 1),
                doc="Class ids, 0 = void (ignore).")
        if "depth" in labels:
            features[C.DEPTH] = tfds.features.Tensor(
                shape=(None, None), dtype=np.float32, encoding=tfds.features.Encoding.ZLIB,
                doc="Metres along the viewing axis; 0 where invalid.")
        if "keypoints" in labels:
            k = d.num_keypoints
            features[C.KEYPOINTS] = tfds.features.Tensor(shape=(k, 3), dtype=np.float32)
            features[C.KEYPOINTS_VISIBLE] = tfds.features.Tensor(shape=(k,), dtype=np.bool_)
        features[C.EXAMPLE_ID] = tfds.features.Text()
        splits = m.split_labels()
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            supervised_keys=None,
            homepage="https://arxiv.org/abs/1908.06079",
            metadata=tfds.core.MetadataDict(
                manifest=m.path,
                manifest_sha256=m.fingerprint,
                split_domains={s: s.split("_")[0] for s in sorted(splits)},
                split_labels={s: [f for c in v for f in _LABEL_FEATURES.get(c, ())]
                              for s, v in sorted(splits.items())},
                class_names=list(d.class_names or []),
                keypoint_names=list(d.keypoint_names or []),
                keypoint_depth_unit=d.keypoint_depth_unit,
                normal_frame="camera: x right, y up, z toward the camera",
                depth_unit="metres along the viewing axis",
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # the config names the manifest
        m = self.manifest
        sizes = validate_files(m)  # every row, before anything is written
        return {split: self._generate_examples(m, rows, sizes, split)
                for split, rows in sorted(m.splits().items())}

    def _generate_examples(self, m: M.Manifest, rows, sizes, split):
        labels = m.labels()
        tally = InvalidNormalsTally(NAME, split, m.path, _INVALID_NORMALS, _NORMALS_HINT)
        for row in rows:
            example = read_example(m, row, sizes[row.line], labels)
            if "normals" in row.labels and not tally.keep(
                    m.where(row, "normals"), int(example[C.NORMALS_MASK].sum())):
                continue
            yield row.id, example
        tally.finish()


# Manifest label column -> the features it fills (metadata "split_labels").
_LABEL_FEATURES = {"normals": (C.NORMALS, C.NORMALS_MASK), "segmentation": (C.SEGMENTATION,),
                   "depth": (C.DEPTH,), "keypoints": (C.KEYPOINTS, C.KEYPOINTS_VISIBLE)}


# --- checking every row before the build --------------------------------------------------

def _open(m: M.Manifest, row: M.Row, column: str) -> epath.Path:
    rel = row.image if column == "image" else row.labels[column]
    path = epath.Path(m.resolve(rel))
    if not path.exists():
        raise ManifestError(f"{m.where(row, column)}: file not found (paths are relative to "
                            f"the manifest's folder {m.folder})")
    return path


def _header_size(m, row, column, path, channels=None) -> tuple[int, int]:
    """(height, width) of a label file from its header; checks its channel count."""
    suffix = posixpath.splitext(str(path))[1].lower()
    try:
        with path.open("rb") as f:
            if suffix == ".npy":
                shape, dtype = E.npy_header(f)
                if dtype.kind not in "fiu" or len(shape) not in (2, 3):
                    raise ValueError(f"expected a numeric (H, W[, C]) array, got shape {shape} "
                                     f"{dtype}")
                got = 1 if len(shape) == 2 else shape[2]
                if channels is not None and got not in channels:
                    raise ValueError(f"expected {' or '.join(map(str, channels))} channel(s), "
                                     f"got shape {shape}")
                return int(shape[0]), int(shape[1])
            if suffix == ".exr":
                size, _ = E.read_exr(f, header_only=True)
                return size
            pil = tfds.core.lazy_imports.PIL_Image
            with pil.open(f) as img:
                got = len(img.getbands())
                if channels is not None and got not in channels and img.mode != "P":
                    raise ValueError(f"expected {' or '.join(map(str, channels))} channel(s), "
                                     f"got a {img.mode} image")
                return img.height, img.width
    except ManifestError:
        raise
    except Exception as err:  # PIL / numpy / OpenEXR header errors
        reason = str(err).split("\n")[0] or type(err).__name__
        raise ManifestError(f"{m.where(row, column)}: cannot read this file ({reason})"
                            ) from None


_CHANNELS = {"normals": (3, 4), "depth": (1,), "segmentation": (1, 2, 3, 4)}


def validate_files(m: M.Manifest) -> dict[int, tuple[int, int]]:
    """Checks every row's files exist, have a readable header and the image's size;
    returns manifest line -> image (height, width). Keypoint files are parsed in full."""
    sizes = {}
    for row in m.rows:
        path = _open(m, row, "image")
        try:
            with path.open("rb") as f:
                with tfds.core.lazy_imports.PIL_Image.open(f) as img:
                    mode, hw = img.mode, (img.height, img.width)
        except Exception as err:
            raise ManifestError(f"{m.where(row, 'image')}: cannot read this image ("
                                f"{str(err).splitlines()[0] or type(err).__name__}); "
                                "expected an 8-bit PNG or JPEG") from None
        if mode not in _IMAGE_MODES:
            raise ManifestError(f"{m.where(row, 'image')}: a {mode} image; expected 8-bit "
                                "RGB (PNG or JPEG)")
        sizes[row.line] = hw
        for column in row.labels:
            path = _open(m, row, column)
            if column == "keypoints":
                _keypoints(m, row, path, hw)
                continue
            got = _header_size(m, row, column, path, _CHANNELS.get(column))
            if got != hw:
                raise ManifestError(f"{m.where(row, column)}: {got[0]}x{got[1]} pixels, but "
                                    f"the image is {hw[0]}x{hw[1]}; labels must have the "
                                    "image's size")
    return sizes


# --- reading one example --------------------------------------------------------------------

def _keypoints(m, row, path, hw):
    d = m.description
    try:
        return E.parse_keypoints(path.read_bytes(), d.num_keypoints, hw[0], hw[1],
                                 d.keypoint_coordinates)
    except ValueError as err:
        raise ManifestError(f"{m.where(row, 'keypoints')}: {err}") from None


def _decode(m, row, column, fn):
    try:
        return fn(epath.Path(m.resolve(row.labels[column])).read_bytes())
    except ManifestError:
        raise
    except (ValueError, OSError) as err:
        raise ManifestError(f"{m.where(row, column)}: {err}") from None


def _array(m, row, column, data: bytes):
    """A label file's pixels: PNG at its own bit depth, .npy as stored, EXR channels."""
    suffix = posixpath.splitext(row.labels[column])[1].lower()
    if suffix == ".png":
        return E.read_png(data)
    if suffix == ".npy":
        return E.read_npy(data)
    import io

    return E.read_exr(io.BytesIO(data))[1]


def read_example(m: M.Manifest, row: M.Row, hw, labels) -> dict:
    """One row -> a TFDS example in the project's conventions (absent labels: invalid)."""
    d = m.description
    h, w = hw
    try:
        image = read_image(m.resolve(row.image), expected="an 8-bit PNG or JPEG",
                           mode="RGB")
    except ValueError as err:
        raise ManifestError(f"{m.where(row, 'image')}: {str(err).split(': ', 1)[-1]}"
                            ) from None
    example = {C.IMAGE: image, C.EXAMPLE_ID: row.id}

    def mask_of(column):
        if column not in row.labels:
            return None
        return _decode(m, row, column, lambda b: E.mask_from_png(E.read_png(b)))

    if "normals" in labels:
        if "normals" in row.labels:
            valid = mask_of("normals_mask")

            def normals(data):
                arr = _array(m, row, "normals", data)
                if isinstance(arr, dict):
                    return E.normals_from_exr(arr, d.normal_exr_channels, d.normal_axes,
                                              valid)
                if arr.dtype.kind == "f":
                    return E.normals_from_float(arr, d.normal_axes, valid)
                if arr.dtype in (np.uint8, np.uint16):
                    return E.normals_from_png(arr, d.normal_axes, valid)
                raise ValueError(f"expected float normals or an 8/16-bit PNG, got {arr.dtype}")

            example[C.NORMALS], example[C.NORMALS_MASK] = _decode(m, row, "normals", normals)
        else:
            example[C.NORMALS] = np.zeros((h, w, 3), np.float32)
            example[C.NORMALS_MASK] = np.zeros((h, w), bool)
    if "segmentation" in labels:
        if "segmentation" in row.labels:
            example[C.SEGMENTATION] = _decode(m, row, "segmentation", lambda b: (
                E.segmentation_ids(E.read_png(b), len(d.class_names), d.palette)))
        else:
            example[C.SEGMENTATION] = np.zeros((h, w, 1), np.uint8)
    if "depth" in labels:
        if "depth" in row.labels:
            valid = mask_of("depth_mask")

            def depth(data):
                arr = _array(m, row, "depth", data)
                if isinstance(arr, dict):
                    arr = arr[E.depth_exr_channel(arr, d.depth_exr_channel)]
                return E.depth_to_metres(arr, d.depth_metres_per_unit, valid, d.depth_max)[0]

            example[C.DEPTH] = _decode(m, row, "depth", depth)
        else:
            example[C.DEPTH] = np.zeros((h, w), np.float32)
    if "keypoints" in labels:
        k = d.num_keypoints
        if "keypoints" in row.labels:
            points, visible = _keypoints(m, row, _open(m, row, "keypoints"), hw)
        else:
            points, visible = np.zeros((k, 3), np.float32), np.zeros((k,), bool)
        example[C.KEYPOINTS], example[C.KEYPOINTS_VISIBLE] = points, visible
    for key in (C.NORMALS, C.SEGMENTATION, C.DEPTH):
        if key in example and example[key].shape[:2] != (h, w):
            column = {C.NORMALS: "normals", C.SEGMENTATION: "segmentation",
                      C.DEPTH: "depth"}[key]
            raise ManifestError(f"{m.where(row, column)}: decoded to "
                                f"{example[key].shape[:2]}, but the image is {h}x{w}")
    return example
