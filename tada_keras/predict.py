"""Predict surface normals for image files.

    python -m tada_keras.predict --model_dir=runs/demo/headfreeze --images=a.png,b.jpg \
        --out=predictions/

Writes ``<name>_normals.png`` ((n + 1) / 2 as RGB) and ``<name>_normals.npy`` (float32
unit normals in the camera frame, x right, y up, z toward the camera) at the model's
output resolution (1/2 of the input).
"""

from __future__ import annotations

import os
import sys

import numpy as np
from absl import app, flags

flags.DEFINE_string("model_dir", None, "A directory written by tada_keras.train.")
flags.DEFINE_list("images", [], "Comma-separated image files (PNG/JPEG).")
flags.DEFINE_string("out", None, "Output directory.")
flags.DEFINE_integer("input_size", None, "Resize inputs to this square size (divisible by "
                     "32); default: the run's eval size, else the image padded to 32.")
FLAGS = flags.FLAGS


def _load_image(path, size):
    from PIL import Image

    try:
        image = Image.open(path).convert("RGB")
    except (OSError, ValueError) as err:
        raise ValueError(f"--images: cannot read {path}: {err}") from None
    if size:
        image = image.resize((size, size), Image.BILINEAR)
    else:
        w, h = image.size
        image = image.resize((max(32, round(w / 32) * 32), max(32, round(h / 32) * 32)),
                             Image.BILINEAR)
    return np.asarray(image, np.float32)


def main(argv):
    del argv
    from tada_keras.run import load_run, predict_normals
    from tada_keras.viz import normals_to_rgb

    if not FLAGS.images or not FLAGS.out:
        print("error: --images and --out are required", file=sys.stderr)
        return 2
    if FLAGS.input_size is not None and FLAGS.input_size % 32:
        print(f"error: --input_size={FLAGS.input_size}: must be divisible by 32",
              file=sys.stderr)
        return 2
    missing = [p for p in FLAGS.images if not os.path.isfile(p)]
    if missing:
        print(f"error: --images: file not found: {missing[0]}", file=sys.stderr)
        return 2
    try:
        cfg, model = load_run(FLAGS.model_dir)
        size = FLAGS.input_size or cfg.eval_input_size
        images = [_load_image(p, size) for p in FLAGS.images]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from PIL import Image

    os.makedirs(FLAGS.out, exist_ok=True)
    for path, image in zip(FLAGS.images, images):
        normals = predict_normals(model, image[None])[0]
        stem = os.path.join(FLAGS.out, os.path.splitext(os.path.basename(path))[0])
        np.save(stem + "_normals.npy", normals.astype(np.float32))
        Image.fromarray(normals_to_rgb(normals)).save(stem + "_normals.png")
        print(f"{path} -> {stem}_normals.png, {stem}_normals.npy {normals.shape}")
    return 0


if __name__ == "__main__":
    app.run(main)
