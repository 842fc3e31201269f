"""Writes dummy_data/: a tiny PBRS manual_dir with the real file formats and layout.

    python datasets/suncg_pbrs/make_dummy_data.py [--out DIR]

Seven 12×16 views (the real ones are 640×480) of five houses, chosen so that the
90/5/5 split by house gives train 4 (3 houses), validation 2 (1 house), test 1 (1 house).
Every view shows an asymmetric "room" whose normals are known in the project frame
(x right, y up, z toward the camera), written with PBRS's documented convention
(R = right, G = forward, B = up; n = v / max · 2 − 1): 16-bit PNGs, except one view in
8-bit (some copies of the release are 8-bit). Deterministic.
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib

import numpy as np
import tensorflow as tf
from PIL import Image

HEIGHT, WIDTH = 12, 16
SPLIT_PERCENTS = (("train", 90), ("validation", 5), ("test", 5))
# split -> views per house; the builder must not depend on these numbers.
LAYOUT = {"train": [2, 1, 1], "validation": [2], "test": [1]}
EIGHT_BIT_VIEW = 1  # index into the good list of the view written with 8-bit normals

# NYU-40 ids of the room.
WALL, FLOOR, CEILING, BED = 1, 2, 22, 4


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


FLOOR_N = _unit([0.0, 0.8, 0.6])
CEILING_N = _unit([0.0, -0.8, 0.6])
LEFT_WALL_N = _unit([0.8, 0.0, 0.6])
RIGHT_WALL_N = _unit([-0.8, 0.0, 0.6])
BACK_WALL_N = np.array([0.0, 0.0, 1.0])


def room():
    """-> (normals (H, W, 3) project frame, valid (H, W) bool, NYU-40 labels (H, W) uint8)."""
    normals = np.tile(BACK_WALL_N, (HEIGHT, WIDTH, 1))
    labels = np.full((HEIGHT, WIDTH), WALL, np.uint8)
    normals[:, :4] = LEFT_WALL_N
    normals[:, -4:] = RIGHT_WALL_N
    normals[:2] = CEILING_N
    labels[:2] = CEILING
    normals[-4:] = FLOOR_N
    labels[-4:] = FLOOR
    labels[6:8, 6:10] = BED
    valid = np.ones((HEIGHT, WIDTH), bool)
    valid[4:6, 7:10] = False  # e.g. a window with nothing behind it
    labels[4:6, 7:10] = 0
    return normals, valid, labels


def encode_pbrs(normals, bits=16):
    """Project frame -> _norm_camera.png values: R = right, G = forward, B = up."""
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    stored = np.stack([x, -z, y], axis=-1)  # forward = -(toward the camera)
    top = 2**bits - 1
    values = np.clip(np.round((stored + 1.0) / 2.0 * top), 0, top)
    return values.astype(np.uint16 if bits == 16 else np.uint8)


def split_of_house(house: str) -> str:
    bucket = int(hashlib.sha1(house.encode("utf-8")).hexdigest()[:12], 16) % 100
    total = 0
    for name, percent in SPLIT_PERCENTS:
        total += percent
        if bucket < total:
            return name
    raise AssertionError


def houses():
    """SUNCG-like 32-hex house ids, picked so each split gets LAYOUT's houses."""
    wanted = {split: len(counts) for split, counts in LAYOUT.items()}
    chosen = {split: [] for split in LAYOUT}
    k = 0
    while any(len(chosen[s]) < n for s, n in wanted.items()):
        house = hashlib.md5(f"pbrs-dummy-house-{k}".encode()).hexdigest()
        split = split_of_house(house)
        if len(chosen[split]) < wanted[split]:
            chosen[split].append(house)
        k += 1
    return chosen


def goodlist():
    """[(house, view)] interleaving the houses, as the real list is not grouped by split."""
    chosen = houses()
    per_house = [
        (h, n)
        for split in ("train", "validation", "test")
        for h, n in zip(chosen[split], LAYOUT[split])
    ]
    views = []
    for round_ in range(max(n for _, n in per_house)):
        for house, n in per_house:
            if round_ < n:
                views.append((house, f"{3 * round_ + 1:06d}"))
    return views


def _write(path: pathlib.Path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def main(out: pathlib.Path) -> None:
    rng = np.random.default_rng(2017)
    normals, valid, labels = room()
    views = goodlist()
    lines = [f"{house}/{view}" for house, view in views]
    _write(out / "data_goodlist_v2.txt", ("\n".join(lines) + "\n").encode())
    for k, (house, view) in enumerate(views):
        image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        image[:3, :3] = (255, 0, 0)  # asymmetric marker: red top-left
        path = out / f"mlt_v2/{house}/{view}_mlt.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)

        stored = encode_pbrs(normals, bits=8 if k == EIGHT_BIT_VIEW else 16)
        stored[~valid] = 0  # garbage under the mask, like a missing render
        _write(
            out / f"normal_v2/{house}/{view}_norm_camera.png", tf.io.encode_png(stored).numpy()
        )  # PIL cannot write 16-bit RGB
        Image.fromarray((valid * 255).astype(np.uint8)).save(
            out / f"normal_v2/{house}/{view}_valid.png"
        )
        category = out / f"category_v2/{house}/{view}_category40.png"
        category.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(labels).save(category)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parent / "dummy_data"
    )
    main(parser.parse_args().out)
