"""Writes dummy_data/: a tiny NYU Depth v2 manual_dir with the real formats.

    python datasets/nyu_depth_v2_normals/make_dummy_data.py [--out DIR]

Six 12×16 images (the real ones are 480×640) in the real file formats and layout:
MATLAB v7.3 (HDF5 with the 512-byte MATLAB header, axes reversed as MATLAB writes them,
uint16 char cells), MATLAB 5 splits.mat / classMapping40.mat, and the three normal
distributions. Every image shows the same asymmetric "room" whose normals are known
in the project frame (x right, y up, z toward the camera); each normal file encodes
them with that source's documented convention, written out below independently of the
builder's decoding code. Deterministic: rerunning gives the same arrays.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import pathlib
import pickle

import h5py
import numpy as np
import scipy.io
from PIL import Image

HEIGHT, WIDTH, NUM_IMAGES = 12, 16, 6
TEST_1BASED = [1, 4]
TRAIN_1BASED = [2, 3, 5, 6]
VALIDATION_PERCENT = 10  # the builder's default

# Raw NYU (894-class) ids used in the room, with their published NYU-40 ids.
RAW_WALL, RAW_FLOOR, RAW_CEILING, RAW_BED = 21, 11, 4, 157
PUBLISHED_ROWS = {
    21: 1,
    11: 2,
    3: 3,
    157: 4,
    5: 5,
    83: 6,
    19: 7,
    28: 8,
    59: 9,
    64: 11,
    7: 12,
    4: 22,
    85: 23,
    144: 35,
}
NYU40_NAMES = [
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
    "bookshelf", "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser",
    "pillow", "mirror", "floor mat", "clothes", "ceiling", "books", "refridgerator",
    "television", "paper", "towel", "shower curtain", "box", "whiteboard", "person",
    "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop",
]  # fmt: skip


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


# Project-frame normals of the room (camera pitched down a little).
FLOOR = _unit([0.0, 0.8, 0.6])
CEILING = _unit([0.0, -0.8, 0.6])
LEFT_WALL = _unit([0.8, 0.0, 0.6])  # on the left of the image, facing right
RIGHT_WALL = _unit([-0.8, 0.0, 0.6])
BACK_WALL = np.array([0.0, 0.0, 1.0])


def room():
    """-> (normals (H, W, 3) project frame, valid (H, W) bool, raw labels (H, W) uint16)."""
    normals = np.zeros((HEIGHT, WIDTH, 3))
    labels = np.full((HEIGHT, WIDTH), RAW_WALL, np.uint16)
    normals[:] = BACK_WALL
    normals[:, :4] = LEFT_WALL
    normals[:, -4:] = RIGHT_WALL
    normals[:2] = CEILING
    labels[:2] = RAW_CEILING
    normals[-4:] = FLOOR
    labels[-4:] = RAW_FLOOR
    labels[6:8, 6:10] = RAW_BED
    labels[5, 7] = 0  # unlabeled
    valid = np.ones((HEIGHT, WIDTH), bool)
    valid[:, 0] = False  # like the invalid frame at the border of real images
    valid[3, 8] = False
    return normals, valid, labels


def _quantise(channels, bits):
    top = 2**bits - 1
    dtype = np.uint8 if bits == 8 else np.uint16
    return np.clip(np.round((np.asarray(channels) + 1.0) / 2.0 * top), 0, top).astype(dtype)


def encode_eigen(normals):
    """Eigen normals_gt PNG, ASSUMED NYU colouring: R = right, G = down, B = toward camera."""
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    return _quantise(np.stack([x, -y, z], -1), 8)


def encode_ladicky_png(normals):
    """Ladicky PNG, INFERRED: (x right, y down, z forward) stored as B, G, R."""
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    right, down, forward = x, -y, -z
    return _quantise(np.stack([forward, down, right], -1), 8)


def encode_ladicky_array(normals):
    """Ladicky [nx, ny, nz], ASSUMED (right, down, forward) like the PNGs."""
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    return np.stack([x, -y, -z], -1).astype(np.float32)


def stable_percent(key: str) -> int:
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) % 100


def _scene(kind: str, want_validation: bool) -> str:
    for k in range(1, 1000):
        name = f"{kind}_{k:04d}a"
        if (stable_percent(name) < VALIDATION_PERCENT) == want_validation:
            return name
    raise RuntimeError("no scene name found")


def scenes():
    """1-based index -> (scene, scene type). Image 6 is the only validation scene."""
    train_a, train_b = _scene("bedroom", False), _scene("kitchen", False)
    val = _scene("living_room", True)
    return {
        1: ("office_0003", "office"),
        2: (train_a, "bedroom"),
        3: (train_a, "bedroom"),
        4: ("bathroom_0007", "bathroom"),
        5: (train_b, "kitchen"),
        6: (val, "living_room"),
    }


def image(index1, rng):
    """Random pixels plus an asymmetric marker: red top-left, green top-right, blue bottom-left."""
    img = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    img[:3, :3] = (255, 0, 0)
    img[:3, -3:] = (0, 255, 0)
    img[-3:, :3] = (0, 0, 255)
    img[5, 5] = (index1, index1, index1)
    return img


def depth(index1):
    """Raw depth in metres growing to the right; 0 (missing) in column 0."""
    d = np.tile(1.0 + 0.1 * np.arange(WIDTH, dtype=np.float32), (HEIGHT, 1)) + 0.01 * index1
    raw = d.copy()
    raw[:, 0] = 0.0
    return d.astype(np.float32), raw.astype(np.float32)


_MATLAB_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2001 HDF5 schema 1.00 ."  # noqa: E501


def write_labeled_mat(path, images, depths, raw_depths, labels, scene_of):
    """MATLAB v7.3: HDF5 after a 512-byte header; h5py sees MATLAB's axes reversed."""
    a_images = np.stack(images, axis=-1)  # MATLAB 480×640×3×N (H, W, C, N)
    a_depths = np.stack(depths, axis=-1)  # H×W×N
    a_raw = np.stack(raw_depths, axis=-1)
    a_labels = np.stack(labels, axis=-1)
    with h5py.File(path, "w", userblock_size=512, libver="earliest", track_order=False) as f:
        refs = f.create_group("#refs#")

        def put(name, array, matlab_class):
            ds = f.create_dataset(name, data=array.T, track_times=False)  # column-major
            ds.attrs["MATLAB_class"] = np.bytes_(matlab_class)

        put("images", a_images, "uint8")
        put("depths", a_depths, "single")
        put("rawDepths", a_raw, "single")
        put("labels", a_labels, "uint16")
        for key, column in (("scenes", 0), ("sceneTypes", 1)):
            cell = f.create_dataset(key, (1, NUM_IMAGES), dtype=h5py.ref_dtype, track_times=False)
            cell.attrs["MATLAB_class"] = np.bytes_("cell")
            for i in range(NUM_IMAGES):
                text = scene_of[i + 1][column]
                chars = np.array([[ord(c)] for c in text], np.uint16)  # MATLAB 1×L -> (L, 1)
                ds = refs.create_dataset(f"{key}_{i}", data=chars, track_times=False)
                ds.attrs["MATLAB_class"] = np.bytes_("char")
                ds.attrs["MATLAB_int_decode"] = np.int32(2)
                cell[0, i] = ds.ref
    header = _MATLAB_HEADER.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as f:
        f.write(header.ljust(512, b"\x00"))


def write_mat5(path, variables):
    """MATLAB 5 file via scipy with a fixed header text (scipy stamps the date)."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, format="5", do_compression=False)
    data = bytearray(buffer.getvalue())
    data[:116] = b"MATLAB 5.0 MAT-file, written by make_dummy_data.py".ljust(116, b" ")
    pathlib.Path(path).write_bytes(bytes(data))


def class_mapping():
    """mapClass (1, 894) uint8: the published values at PUBLISHED_ROWS, placeholders elsewhere."""
    rng = np.random.default_rng(894)
    map_class = rng.integers(1, 41, 894).astype(np.uint8)
    for raw_id, nyu40 in PUBLISHED_ROWS.items():
        map_class[raw_id - 1] = nyu40
    names = np.empty((1, 40), dtype=object)
    names[0, :] = NYU40_NAMES
    return {"mapClass": map_class[None, :], "className": names}


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, optimize=False)


def main(out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2012)
    normals, valid, raw_labels = room()
    scene_of = scenes()
    images, depths, raws = [], [], []
    for index1 in range(1, NUM_IMAGES + 1):
        images.append(image(index1, rng))
        filled, raw = depth(index1)
        depths.append(filled)
        raws.append(raw)
    write_labeled_mat(
        out / "nyu_depth_v2_labeled.mat", images, depths, raws, [raw_labels] * NUM_IMAGES, scene_of
    )
    write_mat5(
        out / "splits.mat",
        {
            "trainNdxs": np.array(TRAIN_1BASED, np.uint16)[:, None],
            "testNdxs": np.array(TEST_1BASED, np.uint16)[:, None],
        },
    )
    write_mat5(out / "classMapping40.mat", class_mapping())

    # Eigen & Fergus: 0-based names, 8-bit normals + mask (garbage under the mask).
    eigen = encode_eigen(normals)
    eigen[~valid] = (127, 127, 127)
    eigen[0, 0] = (255, 0, 255)
    for index1 in range(1, NUM_IMAGES + 1):
        write_png(out / f"normals_gt/normals/{index1 - 1:04d}.png", eigen)
        write_png(out / f"normals_gt/masks/{index1 - 1:04d}.png", (valid * 255).astype(np.uint8))

    # Ladicky PNGs: 1-based names in the official split's folder, (0, 0, 0) = invalid.
    ladicky = encode_ladicky_png(normals)
    ladicky[~valid] = 0
    for index1 in range(1, NUM_IMAGES + 1):
        split = "test" if index1 in TEST_1BASED else "train"
        write_png(out / f"nyu_normals_gt/{split}/{index1:05d}.png", ladicky)

    # FAIR all_normals.pklz: gzip pickle (protocol 2, as Python 2 wrote it).
    nxyz = encode_ladicky_array(normals)
    payload = {
        "all_normals": np.stack([nxyz] * NUM_IMAGES),
        "all_valid_depth_masks": np.stack([valid.astype(np.float32)] * NUM_IMAGES),
        "all_filenames": [f"{index1:06d}" for index1 in range(1, NUM_IMAGES + 1)],
    }
    pklz = out / "surfacenormal_metadata/all_normals.pklz"
    pklz.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(pklz, "wb") as raw_file,
        gzip.GzipFile(fileobj=raw_file, mode="wb", mtime=0, filename="") as f,
    ):
        pickle.dump(payload, f, protocol=2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parent / "dummy_data"
    )
    main(parser.parse_args().out)
