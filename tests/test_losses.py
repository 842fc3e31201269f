"""Task losses: values, masks (poisoned labels change nothing), domain selection."""

import keras
import numpy as np
import pytest
from conftest import make_batch

from tada_keras import LossWeights
from tada_keras.backend import value_and_gradients

ALL = LossWeights(source_main=1.0, source_anchor=0.5, target_anchor=0.7, target_main=0.3)


def _outputs(model, x):
    return {k: keras.ops.convert_to_numpy(v) for k, v in model(x).items()}


def _loss_and_grads(model, y, y_pred):
    names = sorted(y_pred)

    def f(*preds):
        return model.weighted_loss(y, dict(zip(names, preds)))[0]

    return value_and_gradients(f, [y_pred[n] for n in names])


@pytest.mark.parametrize("anchor", ["segmentation", "keypoints"])
@pytest.mark.parametrize("poison", [1e6, np.nan])
def test_masked_labels_change_neither_loss_nor_gradients(tiny_model, anchor, poison):
    model = tiny_model(anchor=anchor)
    model.set_loss_weights(ALL)
    x, y = make_batch(seed=3, keypoints=anchor == "keypoints")
    y_pred = _outputs(model, x)
    loss, grads = _loss_and_grads(model, y, y_pred)
    assert np.isfinite(loss) and loss > 0

    bad = {k: v.copy() for k, v in y.items()}
    bad["normals"][~bad["normals_mask"]] = poison
    if anchor == "keypoints":
        bad["keypoints"][~bad["keypoints_visible"]] = poison
    else:  # void pixels (label 0) hold no information; out-of-range ids are masked too
        bad["segmentation"][bad["segmentation"] == 0] = 0
    loss2, grads2 = _loss_and_grads(model, bad, y_pred)
    np.testing.assert_allclose(loss2, loss, rtol=1e-6)
    for g, g2 in zip(grads, grads2):
        assert np.all(np.isfinite(g2))
        np.testing.assert_allclose(g2, g, rtol=1e-5, atol=1e-9)


def test_zero_length_and_nan_ground_truth_are_masked(tiny_model):
    model = tiny_model()
    x, y = make_batch(seed=1)
    y_pred = _outputs(model, x)
    ref = float(keras.ops.convert_to_numpy(model.group_losses(y, y_pred)["source_main"]))
    y["normals_mask"][:] = True
    y["normals"][0, :2] = 0.0  # zero length
    y["normals"][1, :2] = np.nan
    y["normals"][0, 2:] = y["normals"][0, 2:]  # unchanged
    value = float(keras.ops.convert_to_numpy(model.group_losses(y, y_pred)["source_main"]))
    assert np.isfinite(value)
    # All masked: a loss of exactly zero, not NaN.
    y["normals_mask"][:] = False
    zero = float(keras.ops.convert_to_numpy(model.group_losses(y, y_pred)["source_main"]))
    assert zero == 0.0 and np.isfinite(ref)


def test_cosine_loss_values(tiny_model):
    model = tiny_model()
    _, y = make_batch(seed=2)
    y["normals_mask"][:] = True
    gt = y["normals"]
    for pred, expected in ((3.0 * gt, 0.0), (-gt, 2.0)):
        y_pred = {"normals": pred, "segmentation": np.zeros(gt.shape[:3] + (5,), "float32")}
        value = model.group_losses(y, y_pred)["source_main"]
        np.testing.assert_allclose(keras.ops.convert_to_numpy(value), expected, atol=1e-5)


def test_domain_selection_target_labels_never_reach_source_losses(tiny_model):
    model = tiny_model()
    model.set_loss_weights(LossWeights(source_main=1.0, source_anchor=1.0))
    x, y = make_batch(seed=4)
    y_pred = _outputs(model, x)
    base = float(keras.ops.convert_to_numpy(model.compute_loss(y=y, y_pred=y_pred)))
    target = y["domain"] == 1
    y["normals"][target] = -y["normals"][target]
    y["segmentation"][target] = (y["segmentation"][target] + 1) % 5
    again = float(keras.ops.convert_to_numpy(model.compute_loss(y=y, y_pred=y_pred)))
    assert again == pytest.approx(base, rel=1e-6)
    groups = model.group_losses(y, y_pred)
    assert set(groups) == {"source_main", "source_anchor", "target_anchor", "target_main"}


def test_segmentation_ignore_label_and_cross_entropy(tiny_model):
    model = tiny_model()
    _, y = make_batch(seed=5)
    logits = np.zeros(y["segmentation"].shape + (5,), "float32")
    y_pred = {"normals": np.ones(y["normals"].shape, "float32"), "segmentation": logits}
    value = model.group_losses(y, y_pred)["source_anchor"]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(value), np.log(5.0), rtol=1e-5)
    y["segmentation"][:] = 0  # all void
    value = model.group_losses(y, y_pred)["source_anchor"]
    assert float(keras.ops.convert_to_numpy(value)) == 0.0


def test_keypoint_heatmap_peaks_at_the_keypoint():
    from tada_keras.tasks.keypoints import gaussian_heatmaps

    points = np.array([[[0.25, 0.75, 0.0]]], "float32")
    maps = keras.ops.convert_to_numpy(gaussian_heatmaps(points, 16, 16, 1.0))
    row, col = np.unravel_index(np.argmax(maps[0, :, :, 0]), (16, 16))
    assert (row, col) in {(11, 3), (12, 4), (11, 4), (12, 3)}
    assert maps.max() <= 1.0 and maps.max() > 0.7


@pytest.mark.parametrize("key,shape,match", [
    ("normals", (4, 16, 16, 2), "labels\\['normals'\\]"),
    ("segmentation", (4, 16, 16, 3), "labels\\['segmentation'\\]"),
    ("normals_mask", (4, 8, 8), "normals_mask"),
])
def test_bad_label_shapes_are_named(tiny_model, key, shape, match):
    model = tiny_model()
    model.set_loss_weights(ALL)
    x, y = make_batch()
    y[key] = np.zeros(shape, y[key].dtype)
    with pytest.raises(ValueError, match=match):
        model.compute_loss(y=y, y_pred=_outputs(model, x))


def test_missing_labels_for_an_active_group_is_an_error(tiny_model):
    model = tiny_model()
    model.set_loss_weights(ALL)
    x, y = make_batch()
    del y["segmentation"]
    with pytest.raises(ValueError, match="segmentation"):
        model.compute_loss(y=y, y_pred=_outputs(model, x))
