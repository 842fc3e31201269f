"""Predict the main task (surface normals, or depth) for image files.

    python -m tada_keras.predict --model_dir=runs/demo/headfreeze --images=a.png,b.jpg \
        --out=predictions/

Writes ``<name>_normals.png`` ((n + 1) / 2 as RGB) and ``<name>_normals.npy`` (float32
unit normals in the camera frame, x right, y up, z toward the camera) at the input image's
resolution; a depth run writes ``<name>_depth.npy`` (float32 metres) and
``<name>_depth.png`` (a colour map of that image's range, near = bright). Images of any
size are zero-padded to a multiple of 32 (the padding is cropped from the prediction);
``--input_size`` resizes them to a square first instead. 8- and 16-bit, grey and colour
PNG/JPEG are read at their full range; two inputs with the same file name get distinct
output names.
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
                     "32); default: the run's eval size, else the image zero-padded to a "
                     "multiple of 32.")
FLAGS = flags.FLAGS

MAX_PIXELS = 4096 * 4096  # one CPU forward of a larger image takes minutes and GBs


def load_image(path, size=None):
    """RGB float32 in [0, 255]; 16-bit images are scaled from their 0..65535 range."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"--images: {path} is {image.width}x{image.height} pixels, "
                                 f"more than {MAX_PIXELS} (4096x4096); pass --input_size or "
                                 "downscale it")
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, np.float32)
                array = array * (255.0 / 65535.0)
                array = np.repeat(array[..., None], 3, axis=-1)
            else:
                array = np.asarray(image.convert("RGB"), np.float32)
    except (OSError, Image.DecompressionBombError) as err:
        raise ValueError(f"--images: cannot read {path}: {err}") from None
    if size:
        array = np.asarray(Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).resize(
            (size, size), Image.BILINEAR), np.float32)
    return array


def output_stems(paths, out_dir):
    """One output stem per input; equal file names get ``_2``, ``_3``, ... suffixes."""
    stems, seen = [], {}
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        seen[name] = seen.get(name, 0) + 1
        stems.append(os.path.join(out_dir, name if seen[name] == 1 else f"{name}_{seen[name]}"))
    return stems


def main(argv):
    del argv
    from tada_keras.inference import load_run, predict_padded

    if not FLAGS.images or not FLAGS.out:
        print("error: --images and --out are required", file=sys.stderr)
        return 2
    if FLAGS.input_size is not None and (FLAGS.input_size < 32 or FLAGS.input_size % 32):
        print(f"error: --input_size={FLAGS.input_size}: must be a positive multiple of 32",
              file=sys.stderr)
        return 2
    if os.path.exists(FLAGS.out) and not os.path.isdir(FLAGS.out):
        print(f"error: --out={FLAGS.out} is a file, not a directory", file=sys.stderr)
        return 2
    missing = [p for p in FLAGS.images if not os.path.isfile(p)]
    if missing:
        print(f"error: --images: file not found: {missing[0]}", file=sys.stderr)
        return 2
    try:
        cfg, model = load_run(FLAGS.model_dir)
        size = FLAGS.input_size or cfg.eval_input_size
        images = [load_image(p, size) for p in FLAGS.images]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from PIL import Image

    os.makedirs(FLAGS.out, exist_ok=True)
    for path, stem, image in zip(FLAGS.images, output_stems(FLAGS.images, FLAGS.out), images):
        height, width = image.shape[:2]
        if size:  # back to the file's own size
            with Image.open(path) as original:
                width, height = _oriented_size(original)
        prediction = model.main.postprocess(predict_padded(model, image[None]),
                                            (height, width))[0]
        written = model.main.save_prediction(stem, prediction)
        print(f"{path} -> {', '.join(written)} {prediction.shape}")
    return 0


def _oriented_size(image):
    from PIL import ImageOps

    return ImageOps.exif_transpose(image).size


if __name__ == "__main__":
    app.run(main)
