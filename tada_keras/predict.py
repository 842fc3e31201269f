"""Predict the main task (surface normals, or depth) for image files.

    python -m tada_keras.predict --model_dir=runs/demo/headfreeze --images=a.png,b.jpg \
        --out=predictions/
    python -m tada_keras.predict --model_dir=... --images=photos/ --out=predictions/
    python -m tada_keras.predict --model_dir=... --images='shots/*.jpg' --out=predictions/
    python -m tada_keras.predict --model=runs/demo/headfreeze/export/model.onnx \
        --images=photos/ --out=predictions/     # a file written by tada-export

``--images`` takes files, folders (their PNG/JPEG/TIFF/BMP/WebP files, sorted, not
recursive) and glob patterns (quote them so the shell leaves them alone), comma-separated.

Writes ``<name>_normals.png`` ((n + 1) / 2 as RGB) and ``<name>_normals.npy`` (float32
unit normals in the camera frame, x right, y up, z toward the camera) at the input image's
resolution; a depth run writes ``<name>_depth.npy`` (float32 metres) and
``<name>_depth.png`` (a colour map of that image's range, near = bright). Images of any
size are zero-padded to a multiple of 32 (the padding is cropped from the prediction);
``--input_size`` resizes them to a square first instead. 8- and 16-bit, grey and colour
PNG/JPEG are read at their full range; every input gets its own output names (an input
keeps its file name unless an earlier one has it; later ones get ``_2``, ``_3``, ...).
Each image also gets ``<name>_side_by_side.png``: the input (as oriented by its EXIF tag)
next to the prediction's PNG.

``--model`` runs an exported file (``.onnx``: onnxruntime, ``.tflite``: LiteRT, a SavedModel
directory) instead of the run: the same padding, cropping and output files; a fixed-size
export gets the images resized to its size.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from absl import flags

flags.DEFINE_string("model_dir", None, "A directory written by tada_keras.train.")
flags.DEFINE_string("model", None, "Instead of --model_dir: a file written by tada-export "
                    "(.onnx, .tflite or a SavedModel directory).")
flags.DEFINE_list("images", [], "Comma-separated image files, folders (their images, "
                  "sorted) or quoted glob patterns.")
flags.DEFINE_string("out", None, "Output directory.")
flags.DEFINE_integer("input_size", None, "Resize inputs to this square size (divisible by "
                     "32); default: the run's eval size, else the image zero-padded to a "
                     "multiple of 32.")
FLAGS = flags.FLAGS

MAX_PIXELS = 4096 * 4096  # one CPU forward of a larger image takes minutes and GBs
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def expand_images(entries) -> list[str]:
    """Files, folders (their images, sorted, not recursive) and glob patterns -> image
    files, in the order given. Raises ValueError naming an entry that gives nothing."""
    import glob

    def images_in(paths):
        return sorted(p for p in paths
                      if os.path.isfile(p) and p.lower().endswith(IMAGE_EXTENSIONS))

    files = []
    for entry in entries:
        if os.path.isdir(entry):
            found = images_in(os.path.join(entry, name) for name in os.listdir(entry))
            if not found:
                raise ValueError(f"--images: no image file ({', '.join(IMAGE_EXTENSIONS)}) "
                                 f"in the folder {entry}")
        elif glob.has_magic(entry):
            found = images_in(glob.glob(entry))
            if not found:
                raise ValueError(f"--images: the pattern {entry!r} matches no image file")
        elif os.path.isfile(entry):
            found = [entry]
        else:
            raise ValueError(f"--images: file not found: {entry}")
        files.extend(found)
    return files


def side_by_side(image: np.ndarray, prediction_png: str, path: str) -> None:
    """Writes the input (RGB float [0, 255]) and the prediction's PNG next to each other
    (the prediction resized to the input's height if needed)."""
    from PIL import Image

    from tada_keras.atomic import atomic_path

    left = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    with Image.open(prediction_png) as pred:
        right = pred.convert("RGB")
    if right.height != left.height:
        right = right.resize((round(right.width * left.height / right.height), left.height),
                             Image.BILINEAR)
    canvas = Image.new("RGB", (left.width + right.width, left.height))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    with atomic_path(path, ".png") as tmp:
        canvas.save(tmp, format="PNG")


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
        height, width = (size, size) if np.ndim(size) == 0 else size
        array = np.asarray(Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).resize(
            (width, height), Image.BILINEAR), np.float32)
    return array


def output_stems(paths, out_dir):
    """One output stem per input, all distinct (compared case-insensitively, for the
    file systems that do): an input keeps its file name unless an earlier input has it;
    later ones get the first free ``_2``, ``_3``, ... (``x.jpg``, ``x.png``, ``x_2.png``
    give ``x``, ``x_3``, ``x_2``)."""
    names = [os.path.splitext(os.path.basename(path))[0] for path in paths]
    stems, taken = [None] * len(names), set()
    for i, name in enumerate(names):
        if name.casefold() not in taken:
            stems[i] = name
            taken.add(name.casefold())
    for i, name in enumerate(names):
        if stems[i] is None:
            n = 2
            while f"{name}_{n}".casefold() in taken:
                n += 1
            stems[i] = f"{name}_{n}"
            taken.add(stems[i].casefold())
    return [os.path.join(out_dir, stem) for stem in stems]


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
    if bool(FLAGS.model) == bool(FLAGS.model_dir):
        print("error: give one of --model_dir (a training run) and --model (an exported file)",
              file=sys.stderr)
        return 2
    from tada_keras.atomic import check_writable

    try:
        check_writable(FLAGS.out, "out")  # before the work, not after it
        paths = expand_images(FLAGS.images)
        if FLAGS.model:
            model = exported = _load_exported(FLAGS.model)
            size = exported.input_size or FLAGS.input_size
        else:
            cfg, model = load_run(FLAGS.model_dir)
            size = FLAGS.input_size or cfg.eval_input_size
        images = [load_image(p, size) for p in paths]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from PIL import Image

    os.makedirs(FLAGS.out, exist_ok=True)
    for path, stem, image in zip(paths, output_stems(paths, FLAGS.out), images):
        height, width = image.shape[:2]
        if size:  # back to the file's own size
            with Image.open(path) as original:
                width, height = _oriented_size(original)
        if FLAGS.model:
            prediction = predict_exported(exported, image[None], (height, width))[0]
        else:
            prediction = model.main.postprocess(predict_padded(model, image[None]),
                                                (height, width))[0]
        written = list(model.main.save_prediction(stem, prediction))
        pngs = [w for w in written if w.endswith(".png")]
        if pngs:
            shown = image if image.shape[:2] == (height, width) else load_image(path)
            side_by_side(shown, pngs[0], f"{stem}_side_by_side.png")
            written.append(f"{stem}_side_by_side.png")
        print(f"{path} -> {', '.join(written)} {prediction.shape}")
    return 0


def _load_exported(path):
    from tada_keras.deployment import ExportedModel
    from tada_keras.tasks import get_task

    exported = ExportedModel(path)
    exported.main = get_task(exported.task)  # writes the files as a run's task does
    return exported


def predict_exported(exported, images, size):
    """``predict``'s main-task prediction from an exported file (``tada_keras.export``):
    the images zero-padded to a multiple of 32 (a fixed-size export gets them at its
    size), the padding cropped from the prediction, which is then resized to ``size`` =
    (H, W) as the task's ``postprocess`` does, unless the export already gives it."""
    from tada_keras.inference import pad_to_stride

    h, w = np.shape(images)[1:3]
    padded = pad_to_stride(images)
    prediction = exported.predict(padded)[exported.task]
    scale = 1 if prediction.shape[1] == padded.shape[1] else 2  # --full_resolution or not
    prediction = prediction[:, :(h + scale - 1) // scale, :(w + scale - 1) // scale]
    if tuple(prediction.shape[1:3]) != tuple(size):
        prediction = exported.main.resize_prediction(prediction, size)
    return prediction


def _oriented_size(image):
    from PIL import ImageOps

    return ImageOps.exif_transpose(image).size


def run():
    """The console script's entry (``pyproject.toml``): flagfiles resolved, then absl."""
    from tada_keras import flagfiles

    flagfiles.run(main)


if __name__ == "__main__":
    run()
