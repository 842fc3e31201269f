"""The anchor-label file: 68 3D facial landmarks per image, written by `annotate`, read by builders.

One ``.npz`` file (no pickles) per annotated root folder, conventionally
``<manual_dir>/landmarks_68.npz``. Arrays, N images:

    paths        (N,)        str      image path relative to the annotated root, POSIX '/'
    keypoints    (N, 68, 3)  float32  x, y normalised to [0, 1] (origin top-left, y down);
                                      z = depth along the viewing axis in units of the image
                                      width, relative to the mean of the 68 points, larger =
                                      farther from the camera
    visible      (N, 68)     bool     False when the face was not found or the point lies
                                      outside the image
    image_size   (N, 2)      int32    (height, width) of the image that was annotated
    detected     (N,)        bool     whether a face was found at all
    backend      ()          str      detector that produced the file (e.g. "mediapipe")
    num_points   ()          int32    68
    format_version ()        int32    1

The 68 points follow the iBUG 300-W / dlib / face-alignment order (jaw 0-16, brows 17-26,
nose 27-35, eyes 36-47, mouth 48-67), with "left"/"right" as in that scheme.

This module is imported by the annotator's own environment too (numpy<2, no TensorFlow):
it needs only numpy and, for reading through TFDS-friendly paths, ``etils.epath`` when
available.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
import zipfile
from collections.abc import Mapping

import numpy as np

LANDMARKS_FILENAME = "landmarks_68.npz"
NUM_LANDMARKS = 68
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class LandmarkRecord:
    """The anchor labels of one image."""

    keypoints: np.ndarray  # float32 (68, 3)
    visible: np.ndarray  # bool (68,)
    image_size: tuple[int, int]  # (height, width)
    detected: bool


def _open_binary(path, mode: str):
    try:
        from etils import epath

        return epath.Path(path).open(mode)
    except ImportError:
        return pathlib.Path(path).open(mode)


def write_landmarks(
    path,
    records: Mapping[str, LandmarkRecord],
    backend: str,
) -> None:
    """Writes ``records`` (relative image path -> LandmarkRecord) to ``path``."""
    paths = sorted(records)
    n = len(paths)
    keypoints = np.zeros((n, NUM_LANDMARKS, 3), np.float32)
    visible = np.zeros((n, NUM_LANDMARKS), bool)
    sizes = np.zeros((n, 2), np.int32)
    detected = np.zeros((n,), bool)
    for i, p in enumerate(paths):
        r = records[p]
        keypoints[i] = r.keypoints
        visible[i] = r.visible
        sizes[i] = r.image_size
        detected[i] = r.detected
    arrays = {
        "paths": np.array(paths, dtype=np.str_) if n else np.zeros((0,), "<U1"),
        "keypoints": keypoints,
        "visible": visible,
        "image_size": sizes,
        "detected": detected,
        "backend": np.array(backend),
        "num_points": np.array(NUM_LANDMARKS, np.int32),
        "format_version": np.array(FORMAT_VERSION, np.int32),
    }
    # Same layout as np.savez_compressed, but with fixed timestamps: identical inputs give
    # identical bytes.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arr), allow_pickle=False)
            zf.writestr(info, member.getvalue())
    with _open_binary(path, "wb") as f:
        f.write(buf.getvalue())


def read_landmarks(path) -> dict[str, LandmarkRecord]:
    """Reads a landmark file; raises ValueError naming ``path`` when it is malformed."""
    with _open_binary(path, "rb") as f:
        data = f.read()
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile / format errors are all "not a landmark file".
        raise ValueError(f"{path}: not a readable landmark .npz file ({e})") from e
    required = ("paths", "keypoints", "visible", "image_size")
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ValueError(f"{path}: landmark file lacks arrays {missing}")
    paths = arrays["paths"]
    n = len(paths)
    kp, vis, size = arrays["keypoints"], arrays["visible"], arrays["image_size"]
    detected = arrays.get("detected", vis.any(axis=-1) if vis.ndim == 2 else None)
    if kp.shape != (n, NUM_LANDMARKS, 3):
        raise ValueError(
            f"{path}: 'keypoints' has shape {kp.shape}, expected ({n}, {NUM_LANDMARKS}, 3) "
            f"for {n} paths"
        )
    if vis.shape != (n, NUM_LANDMARKS) or size.shape != (n, 2) or detected.shape != (n,):
        raise ValueError(
            f"{path}: mismatched counts: {n} paths, visible {vis.shape}, "
            f"image_size {size.shape}, detected {detected.shape}"
        )
    out = {}
    for i, p in enumerate(paths.tolist()):
        if p in out:
            raise ValueError(f"{path}: duplicate entry for image {p!r}")
        out[p] = LandmarkRecord(
            keypoints=kp[i].astype(np.float32),
            visible=vis[i].astype(bool),
            image_size=(int(size[i, 0]), int(size[i, 1])),
            detected=bool(detected[i]),
        )
    return out


def empty_record(height: int, width: int) -> LandmarkRecord:
    """Anchor labels for an image without landmarks: all points invisible."""
    return LandmarkRecord(
        keypoints=np.zeros((NUM_LANDMARKS, 3), np.float32),
        visible=np.zeros((NUM_LANDMARKS,), bool),
        image_size=(height, width),
        detected=False,
    )


def check_record_matches_image(record: LandmarkRecord, key: str, height: int, width: int,
                               source) -> None:
    """Raises ValueError when the annotated image size differs from the image read now."""
    if tuple(record.image_size) != (height, width):
        raise ValueError(
            f"{source}: entry {key!r} was annotated at size {record.image_size} (H, W) but "
            f"the image is {(height, width)}; re-run the annotator on this folder"
        )
