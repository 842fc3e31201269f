"""Writes a small "bring your own data" folder in the layout ``sim2real_manifest`` reads.

    python -m tada_datasets.sim2real_manifest.make_example --out=my_pair [--size=32]

The examples are rendered by the embedded benchmark's generator (``sim2real_rooms``) and
written the way a user's renderer and photos usually come:

    my_pair/manifest.csv, my_pair/dataset.json
    source/images/*.png       renders
    source/normals/*.png      16-bit PNG, stored axes (x right, y down, z into the scene),
                              i.e. dataset.json "axes": "+0,-1,-2"
    source/depth/*.png        16-bit PNG, millimetres ("metres_per_unit": 0.001)
    source/segmentation/*.png class ids (8-bit, 0 = void)
    */keypoints/*.json        [x, y, depth, visible] in OpenCV pixel coordinates
    target/images/*.jpg       "photos"
    target/normals/*.png      8-bit PNG + target/normals_mask/*.png, only on the val and
                              test rows (what a real target set has: labels to score on)
    target/segmentation/*.png the anchor labels of every target row

Deterministic; ``dummy_data/`` (the builder test's fixture) is its output at the default
size.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import pathlib

import numpy as np
from PIL import Image

from ..sim2real_rooms import generator as g

# (domain, split, count); the TFDS split is f"{domain}_{split}".
LAYOUT = (("source", "train", 4), ("source", "val", 2), ("target", "train", 4),
          ("target", "val", 2), ("target", "test", 3))
COLUMNS = ("domain", "split", "image", "normals", "normals_mask", "segmentation", "depth",
           "keypoints")
NORMAL_AXES = "+0,-1,-2"  # stored (x, -y, -z) -> project (x, y, z)
MM = 0.001


def description() -> dict:
    return {
        "name": "example_pair",
        "class_names": list(g.CLASS_NAMES),
        "keypoints": {"names": list(g.KEYPOINT_NAMES), "coordinates": "pixels",
                      "depth_unit": "metres"},
        "normals": {"axes": NORMAL_AXES},
        "depth": {"metres_per_unit": MM},
    }


def _png(array: np.ndarray) -> bytes:
    if array.dtype == np.uint16 and array.ndim == 3:
        import tensorflow as tf  # PIL cannot write 16-bit RGB

        return tf.io.encode_png(array).numpy()
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def _stored_normals(normals: np.ndarray, mask: np.ndarray, bits: int) -> np.ndarray:
    top = 2 ** bits - 1
    stored = np.stack([normals[..., 0], -normals[..., 1], -normals[..., 2]], axis=-1)
    v = np.round((stored + 1.0) * 0.5 * top)
    v[~mask] = 0
    return v.astype(np.uint8 if bits == 8 else np.uint16)


def _keypoints_json(points: np.ndarray, visible: np.ndarray, size: int) -> bytes:
    entries = [[round(float(x * size - 0.5), 4), round(float(y * size - 0.5), 4),
                round(float(d), 4), bool(v)] for (x, y, d), v in zip(points, visible)]
    return json.dumps({"keypoints": entries}).encode("utf-8")


def main(out: pathlib.Path, size: int = 32, seed: int = 0) -> pathlib.Path:
    out = pathlib.Path(out)
    spec = g.GenerationSpec(image_size=size, seed=seed)
    files: dict[str, bytes] = {}
    rows = []
    for domain, split, count in LAYOUT:
        for i in range(count):
            ex = g.generate_example(spec, f"{domain}_{split}", i, True)
            stem = f"{split}_{i:03d}"
            row = {"domain": domain, "split": split}
            if domain == "source":
                row["image"] = f"source/images/{stem}.png"
                files[row["image"]] = _png(ex["image"])
                row["normals"] = f"source/normals/{stem}.png"
                files[row["normals"]] = _png(_stored_normals(ex["normals"],
                                                             ex["normals_mask"], 16))
                row["depth"] = f"source/depth/{stem}.png"
                mm = np.where(ex["depth"] > 0, np.round(ex["depth"] / MM), 0)
                files[row["depth"]] = _png(mm.astype(np.uint16))
            else:
                row["image"] = f"target/images/{stem}.jpg"
                buf = io.BytesIO()
                Image.fromarray(ex["image"]).save(buf, "JPEG", quality=95)
                files[row["image"]] = buf.getvalue()
                if split != "train":
                    row["normals"] = f"target/normals/{stem}.png"
                    files[row["normals"]] = _png(_stored_normals(ex["normals"],
                                                                 ex["normals_mask"], 8))
                    row["normals_mask"] = f"target/normals_mask/{stem}.png"
                    files[row["normals_mask"]] = _png(
                        (ex["normals_mask"] * 255).astype(np.uint8))
            row["segmentation"] = f"{domain}/segmentation/{stem}.png"
            files[row["segmentation"]] = _png(ex["segmentation"][..., 0])
            row["keypoints"] = f"{domain}/keypoints/{stem}.json"
            files[row["keypoints"]] = _keypoints_json(ex["keypoints"],
                                                      ex["keypoints_visible"], size)
            rows.append(row)
    for rel, data in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    with open(out / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: r.get(c, "") for c in COLUMNS} for r in rows)
    (out / "dataset.json").write_text(json.dumps(description(), indent=2) + "\n")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parent / "dummy_data")
    parser.add_argument("--size", type=int, default=32, help="image height = width")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(main(args.out, args.size, args.seed))
