"""TADA network structure: encoder/head split, output sizes, serialisation, bad input."""

import keras
import numpy as np
import pytest

import tada_keras
from tada_keras.models import BackboneWeightsError


def _names(model):
    return {layer.name for layer in model.layers}


@pytest.mark.parametrize("size", [32, 96])
def test_outputs_are_half_resolution(tiny_model, size):
    model = tiny_model()
    out = model(np.zeros((2, size, size, 3), "float32"))
    assert tuple(out["normals"].shape) == (2, size // 2, size // 2, 3)
    assert tuple(out["segmentation"].shape) == (2, size // 2, size // 2, 5)


def test_head_holds_exactly_the_layers_after_up2(tiny_model):
    model = tiny_model(anchor="keypoints")
    head, encoder = model.get_layer("head"), model.get_layer("encoder")
    head_names = _names(head)
    for stage in ("up3_lateral", "up3_conv", "up3_bn", "normals", "keypoints_heatmap",
                  "keypoints_depth_fc1", "keypoints_depth"):
        assert stage in head_names
    enc_names = _names(encoder)
    for stage in ("up1_lateral", "up1_conv", "up2_lateral", "up2_bn", "top_lateral"):
        assert stage in enc_names and stage not in head_names
    assert "up3_conv" not in enc_names
    # Every weight belongs to exactly one of the two sub-models.
    n_all = len(model.weights)
    assert len(head.weights) + len(encoder.weights) == n_all


@pytest.mark.parametrize("point,in_head,in_encoder", [
    ("up-1", "up2_conv", "up1_conv"), ("up-3", "normals", "up3_conv")])
def test_freeze_point_moves_the_split(tiny_model, point, in_head, in_encoder):
    model = tiny_model(anchor="keypoints", freeze_after=point)
    assert in_head in _names(model.head)
    assert in_encoder in _names(model.encoder)
    assert "keypoints_depth_fc1" in _names(model.head)
    out = model(np.zeros((1, 64, 64, 3), "float32"))
    assert tuple(out["keypoints_depth"].shape) == (1, 6)


def test_keras_file_round_trip(tiny_model, tmp_path):
    model = tiny_model(anchor="keypoints")
    x = np.random.default_rng(0).random((1, 64, 64, 3)).astype("float32") * 255
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, tada_keras.TadaModel)
    assert loaded.get_config() == model.get_config()
    for key in ("normals", "keypoints_heatmap", "keypoints_depth"):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)[key]),
                                   keras.ops.convert_to_numpy(model(x)[key]), atol=1e-5)


def test_resnet50_parameter_count():
    model = tada_keras.build_model(backbone="resnet50", anchor_config={"num_classes": 41})
    # ResNet50 without top has 23,587,712 parameters; the decoder and heads add the rest.
    assert model.get_layer("encoder").get_layer("resnet50").count_params() == 23_587_712
    assert model.count_params() > 23_587_712
    out = model(np.zeros((1, 64, 64, 3), "float32"))
    assert tuple(out["segmentation"].shape) == (1, 32, 32, 41)


@pytest.mark.parametrize("name,widths,convs", [("resnet18", (64, 128, 256, 512), 1 + 4 * 2 * 2),
                                               ("resnet10s", (32, 64, 128, 256), 1 + 4 * 2)])
def test_basic_block_resnets(name, widths, convs):
    from tada_keras.models import build_backbone

    backbone = build_backbone(name, input_shape=(64, 64, 3))
    features = backbone(np.zeros((1, 64, 64, 3), "float32"))
    # Named levels P2..P5 (C2..C5) at strides 4, 8, 16, 32 with the stage widths.
    assert sorted(features) == ["P2", "P3", "P4", "P5"]
    assert [tuple(features[f"P{i}"].shape) for i in range(2, 6)] == [
        (1, 64 // s, 64 // s, w) for s, w in zip((4, 8, 16, 32), widths)]
    # Stem + two 3x3 convolutions per basic block (1x1 shortcuts not counted).
    n3 = sum(1 for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D)
             and layer.kernel_size != (1, 1))
    assert n3 == convs


def test_imagenet_offline_fails_with_clear_message(monkeypatch):
    import keras.src.utils.file_utils as file_utils

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    with pytest.raises(BackboneWeightsError, match="offline|download"):
        tada_keras.build_model(backbone="resnet50", backbone_weights="imagenet")


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(BackboneWeightsError, match="nope.h5"):
        tada_keras.build_model(backbone="tiny", backbone_weights=str(tmp_path / "nope.h5"))


@pytest.mark.parametrize("kwargs,match", [
    ({"input_shape": (100, 100, 3)}, "divisible by 32"),
    ({"input_shape": (64, 64, 4)}, "3 \\(RGB\\)"),
    ({"anchor_task": "depthz"}, "Unknown task 'depthz'"),
    ({"backbone": "vgg"}, "Unknown backbone 'vgg'"),
    ({"freeze_after": "up-4"}, "freeze_after"),
])
def test_bad_configuration_is_a_clear_error(kwargs, match):
    kwargs.setdefault("backbone", "tiny")
    with pytest.raises(ValueError, match=match):
        tada_keras.build_model(**kwargs)


def test_pad_to_stride_pads_bottom_right_with_zeros_only_when_needed():
    from tada_keras.inference import pad_to_stride

    images = np.full((2, 33, 64, 3), 7.0, np.float32)
    padded = pad_to_stride(images)
    assert padded.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(padded[:, :33], images)
    assert not padded[:, 33:].any()
    same = np.ones((1, 32, 96, 3), np.float32)
    assert pad_to_stride(same).shape == (1, 32, 96, 3)


def test_predict_padded_is_model_predict_on_the_padded_batch(tiny_model):
    # predict_padded calls the compiled predict function per batch (predict_on_batch):
    # the same outputs as model.predict, bit for bit, on every backend.
    from tada_keras.inference import pad_to_stride, predict_padded

    model = tiny_model()
    images = (np.random.default_rng(0).random((3, 40, 50, 3)) * 255).astype("float32")
    got = predict_padded(model, images)
    want = model.predict(pad_to_stride(images), verbose=0)
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key].shape[1:3] == (20, 25)  # 1/2 of the unpadded input
        np.testing.assert_array_equal(got[key], np.asarray(value)[:, :20, :25])
