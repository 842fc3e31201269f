"""Shared fixtures. The Keras backend comes from KERAS_BACKEND (CI runs the suite once
per backend: see .ci/run)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

NUM_CLASSES = 5
NUM_KEYPOINTS = 6


def random_normals(rng, shape):
    n = rng.normal(size=shape + (3,)).astype("float32")
    n[..., 2] = np.abs(n[..., 2])
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def make_batch(seed=0, batch=4, size=32, label_size=None, keypoints=False):
    """A mixed-domain batch: first half source, second half target."""
    rng = np.random.default_rng(seed)
    ls = label_size or size // 2
    x = (rng.random((batch, size, size, 3)) * 255).astype("float32")
    y = {
        "domain": np.array([0] * (batch // 2) + [1] * (batch - batch // 2), "int32"),
        "normals": random_normals(rng, (batch, ls, ls)),
        "normals_mask": rng.random((batch, ls, ls)) > 0.2,
        "segmentation": rng.integers(0, NUM_CLASSES, (batch, ls, ls)).astype("int32"),
    }
    if keypoints:
        y.pop("segmentation")
        y["keypoints"] = np.concatenate(
            [rng.random((batch, NUM_KEYPOINTS, 2)), rng.normal(size=(batch, NUM_KEYPOINTS, 1))],
            axis=-1).astype("float32")
        y["keypoints_visible"] = rng.random((batch, NUM_KEYPOINTS)) > 0.3
    return x, y


@pytest.fixture
def tiny_model():
    import tada_keras

    def build(anchor="segmentation", **kwargs):
        config = ({"num_classes": NUM_CLASSES} if anchor == "segmentation"
                  else {"num_keypoints": NUM_KEYPOINTS})
        kwargs.setdefault("backbone", "tiny")
        kwargs.setdefault("decoder_channels", 16)
        return tada_keras.build_model(anchor_task=anchor, anchor_config=config, **kwargs)

    return build


# Modules whose every test runs on each backend (make test-jax / test-torch).
_MATRIX_MODULES = {"test_model", "test_layers", "test_losses", "test_methods", "test_metrics",
                   "test_adaptation", "test_subpixel", "test_efficientnet_lite",
                   "test_depth", "test_batchnorm", "test_self_training"}
_MATRIX_TESTS = {"test_train_evaluate_predict_end_to_end"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if module in _MATRIX_MODULES or item.originalname in _MATRIX_TESTS:
            item.add_marker(pytest.mark.backend_matrix)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The ``sim2real_rooms/tiny`` dataset prepared in a folder of the test module's own."""
    path = str(tmp_path_factory.mktemp("tfds"))
    import tensorflow_datasets as tfds

    import tada_datasets  # noqa: F401

    tfds.builder("sim2real_rooms/tiny", data_dir=path).download_and_prepare()
    return path


def h5_arrays(path) -> dict:
    """``{dataset path: array}`` of every array in an HDF5 file (a ``.weights.h5``)."""
    import h5py

    values = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: values.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return values
