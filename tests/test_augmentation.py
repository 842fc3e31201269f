"""--augment: source-domain photometric augmentation (Keras preprocessing layers in
tf.data) and horizontal flips that transform the normals with the image."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tada_keras import conventions as C
from tada_keras.config import RunConfig, validate
from tada_keras.data import pipeline as P

pytestmark = pytest.mark.backend_matrix

H, W = 8, 12


def _examples(n=6):
    rng = np.random.default_rng(0)
    # An image whose columns differ, normals that point right (+x) on the left half and
    # left (-x) on the right half, segmentation = column index + 1.
    image = rng.integers(0, 256, (n, H, W, 3)).astype(np.uint8)
    normals = np.zeros((n, H, W, 3), np.float32)
    normals[:, :, : W // 2] = [0.6, 0.0, 0.8]
    normals[:, :, W // 2:] = [-0.6, 0.0, 0.8]
    seg = np.broadcast_to(np.arange(1, W + 1, dtype=np.uint8)[None, None, :, None],
                          (n, H, W, 1)).copy()
    return tf.data.Dataset.from_tensor_slices({
        C.IMAGE: image, C.NORMALS: normals, C.NORMALS_MASK: np.ones((n, H, W), bool),
        C.SEGMENTATION: seg})


def _batch(augment, seed=0):
    spec = P.DataSpec(label_scale=1.0, augment=augment)
    ds = P.mixed_train_dataset(_examples(), _examples(), spec, batch_source=6,
                               batch_target=6, use_target_main=False, use_anchor=True,
                               use_target_anchor=True, seed=seed, shuffle_buffer=1)
    images, labels = next(iter(ds))
    return images.numpy(), {k: v.numpy() for k, v in labels.items()}


def test_flip_mirrors_image_and_labels_and_negates_the_normals_x():
    tf.random.set_seed(3)
    _, labels = _batch("photometric_flip")
    seg = labels[C.SEGMENTATION][:6, 0, :]  # source examples, first row
    flipped = seg[:, 0] == W
    assert flipped.any() and (~flipped).any()  # both outcomes in 6 draws at this seed
    for i in range(6):
        expected = np.arange(W, 0, -1) if flipped[i] else np.arange(1, W + 1)
        np.testing.assert_array_equal(seg[i], expected)
        nx = labels[C.NORMALS][i, 0, :, 0]
        # Mirrored: the left half now holds the former right half's normals, negated,
        # so they point right again, +x (a flip without the negation would give -0.6).
        np.testing.assert_allclose(nx[: W // 2], 0.6, atol=1e-6)
        np.testing.assert_allclose(nx[W // 2:], -0.6, atol=1e-6)
    # Target examples are never flipped (nor augmented: the layers go to source only).
    np.testing.assert_array_equal(labels[C.SEGMENTATION][6:, 0, :],
                                  np.tile(np.arange(1, W + 1), (6, 1)))


def test_photometric_layers_change_the_image_reproducibly():
    spec = P.DataSpec(label_scale=1.0, augment="photometric")

    def prepared(layers):  # in tf.data, as in training (one element: no parallel draws)
        tf.random.set_seed(11)
        ds = _examples(1).map(lambda ex: P.prepare_example(
            ex, spec, C.DOMAIN_SOURCE, True, True, training=True, augment=layers)[0])
        return next(iter(ds)).numpy()

    plain = prepared(None)
    augmented = prepared(P.photometric_layers(seed=7))
    np.testing.assert_array_equal(augmented, prepared(P.photometric_layers(seed=7)))
    assert not np.array_equal(augmented, prepared(P.photometric_layers(seed=8)))
    assert np.abs(augmented - plain).mean() > 1.0
    assert augmented.min() >= 0.0 and augmented.max() <= 255.0
    assert [type(layer).__name__ for layer in P.photometric_layers()] == [
        "RandomBrightness", "RandomContrast", "RandomHue", "RandomGrayscale"]


def test_flip_is_refused_for_keypoints_and_the_flag_validates():
    cfg = RunConfig(model_dir="/tmp/x", anchor_task="keypoints", augment="photometric_flip")
    with pytest.raises(ValueError, match="--augment=photometric_flip: --anchor=keypoints"):
        validate(cfg)
    validate(dataclasses.replace(cfg, augment="photometric"))
    with pytest.raises(ValueError, match="--augment"):
        validate(dataclasses.replace(cfg, augment="flips"))
