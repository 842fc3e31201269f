"""The TADA network of the paper (§4.4): backbone + 3-stage FPN decoder + task outputs.

The graph is split into two named sub-models so HeadFreeze can flip one flag:

* ``encoder``: preprocessing, backbone, the top lateral and the up-sampling stages up to
  the freeze point (default: after the 2nd up-sampling stage, the paper's choice);
* ``head``: every layer after the freeze point: the remaining up-sampling stages including
  their lateral (skip-connection) convolutions, every task's output layer and the
  keypoint depth branch.
"""

from __future__ import annotations

import keras

from tada_keras.layers import BatchNormalization, ImagePreprocessing
from tada_keras.models.backbones import PREPROCESSING, build_backbone

FREEZE_POINTS = ("up-1", "up-2", "up-3")
_NUM_STAGES = 3
# Feature levels in the paper's words (Table 5): the last two ResNet stages and the
# decoder's up-sampling stages. ``build_feature_model`` taps them.
FEATURE_LEVELS = ("layer-3", "layer-4", "up-1", "up-2", "up-3")
# The backbone's pyramid level behind each backbone feature level.
_BACKBONE_LEVELS = {"layer-3": "P4", "layer-4": "P5"}


def _up_stage(top, lateral, stage, channels):
    """One top-down FPN stage: upsample x2, add a 1x1 lateral of the skip, 3x3 conv+BN+ReLU."""
    up = keras.layers.UpSampling2D(2, name=f"up{stage}_upsample")(top)
    skip = keras.layers.Conv2D(channels, 1, name=f"up{stage}_lateral")(lateral)
    x = keras.layers.Add(name=f"up{stage}_merge")([up, skip])
    x = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name=f"up{stage}_conv")(x)
    x = BatchNormalization(name=f"up{stage}_bn")(x)
    return keras.layers.ReLU(name=f"up{stage}_out")(x)


def build_tada_graph(tasks, backbone="resnet50", backbone_weights=None, decoder_channels=256,
                     freeze_after="up-2", input_shape=(None, None, 3)):
    """Builds the functional graph; returns ``(image_input, outputs_dict)``.

    Args:
        tasks: ``Task`` instances (main first, then anchor); their outputs are merged.
        backbone: name from ``tada_keras.models.BACKBONES``.
        backbone_weights: ``None``, ``"imagenet"`` or a weights file path.
        decoder_channels: width of the FPN decoder.
        freeze_after: the up-sampling stage after which the ``head`` starts.
        input_shape: (H, W, 3); H and W must be divisible by 32 (or None).
    """
    if freeze_after not in FREEZE_POINTS:
        raise ValueError(
            f"freeze_after must be one of {list(FREEZE_POINTS)}, got {freeze_after!r}")
    for size in input_shape[:2]:
        if size is not None and size % 32:
            raise ValueError(f"input_shape {tuple(input_shape)}: height and width must be "
                             "divisible by 32 (the backbone's output stride).")
    if input_shape[-1] != 3:
        raise ValueError(f"input_shape {tuple(input_shape)}: expected 3 (RGB) channels.")
    split = FREEZE_POINTS.index(freeze_after) + 1
    channels = int(decoder_channels)

    # === Encoder ===
    image = keras.Input(input_shape, name="image")
    mode = PREPROCESSING.get(backbone, "unit")
    x = ImagePreprocessing(mode=mode, name="preprocessing")(image)
    pyramid = build_backbone(backbone, backbone_weights, (None, None, 3))(x)
    laterals = {1: pyramid["P4"], 2: pyramid["P3"], 3: pyramid["P2"]}
    # Every feature level is recorded by name while it is built (build_feature_model).
    encoder_levels = {level: pyramid[p] for level, p in _BACKBONE_LEVELS.items()}
    top = keras.layers.Conv2D(channels, 1, name="top_lateral")(pyramid["P5"])
    for stage in range(1, split + 1):
        top = _up_stage(top, laterals[stage], stage, channels)
        encoder_levels[f"up-{stage}"] = top
        if stage == 2:
            mid_in_encoder = top  # the depth branch (in the head) reads the 2nd stage
    encoder_outputs = [top] + [laterals[s] for s in range(split + 1, _NUM_STAGES + 1)]
    needs_mid = any(getattr(t, "uses_mid_features", False) for t in tasks)
    if split == 3 and needs_mid:
        encoder_outputs.append(mid_in_encoder)
    encoder = keras.Model(image, encoder_outputs, name="encoder")
    encoder.feature_levels = encoder_levels

    # === Head ===
    head_inputs = [keras.Input((None, None, t.shape[-1]), name=f"head_in_{i}")
                   for i, t in enumerate(encoder_outputs)]
    top = head_inputs[0]
    mid = {1: None, 2: top, 3: head_inputs[-1] if needs_mid else None}[split]
    head_levels = {}
    for i, stage in enumerate(range(split + 1, _NUM_STAGES + 1), start=1):
        top = _up_stage(top, head_inputs[i], stage, channels)
        head_levels[f"up-{stage}"] = top
        if stage == 2:
            mid = top
    outputs = {}
    for task in tasks:
        outputs.update(task.build_outputs(top, mid))
    head = keras.Model(head_inputs, outputs, name="head")
    head.feature_levels = head_levels

    # === Functional Model ===
    return image, head(encoder(image))


def build_feature_model(encoder: keras.Model, head: keras.Model,
                        levels=FEATURE_LEVELS) -> keras.Model:
    """A model sharing every layer with ``head(encoder(image))`` that also returns
    intermediate features: ``image -> {"outputs": outputs dict, "features": {level: x}}``.

    It reuses the layers (and thus the weights, trainability and BatchNorm behaviour) of
    the encoder/head split, which it leaves untouched, so the network it computes is the
    TADA network itself, with extra outputs for feature-level domain adaptation.

    Args:
        encoder / head: the sub-models of a TADA network (``build_tada_graph`` records
            their feature levels by name in ``feature_levels`` as it builds them).
        levels: names from ``FEATURE_LEVELS``.
    """
    unknown = [lv for lv in levels if lv not in FEATURE_LEVELS]
    if unknown:
        raise ValueError(f"Unknown feature level(s) {unknown}; expected {list(FEATURE_LEVELS)}")
    enc_taps = {lv: encoder.feature_levels[lv] for lv in levels if lv in encoder.feature_levels}
    head_taps = {lv: head.feature_levels[lv] for lv in levels if lv not in enc_taps}
    enc = keras.Model(encoder.inputs, [list(encoder.outputs), enc_taps],
                      name="encoder_features")
    dec = keras.Model(head.inputs, [head.output, head_taps], name="head_features")
    image = keras.Input(encoder.inputs[0].shape[1:], name="image")
    encoded, features = enc(image)
    outputs, more = dec(encoded)
    return keras.Model(image, {"outputs": outputs, "features": {**features, **more}},
                       name="tada_features")
