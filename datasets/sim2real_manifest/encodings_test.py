"""Each label encoding, written to a file and read back through the builder's row reader,
converts known geometry (a sphere, a tilted plane) into the project's conventions."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from . import encodings as E
from . import manifest as M
from . import sim2real_manifest_dataset_builder as B

SIZE = 48
MAX_DEG = 0.5  # the bound for every normal encoding


def sphere(size=SIZE):
    """Project-frame normals of a sphere filling the image (x right, y up, z toward the
    camera) and its silhouette."""
    c = (np.arange(size) + 0.5) / size * 2 - 1
    x, y = np.meshgrid(c, -c)
    r2 = x * x + y * y
    inside = r2 < 0.95
    n = np.stack([x, y, np.sqrt(np.clip(1 - r2, 0, 1))], axis=-1)
    return np.where(inside[..., None], n, 0.0), inside


PLANE_N = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])


def plane(size=SIZE):
    """A tilted plane's normals and depth (metres along the viewing axis, pinhole f=size)."""
    n = np.broadcast_to(PLANE_N, (size, size, 3)).copy()
    c = (np.arange(size) + 0.5 - size / 2) / size
    u, v = np.meshgrid(c, -c)
    # Plane n·p = -2 (2 m in front of the camera); p = z * (u, v, -1) for depth z.
    depth = -2.0 / (PLANE_N[0] * u + PLANE_N[1] * v - PLANE_N[2])
    return n, depth


def angles(a, b):
    """Angle in degrees (atan2 of |a × b| and a · b: exact near 0°, unlike arccos)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1),
                                 np.sum(a * b, axis=-1)))


def _png(array) -> bytes:
    if array.dtype == np.uint16 and array.ndim == 3:
        return tf.io.encode_png(array).numpy()
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def stored(normals, axes):
    """Inverse of the axis mapping: the stored channels whose mapping gives ``normals``."""
    out = np.zeros_like(normals)
    for k, (c, sign) in enumerate(E.parse_axes(axes)):
        out[..., c] = sign * normals[..., k]
    return out


def quantise(values, bits):
    top = 2 ** bits - 1
    return np.round((values + 1) * 0.5 * top).astype(np.uint8 if bits == 8 else np.uint16)


def read_row(tmp_path, files: dict, description: dict | None = None, size=SIZE):
    """Writes ``files`` (column -> (name, bytes)) + an image and a one-row manifest, and
    returns the builder's example for it."""
    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(tmp_path / "im.png")
    for name, data in files.values():
        (tmp_path / name).write_bytes(data)
    columns = ["domain", "split", "image", *files]
    values = ["source", "train", "im.png", *(name for name, _ in files.values())]
    manifest_text = ",".join(columns) + "\n" + ",".join(values) + "\n"
    description_text = json.dumps(description or {})
    (tmp_path / "manifest.csv").write_text(manifest_text)
    m = M.parse(str(tmp_path / "manifest.csv"), manifest_text,
                str(tmp_path / "dataset.json"), description_text)
    sizes = B.validate_files(m)
    return B.read_example(m, m.rows[0], sizes[m.rows[0].line], m.labels())


# --- normals ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("axes", ["+0,+1,+2", "+0,-1,-2", "+0,+2,-1", "-1,+0,+2"])
def test_png_normals_sphere_within_half_a_degree(tmp_path, bits, axes):
    n, inside = sphere()
    png = quantise(stored(n, axes), bits)
    png[~inside] = 0  # background: a zero vector decodes to (-1, -1, -1), not unit
    ex = read_row(tmp_path, {"normals": ("n.png", _png(png))}, {"normals": {"axes": axes}})
    np.testing.assert_array_equal(ex["normals_mask"], inside)
    err = angles(ex["normals"], n)[inside]
    assert err.max() < (MAX_DEG if bits == 8 else 0.02), err.max()
    assert np.all(ex["normals"][~inside] == 0)


def test_png_normals_alpha_and_mask_file_mark_invalid(tmp_path):
    n, inside = sphere()
    rgba = np.concatenate([quantise(n, 16), np.zeros(n.shape[:2] + (1,), np.uint16)], -1)
    rgba[..., 3] = np.where(inside, 65535, 0)
    rgba[~inside, :3] = quantise(np.array([0.0, 0.0, 1.0]), 16)  # unit, but alpha 0
    left = np.zeros(inside.shape, bool)
    left[:, : SIZE // 2] = True
    ex = read_row(tmp_path, {"normals": ("n.png", _png(rgba)),
                             "normals_mask": ("m.png", _png((left * 255).astype(np.uint8)))})
    np.testing.assert_array_equal(ex["normals_mask"], inside & left)
    assert angles(ex["normals"], n)[inside & left].max() < 0.02


def test_npy_normals_plane_and_non_finite_pixels(tmp_path):
    n, _ = plane()
    values = stored(n, "+0,-1,-2").astype(np.float32)
    values[0, 0] = np.nan
    values[1, 1] = 0.0  # zero vector: invalid
    buf = io.BytesIO()
    np.save(buf, values)
    ex = read_row(tmp_path, {"normals": ("n.npy", buf.getvalue())},
                  {"normals": {"axes": "+0,-1,-2"}})
    expect = np.ones((SIZE, SIZE), bool)
    expect[0, 0] = expect[1, 1] = False
    np.testing.assert_array_equal(ex["normals_mask"], expect)
    assert angles(ex["normals"], n)[expect].max() < 1e-3
    np.testing.assert_allclose(np.linalg.norm(ex["normals"][expect], axis=-1), 1, atol=1e-5)


def _exr(channels: dict) -> bytes:
    openexr = pytest.importorskip("OpenEXR")
    header = {"compression": openexr.ZIP_COMPRESSION, "type": openexr.scanlineimage}
    buf = io.BytesIO()
    with openexr.File(header, {k: np.ascontiguousarray(v, np.float32)
                               for k, v in channels.items()}) as f:
        f.write(buf)
    return buf.getvalue()


def test_exr_normals_rgb_with_alpha(tmp_path):
    n, inside = sphere()
    s = stored(n, "+0,-1,-2")
    data = _exr({"R": s[..., 0], "G": s[..., 1], "B": s[..., 2],
                 "A": inside.astype(np.float32)})
    ex = read_row(tmp_path, {"normals": ("n.exr", data)}, {"normals": {"axes": "+0,-1,-2"}})
    np.testing.assert_array_equal(ex["normals_mask"], inside)
    assert angles(ex["normals"], n)[inside].max() < 1e-3


def test_exr_normals_named_layer_channels(tmp_path):
    n, _ = plane()
    data = _exr({"Normal.X": n[..., 0], "Normal.Y": n[..., 1], "Normal.Z": n[..., 2],
                 "Depth.V": np.ones(n.shape[:2])})
    description = {"normals": {"exr_channels": ["Normal.X", "Normal.Y", "Normal.Z"]}}
    ex = read_row(tmp_path, {"normals": ("n.exr", data)}, description)
    assert ex["normals_mask"].all() and angles(ex["normals"], n).max() < 1e-3
    with pytest.raises(ValueError, match=r"n\.exr\): no EXR channel 'R' for the normals; "
                                         r"the file has \['Depth.V', 'Normal.X'"):
        read_row(tmp_path, {"normals": ("n.exr", data)})


def test_exr_without_the_package_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "OpenEXR", None)
    (tmp_path / "n.exr").write_bytes(b"v/1\x01" + bytes(100))
    with pytest.raises(ValueError, match=r"column 'normals' .*n\.exr\): cannot read this "
                                         r"file \(reading OpenEXR files needs the OpenEXR "
                                         r"package: pip install 'OpenEXR>=3.2'"):
        read_row(tmp_path, {"normals": ("n.exr", (tmp_path / "n.exr").read_bytes())})


# --- depth ------------------------------------------------------------------------------------

def test_depth_png_millimetres_plane(tmp_path):
    _, depth = plane()
    mm = np.round(depth * 1000).astype(np.uint16)
    mm[0, :5] = 0  # no measurement
    ex = read_row(tmp_path, {"depth": ("d.png", _png(mm))},
                  {"depth": {"metres_per_unit": 0.001}})
    valid = mm > 0
    assert np.abs(ex["depth"][valid] - depth[valid]).max() <= 0.0005 + 1e-6
    assert np.all(ex["depth"][~valid] == 0)


def test_depth_npy_and_exr_with_max_and_mask(tmp_path):
    _, depth = plane()
    values = depth.astype(np.float32).copy()
    values[2, 2] = np.inf
    values[3, 3] = -1.0
    values[4, 4] = 1e10  # Blender's background depth
    buf = io.BytesIO()
    np.save(buf, values)
    mask = np.ones(depth.shape, np.uint8) * 255
    mask[5, 5] = 0
    expect = np.ones(depth.shape, bool)
    for p in (2, 3, 4, 5):
        expect[p, p] = False
    description = {"depth": {"max": 100.0}}
    files = {"depth": ("d.npy", buf.getvalue()), "depth_mask": ("m.png", _png(mask))}
    ex = read_row(tmp_path, files, description)
    np.testing.assert_allclose(ex["depth"][expect], depth[expect], rtol=1e-6)
    assert np.all(ex["depth"][~expect] == 0)
    files["depth"] = ("d.exr", _exr({"Z": values}))
    ex = read_row(tmp_path, files, description)
    np.testing.assert_allclose(ex["depth"][expect], depth[expect], rtol=1e-6)
    assert np.all(ex["depth"][~expect] == 0)


# --- segmentation -----------------------------------------------------------------------------

CLASSES = ["void", "floor", "wall", "table"]
PALETTE = [[0, 0, 0], [128, 64, 128], [70, 70, 70], [255, 0, 0]]


def _ids():
    ids = np.zeros((SIZE, SIZE), np.uint8)
    ids[SIZE // 2:] = 1
    ids[: SIZE // 2, SIZE // 2:] = 2
    ids[5:9, 5:9] = 3
    return ids


def test_segmentation_id_png_8_and_16_bit_and_palette_mode(tmp_path):
    ids = _ids()
    description = {"class_names": CLASSES}
    for data in (_png(ids), _png(ids.astype(np.uint16))):
        ex = read_row(tmp_path, {"segmentation": ("s.png", data)}, description)
        np.testing.assert_array_equal(ex["segmentation"][..., 0], ids)
    pal = Image.fromarray(ids, mode="P")
    pal.putpalette([v for colour in PALETTE for v in colour])
    buf = io.BytesIO()
    pal.save(buf, "PNG")
    ex = read_row(tmp_path, {"segmentation": ("s.png", buf.getvalue())}, description)
    np.testing.assert_array_equal(ex["segmentation"][..., 0], ids)


def test_segmentation_colour_png_with_palette(tmp_path):
    ids = _ids()
    colours = np.array(PALETTE, np.uint8)[ids]
    description = {"class_names": CLASSES, "segmentation": {"palette": PALETTE}}
    ex = read_row(tmp_path, {"segmentation": ("s.png", _png(colours))}, description)
    np.testing.assert_array_equal(ex["segmentation"][..., 0], ids)
    colours[7, 3] = (1, 2, 3)
    with pytest.raises(ValueError, match=r"s\.png\): colour \[1, 2, 3\] at pixel \(row 7, "
                                         r"column 3\) is not in the palette"):
        read_row(tmp_path, {"segmentation": ("s.png", _png(colours))}, description)
    with pytest.raises(ValueError, match="needs 'segmentation': {'palette'"):
        read_row(tmp_path, {"segmentation": ("s.png", _png(colours))},
                 {"class_names": CLASSES})


def test_segmentation_id_beyond_the_classes_is_named(tmp_path):
    ids = _ids()
    ids[10, 20] = 7
    with pytest.raises(ValueError, match=r"class id 7 at pixel \(row 10, column 20\) is not "
                                         r"below the 4 classes"):
        read_row(tmp_path, {"segmentation": ("s.png", _png(ids))}, {"class_names": CLASSES})


# --- keypoints --------------------------------------------------------------------------------

def test_keypoints_json_pixels_normalized_and_objects(tmp_path):
    points = [[0.0, 0.0, 1.5, True], [SIZE - 1.0, 10.0, 2.0, 1], [60.0, 3.0, 1.0, True],
              [4.0, 5.0, 9.0, False]]
    description = {"keypoints": {"count": 4}}
    ex = read_row(tmp_path, {"keypoints": ("k.json", json.dumps(points).encode())},
                  description)
    np.testing.assert_allclose(ex["keypoints"], [[0.5 / SIZE, 0.5 / SIZE, 1.5],
                                                 [1 - 0.5 / SIZE, 10.5 / SIZE, 2.0],
                                                 [0, 0, 0], [0, 0, 0]], atol=1e-6)
    np.testing.assert_array_equal(ex["keypoints_visible"], [True, True, False, False])
    objects = {"keypoints": [{"x": 0.25, "y": 0.75, "depth": 3.0, "visible": True}] * 4}
    ex = read_row(tmp_path, {"keypoints": ("k.json", json.dumps(objects).encode())},
                  {"keypoints": {"count": 4, "coordinates": "normalized"}})
    np.testing.assert_allclose(ex["keypoints"], [[0.25, 0.75, 3.0]] * 4)
    with pytest.raises(ValueError, match=r"k\.json\): expected a list of 4 keypoints .*got "
                                         r"3 entries"):
        read_row(tmp_path, {"keypoints": ("k.json", json.dumps(points[:3]).encode())},
                 description)
