"""Label encodings users have, converted into ``tada_keras.conventions``.

Pure functions of bytes or arrays (tests feed known geometry straight in); errors are
ValueErrors that say what was expected, and the builder adds the manifest row and file.

* normals: 8- or 16-bit PNG (n = v / max · 2 − 1, then ``axes``: the PBRS conversion of
  ``suncg_pbrs.conversions``), ``.npy`` float (H, W, 3) or OpenEXR float channels (then
  ``axes``); invalid where zero, non-finite or not unit length (``UNIT_NORM_TOLERANCE``),
  where the alpha channel (RGBA PNG, EXR ``A``) is 0, or where a mask file is 0.
* depth: integer PNG × ``metres_per_unit``, ``.npy`` or EXR float × ``metres_per_unit``;
  invalid where ≤ 0, non-finite, above ``max`` or where a mask file is 0.
* segmentation: single-channel (8/16-bit or palette-mode) PNG of class ids, or an RGB PNG
  with a colour palette (colour at index i = class i).
* keypoints: JSON, K entries of [x, y, depth, visible] or {"x", "y", "depth", "visible"}.
"""

from __future__ import annotations

import io
import json

import numpy as np

from ..common.image_io import decode_png_bytes
from ..suncg_pbrs.conversions import UNIT_NORM_TOLERANCE, decode_pbrs_normals, parse_axes

EXR_INSTALL = "pip install 'OpenEXR>=3.2' (or the extra: pip install 'tada-keras[exr]')"


# --- file formats -> arrays ----------------------------------------------------------------

def read_png(data: bytes) -> np.ndarray:
    """PNG bytes -> (H, W) or (H, W, C) uint8/uint16 at the file's own bit depth."""
    try:
        return decode_png_bytes(data, "PNG")
    except ValueError as err:  # "PNG: truncated PNG (...)": the builder names the file
        raise ValueError(str(err).split(": ", 1)[-1]) from None


def read_npy(data: bytes) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as err:  # ValueError (pickled / bad header), EOFError (truncated)
        raise ValueError(f"not a readable .npy array ({type(err).__name__}: {err})") from None


def npy_header(stream) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file from its header (a binary stream at its start;
    the array itself is not read)."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    try:
        version = np.lib.format.read_magic(stream)
        shape, _, dtype = readers[version](stream)
    except KeyError:
        raise ValueError("a .npy file of an unsupported format version") from None
    except Exception as err:
        raise ValueError(f"not a .npy file ({err})") from None
    return tuple(shape), np.dtype(dtype)


def _openexr():
    try:
        import OpenEXR
    except ImportError:
        raise ValueError(f"reading OpenEXR files needs the OpenEXR package: {EXR_INSTALL}"
                         ) from None
    return OpenEXR


def read_exr(stream, header_only: bool = False) -> tuple[tuple[int, int], dict]:
    """An EXR file (a binary stream) -> ((height, width), {channel name: float32 (H, W)});
    with ``header_only`` the dict maps channel names to None."""
    openexr = _openexr()
    try:
        with openexr.File(stream, separate_channels=True,
                          header_only=header_only) as f:
            header = f.header()
            low, high = header["dataWindow"]
            size = (int(high[1] - low[1] + 1), int(high[0] - low[0] + 1))
            if header_only:
                return size, {c.name: None for c in header["channels"]}
            return size, {name: np.asarray(ch.pixels, np.float32)
                          for name, ch in f.channels().items()}
    except (RuntimeError, ValueError, KeyError) as err:
        raise ValueError(f"not a readable OpenEXR file ({err})") from None


def exr_channels(channels: dict, wanted, what: str) -> list[np.ndarray]:
    missing = [c for c in wanted if c not in channels]
    if missing:
        raise ValueError(f"no EXR channel {missing[0]!r} for {what}; the file has "
                         f"{sorted(channels)}")
    return [channels[c] for c in wanted]


def depth_exr_channel(channels, configured: str | None) -> str:
    """The channel holding depth: ``configured``, else the first of Z, Y, V, R present
    (Blender's single-channel outputs use Z, V or R)."""
    if configured is not None:
        return configured
    for name in ("Z", "Y", "V", "R"):
        if name in channels:
            return name
    singles = [c for c in channels if c.split(".")[-1] in ("Z", "V", "Depth")]
    if len(singles) == 1:
        return singles[0]
    raise ValueError(f"cannot tell which EXR channel holds depth among {sorted(channels)}; "
                     "set 'depth': {'exr_channel': ...} in dataset.json")


def mask_from_png(png: np.ndarray) -> np.ndarray:
    """A mask file: valid where any channel is non-zero."""
    png = np.asarray(png)
    return png > 0 if png.ndim == 2 else np.any(png > 0, axis=-1)


# --- arrays -> the project's conventions -----------------------------------------------

def normals_from_png(png: np.ndarray, axes: str, valid: np.ndarray | None = None):
    """8/16-bit (H, W, 3|4) PNG -> (float32 unit normals, bool mask); alpha 0 = invalid."""
    png = np.asarray(png)
    if png.ndim != 3 or png.shape[-1] not in (3, 4):
        raise ValueError(f"expected an RGB or RGBA normal PNG, got shape {png.shape}")
    if png.shape[-1] == 4:
        alpha = png[..., 3] > 0
        valid = alpha if valid is None else (valid & alpha)
    return decode_pbrs_normals(png[..., :3], None if valid is None else valid, axes)


def normals_from_float(vectors: np.ndarray, axes: str, valid: np.ndarray | None = None):
    """Float (H, W, 3) stored components -> (float32 unit normals, bool mask)."""
    stored = np.asarray(vectors, np.float64)
    if stored.ndim != 3 or stored.shape[-1] != 3:
        raise ValueError(f"expected float normals of shape (H, W, 3), got {stored.shape}")
    finite = np.all(np.isfinite(stored), axis=-1)
    stored = np.where(finite[..., None], stored, 0.0)
    v = np.stack([sign * stored[..., c] for c, sign in parse_axes(axes)], axis=-1)
    sq_norm = np.sum(v * v, axis=-1)
    mask = finite & (np.abs(sq_norm - 1.0) <= UNIT_NORM_TOLERANCE)
    if valid is not None:
        mask &= valid
    normals = np.where(mask[..., None], v / np.sqrt(np.maximum(sq_norm, 1e-12))[..., None],
                       0.0)
    return normals.astype(np.float32), mask


def normals_from_exr(channels: dict, names, axes: str, valid: np.ndarray | None = None):
    x, y, z = exr_channels(channels, names, "the normals")
    if "A" in channels and "A" not in names:
        alpha = channels["A"] > 0
        valid = alpha if valid is None else (valid & alpha)
    return normals_from_float(np.stack([x, y, z], axis=-1), axes, valid)


def depth_to_metres(stored: np.ndarray, metres_per_unit: float = 1.0,
                    valid: np.ndarray | None = None, max_depth: float | None = None):
    """Integer or float (H, W) depth -> (float32 metres, 0 where invalid; bool mask)."""
    stored = np.asarray(stored)
    if stored.ndim == 3 and stored.shape[-1] == 1:
        stored = stored[..., 0]
    if stored.ndim != 2:
        raise ValueError(f"expected single-channel depth (H, W), got shape {stored.shape}")
    if stored.dtype.kind not in "uif":
        raise ValueError(f"expected integer or float depth, got {stored.dtype}")
    metres = stored.astype(np.float64) * metres_per_unit
    mask = np.isfinite(metres) & (metres > 0)
    if max_depth is not None:
        mask &= metres <= max_depth
    if valid is not None:
        mask &= valid
    return np.where(mask, metres, 0.0).astype(np.float32), mask


def segmentation_ids(png: np.ndarray, num_classes: int, palette=None) -> np.ndarray:
    """An id PNG (or an RGB PNG with ``palette``) -> uint8 (H, W, 1) class ids."""
    png = np.asarray(png)
    if png.ndim == 3 and png.shape[-1] == 1:
        png = png[..., 0]
    if png.ndim == 3:
        if palette is None:
            raise ValueError(f"a colour segmentation PNG (shape {png.shape}) needs "
                             "'segmentation': {'palette': [[r, g, b], ...]} in dataset.json; "
                             "otherwise write single-channel class ids")
        if png.shape[-1] not in (3, 4):
            raise ValueError(f"expected an RGB segmentation PNG, got shape {png.shape}")
        rgb = png[..., :3].astype(np.int64)
        if png.dtype == np.uint16:
            raise ValueError("expected an 8-bit colour segmentation PNG, got 16-bit")
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        table = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(palette)}
        keys = np.array(sorted(table), np.int64)
        pos = np.clip(np.searchsorted(keys, code), 0, len(keys) - 1)
        known = keys[pos] == code
        if not known.all():
            r, c = np.argwhere(~known)[0]
            colour = tuple(int(v) for v in rgb[r, c])
            raise ValueError(f"colour {list(colour)} at pixel (row {r}, column {c}) is not "
                             f"in the palette ({int((~known).sum())} such pixels)")
        ids = np.array([table[k] for k in keys], np.int64)[pos]
    elif png.ndim == 2 and png.dtype.kind in "ui":
        ids = png.astype(np.int64)
    else:
        raise ValueError(f"expected a single-channel id PNG, got {png.shape} {png.dtype}")
    if ids.size and int(ids.max()) >= num_classes:
        r, c = np.unravel_index(int(np.argmax(ids)), ids.shape)
        raise ValueError(f"class id {int(ids.max())} at pixel (row {r}, column {c}) is not "
                         f"below the {num_classes} classes of 'class_names'")
    return ids.astype(np.uint8)[..., None]


def parse_keypoints(data: bytes, num_keypoints: int, height: int, width: int,
                    coordinates: str = "pixels"):
    """Keypoint JSON -> (float32 (K, 3) x, y normalised (top-left origin, pixel centres at
    (i + 0.5) / size), depth; bool (K,) visible). ``pixels``: OpenCV coordinates (the
    centre of pixel column i is x = i). Visible points outside the image become invisible;
    invisible points are zeros."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"not valid JSON ({err})") from None
    if isinstance(raw, dict) and "keypoints" in raw:
        raw = raw["keypoints"]
    if not isinstance(raw, list) or len(raw) != num_keypoints:
        got = f"{len(raw)} entries" if isinstance(raw, list) else type(raw).__name__
        raise ValueError(f"expected a list of {num_keypoints} keypoints (the count in "
                         f"dataset.json), got {got}")
    points = np.zeros((num_keypoints, 3), np.float64)
    visible = np.zeros((num_keypoints,), bool)
    for k, entry in enumerate(raw):
        if isinstance(entry, dict):
            entry = [entry.get("x"), entry.get("y"), entry.get("depth", 0.0),
                     entry.get("visible", True)]
        ok = (isinstance(entry, list) and len(entry) == 4
              and all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
                      for v in entry[:3])
              and isinstance(entry[3], bool | int))
        if not ok:
            raise ValueError(f"keypoint {k}: expected [x, y, depth, visible] (numbers and a "
                             f"boolean) or an object with those keys, got {entry!r}")
        x, y, depth, vis = entry
        if coordinates == "pixels":
            x, y = (x + 0.5) / width, (y + 0.5) / height
        points[k] = (x, y, depth)
        visible[k] = bool(vis) and 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0
    points = np.where(visible[:, None], points, 0.0)
    return points.astype(np.float32), visible
