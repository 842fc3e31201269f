"""Exported inference networks (``tada-export``, ``tada-predict --model=FILE``): the graph
that is exported (image in, the model's preprocessing and the main task's ``postprocess``
inside), writing it with Keras's ``Model.export``, and running an exported file in its own
runtime (``ExportedModel``). The command line is ``tada_keras.export``.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np

FORMATS = {"saved_model": ("tf_saved_model", ""), "onnx": ("onnx", ".onnx"),
           "litert": ("litert", ".tflite")}
# The Python modules each format's converter needs, and the line that installs them.
CONVERTERS = {"onnx": ("tf2onnx", "onnx")}
INSTALL = 'pip install "tada-keras[export]"'
STRIDE = 32


def parse_size(text):
    """``"N"`` or ``"HxW"`` -> (H, W), multiples of 32; None -> None. ValueError otherwise."""
    if text is None or text == "":
        return None
    parts = text.lower().split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < STRIDE or size[0] % STRIDE or size[1] % STRIDE:
        raise ValueError(f"--input_size={text}: must be N or HxW, positive multiples of "
                         f"{STRIDE} (the network's stride)")
    return size


def missing_converter(fmt):
    """The install line for ``fmt``'s converter if a module of it is missing, else None."""
    import importlib.util

    missing = [m for m in CONVERTERS.get(fmt, ()) if importlib.util.find_spec(m) is None]
    if missing:
        return (f"--format={fmt} needs {' and '.join(missing)} (not installed): {INSTALL} "
                f"(or: pip install {' '.join(CONVERTERS[fmt])} onnxruntime)")
    return None


def inference_network(model, input_dtype="float32", full_resolution=False, anchor=False):
    """A Keras model ``image -> {main task name: prediction[, anchor outputs]}`` sharing
    ``model``'s layers: the graph that ``export_model`` writes (TensorFlow backend)."""
    import keras
    import tensorflow as tf

    main, anchor_task = model.main, (model.anchor if anchor else None)

    class InferenceNetwork(keras.Model):
        def __init__(self):
            super().__init__(name="tada_inference")
            self.network = model

        def call(self, image):
            x = keras.ops.cast(image, "float32")
            outputs = self.network(x, training=False)

            def resize(y):
                return tf.image.resize(y, tf.shape(image)[1:3], method="bilinear")

            result = {main.name: main.graph_postprocess(
                outputs, resize if full_resolution else None)}
            if anchor_task is not None:
                result.update({k: v for k, v in outputs.items() if k != main.name})
            return result

    network = InferenceNetwork()
    network(np.zeros((1, STRIDE, STRIDE, 3), input_dtype))
    return network


def default_out(model_dir, fmt, quantize="none"):
    suffix = "" if quantize == "none" else f"_{quantize}"
    name = "saved_model" if fmt == "saved_model" else f"model{suffix}{FORMATS[fmt][1]}"
    return os.path.join(model_dir, "export", name)


def export_model(model, path, fmt, input_size=None, input_dtype="float32",
                 full_resolution=False, anchor=False, quantize="none"):
    """Writes ``model``'s inference network to ``path`` in ``fmt`` (atomically: a failed
    export leaves nothing). ``input_size``: None (any multiple of 32) or (H, W)."""
    import tensorflow as tf

    if quantize != "none" and fmt != "litert":
        raise ValueError(f"--quantize={quantize} is for --format=litert only")
    network = inference_network(model, input_dtype, full_resolution, anchor)
    height, width = input_size or (None, None)
    signature = [tf.TensorSpec((None, height, width, 3), input_dtype, name="image")]
    kwargs = {}
    if fmt == "litert":
        # Built-in ops only: the file runs on any LiteRT runtime (no TF "Flex" delegate).
        target = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
        if quantize != "none":
            kwargs["optimizations"] = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            target["supported_types"] = [tf.float16]
        kwargs["target_spec"] = target
    parent = os.path.dirname(os.path.abspath(path))
    created = not os.path.isdir(parent)
    os.makedirs(parent, exist_ok=True)
    keras_format, ending = FORMATS[fmt]
    work = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.")
    try:
        tmp = os.path.join(work, "model" + ending)
        network.export(tmp, format=keras_format, input_signature=signature, verbose=False,
                       **kwargs)
        if fmt == "saved_model" and os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if created and not os.listdir(parent):
            os.rmdir(parent)  # a failed export leaves nothing behind
        raise
    shutil.rmtree(work, ignore_errors=True)
    return path


# --- Running an exported file (tada-predict --model=FILE, the benchmark, the tests) -------

class ExportedModel:
    """An exported file in its own runtime: ``predict(images) -> {name: array}``.

    ``path``: a SavedModel directory (``tf.saved_model.load``), ``*.onnx`` (onnxruntime)
    or ``*.tflite`` (TensorFlow's LiteRT interpreter, ``tf.lite.Interpreter``).
    Attributes: ``input_size`` ((H, W) or None), ``input_dtype``, ``output_names``,
    ``task`` (the main task's name: ``normals`` or ``depth``).
    """

    def __init__(self, path):
        self.path = path
        if os.path.isdir(path):
            self._load_saved_model(path)
        elif not os.path.isfile(path):
            raise ValueError(f"--model={path}: not found")
        elif path.endswith(".onnx"):
            self._load_onnx(path)
        elif path.endswith(".tflite"):
            self._load_litert(path)
        else:
            raise ValueError(f"--model={path}: expected a .onnx or .tflite file or a "
                             "SavedModel directory")
        from tada_keras.tasks import tasks_for_role

        mains = tasks_for_role("main")
        tasks = [n for n in mains if n in self.output_names]
        if not tasks:
            raise ValueError(f"--model={path}: no main-task output ({' or '.join(mains)}; "
                             f"outputs: {', '.join(self.output_names)}); it is not a "
                             "tada-export file")
        self.task = tasks[0]

    def _load_saved_model(self, path):
        import tensorflow as tf

        try:
            loaded = tf.saved_model.load(path)
            function = loaded.signatures["serving_default"]
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"--model={path}: not a SavedModel with a serving_default "
                             f"signature ({type(err).__name__})") from None
        spec = next(iter(function.structured_input_signature[1].values()))
        self._set_input(spec.shape[1:3], spec.dtype.as_numpy_dtype)
        self.output_names = sorted(function.structured_outputs)
        self._loaded = loaded  # keeps the function's variables alive
        self._run = lambda x: {k: v.numpy() for k, v in function(image=tf.constant(x)).items()}

    def _load_onnx(self, path):
        try:
            import onnxruntime
        except ImportError:
            raise ValueError(f"--model={path} needs onnxruntime (not installed): "
                             f"{INSTALL} (or: pip install onnxruntime)") from None
        try:
            session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception as err:
            raise ValueError(f"--model={path}: not a readable ONNX file "
                             f"({type(err).__name__})") from None
        (spec,) = session.get_inputs()
        dims = [d if isinstance(d, int) else None for d in spec.shape[1:3]]
        self._set_input(dims, np.uint8 if spec.type == "tensor(uint8)" else np.float32)
        self.output_names = [o.name for o in session.get_outputs()]
        self._run = lambda x: dict(zip(self.output_names,
                                       session.run(None, {spec.name: x})))

    def _load_litert(self, path):
        import warnings

        import tensorflow as tf

        try:
            with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice
                warnings.simplefilter("ignore")
                runner = tf.lite.Interpreter(model_path=path).get_signature_runner()
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"--model={path}: not a readable LiteRT file "
                             f"({type(err).__name__})") from None
        ((name, spec),) = runner.get_input_details().items()
        dims = [int(d) if d > 0 else None for d in spec["shape_signature"][1:3]]
        self._set_input(dims, spec["dtype"])
        self.output_names = sorted(runner.get_output_details())
        self._run = lambda x: runner(**{name: x})

    def _set_input(self, dims, dtype):
        dims = [None if d is None else int(d) for d in dims]
        self.input_size = tuple(dims) if None not in dims else None
        self.input_dtype = np.dtype(dtype)

    def predict(self, images):
        """(B, H, W, 3) RGB in [0, 255] -> {output name: array}; H, W multiples of 32
        (the fixed size of a fixed-size export)."""
        images = np.asarray(images)
        if self.input_dtype == np.uint8:
            images = np.clip(np.round(images), 0, 255)
        return {k: np.asarray(v) for k, v in self._run(images.astype(self.input_dtype)).items()}
