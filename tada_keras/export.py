"""Export a trained run's inference network to SavedModel, ONNX or LiteRT (``tada-export``).

    tada-export --model_dir=runs/demo/headfreeze --format=onnx          # -> <run>/export/model.onnx
    tada-export --model_dir=RUN --format=litert --quantize=float16 --out=model_fp16.tflite
    tada-export --model_dir=RUN --format=saved_model --input_size=256 --full_resolution

The exported graph is the **inference network only** (no discriminators, no optimizer):

* input ``image``: (batch, H, W, 3) RGB in [0, 255], float32 (default; ``--input_dtype=uint8``
  takes uint8 pixels), the model's own preprocessing inside. The batch size is dynamic;
  H and W are dynamic multiples of 32 unless ``--input_size`` fixes them (``N`` or
  ``HxW``, multiples of 32);
* output: the main task's prediction as ``postprocess`` makes it, named after the task:
  ``normals`` (B, h, w, 3) unit normals, or ``depth`` (B, h, w) metres, at 1/2 of the
  input size, or at the input size with ``--full_resolution`` (bilinear up-sampling, and
  for normals re-normalisation, inside the graph); ``--anchor`` adds the anchor task's raw
  outputs (e.g. ``segmentation`` logits at 1/2 size).

Each format is written with Keras's own ``Model.export`` on the TensorFlow backend
(``KERAS_BACKEND=tensorflow``, the default; the exported files need no backend):
``saved_model`` (TensorFlow), ``litert`` (TensorFlow's TFLite converter, built-in
ops only; ``--quantize=float16|int8`` for post-training float16 or dynamic-range int8
weights) and ``onnx`` (tf2onnx and onnx: ``pip install "tada-keras[export]"``).
``tada-predict --model=FILE`` runs an exported file.
"""

from __future__ import annotations

import os
import sys

from absl import flags

flags.DEFINE_string("model_dir", None, "A directory written by tada_keras.train.")
flags.DEFINE_enum("format", None, ["saved_model", "onnx", "litert"], "The exported format.")
flags.DEFINE_string("out", None, "Output path (default: <model_dir>/export/model.onnx, "
                    "model.tflite or saved_model/).")
flags.DEFINE_string("input_size", None, "A fixed input size, N or HxW (multiples of 32); "
                    "default: any multiple of 32.")
flags.DEFINE_enum("input_dtype", "float32", ["float32", "uint8"],
                  "The input's type: float32 RGB in [0, 255] (16-bit images keep their "
                  "precision) or uint8.")
flags.DEFINE_boolean("full_resolution", False, "Predictions at the input's size (bilinear "
                     "up-sampling and, for normals, re-normalisation in the graph) instead "
                     "of the network's 1/2 size.")
flags.DEFINE_boolean("anchor", False, "Also output the anchor task's raw outputs.")
flags.DEFINE_enum("quantize", "none", ["none", "float16", "int8"],
                  "LiteRT only: post-training float16 or dynamic-range int8 weights.")
FLAGS = flags.FLAGS

def main(argv):
    del argv
    if not FLAGS.model_dir or not FLAGS.format:
        print("error: --model_dir and --format are required", file=sys.stderr)
        return 2
    from tada_keras.deployment import default_out, missing_converter, parse_size

    try:
        import keras

        if keras.backend.backend() != "tensorflow":
            raise ValueError(f"tada-export runs on the TensorFlow backend, not "
                             f"{keras.backend.backend()}: set KERAS_BACKEND=tensorflow")
        size = parse_size(FLAGS.input_size)
        if FLAGS.quantize != "none" and FLAGS.format != "litert":
            raise ValueError(f"--quantize={FLAGS.quantize} is for --format=litert only")
        missing = missing_converter(FLAGS.format)
        if missing:
            raise ValueError(missing)
        out = FLAGS.out or default_out(FLAGS.model_dir, FLAGS.format, FLAGS.quantize)
        if FLAGS.format == "litert" and not out.endswith(".tflite"):
            raise ValueError(f"--out={out}: a LiteRT file ends with .tflite")
        if FLAGS.format != "saved_model" and os.path.isdir(out):
            raise ValueError(f"--out={out} is a directory, not a file")
        if FLAGS.format == "saved_model" and os.path.isfile(out):
            raise ValueError(f"--out={out} is a file, not a SavedModel directory")
        from tada_keras.inference import load_run

        _, model = load_run(FLAGS.model_dir)
        if FLAGS.anchor and model.anchor is None:
            raise ValueError(f"--anchor: the run {FLAGS.model_dir} has no anchor task")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from tada_keras.deployment import export_model

    export_model(model, out, FLAGS.format, size, FLAGS.input_dtype, FLAGS.full_resolution,
                 FLAGS.anchor, FLAGS.quantize)
    shape = f"{size[0]}x{size[1]}" if size else "any multiple of 32"
    print(f"{FLAGS.model_dir} -> {out} ({FLAGS.format}, input {FLAGS.input_dtype} "
          f"{shape}, output {model.main.name} at "
          f"{'the input' if FLAGS.full_resolution else '1/2 of the input'} size)")
    return 0


def run():
    """The console script's entry (``pyproject.toml``)."""
    from tada_keras import flagfiles

    flagfiles.run(main)


if __name__ == "__main__":
    run()
