"""Metrics agree with plain numpy; streaming (numpy and Keras) equals one-shot."""

import keras
import numpy as np
import pytest
from conftest import random_normals

from tada_keras import metrics


def _fields(seed=0, n=3, h=24, w=20):
    rng = np.random.default_rng(seed)
    gt = random_normals(rng, (n, h, w))
    pred = gt + rng.normal(scale=0.4, size=gt.shape).astype("float32")
    mask = rng.random((n, h, w)) > 0.25
    gt[0, 0, 0] = np.nan  # invalid GT values are excluded whatever the mask says
    gt[0, 0, 1] = 0.0
    return pred, gt, mask


def _plain(pred, gt, mask):
    pred, gt = pred.astype(np.float64), gt.astype(np.float64)
    errs = []
    for i in range(gt.shape[0]):
        for r in range(gt.shape[1]):
            for c in range(gt.shape[2]):
                g = gt[i, r, c]
                if not mask[i, r, c] or not np.all(np.isfinite(g)) or np.linalg.norm(g) < 1e-3:
                    continue
                p = pred[i, r, c] / np.linalg.norm(pred[i, r, c])
                cos = np.dot(p, g) / np.linalg.norm(g)
                errs.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    errs = np.array(errs)
    return {"mean": errs.mean(), "median": np.median(errs), "rmse": np.sqrt((errs ** 2).mean()),
            "a11_25": (errs < 11.25).mean(), "a22_5": (errs < 22.5).mean(),
            "a30": (errs < 30).mean()}


def test_matches_plain_numpy_loop():
    pred, gt, mask = _fields()
    got, want = metrics.normal_error_stats(pred, gt, mask), _plain(pred, gt, mask)
    assert set(got) == set(metrics.STAT_KEYS) | {metrics.NONFINITE_KEY}
    assert got[metrics.NONFINITE_KEY] == 0.0
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-4), k  # float32 inputs


def test_pooled_not_mean_of_per_image_means():
    pred, gt, mask = _fields(seed=1)
    mask[0] = False
    mask[0, :2, :2] = True  # a tiny image must not weigh like a full one
    pooled = metrics.normal_error_stats(pred, gt, mask)["mean"]
    per_image = np.mean([metrics.normal_error_stats(pred[i:i + 1], gt[i:i + 1],
                                                    mask[i:i + 1])["mean"] for i in range(3)])
    assert pooled == pytest.approx(_plain(pred, gt, mask)["mean"], abs=1e-6)
    assert abs(pooled - per_image) > 1e-3


def test_prediction_is_resized_to_ground_truth_resolution():
    rng = np.random.default_rng(2)
    gt = np.zeros((1, 8, 8, 3), "float32")
    gt[..., 2] = 1.0
    pred = np.zeros((1, 4, 4, 3), "float32")
    pred[..., 2] = 2.0  # constant field at half resolution, unnormalised
    stats = metrics.normal_error_stats(pred, gt, np.ones((1, 8, 8), bool))
    assert stats["mean"] == pytest.approx(0.0, abs=1e-3) and stats["a11_25"] == 1.0
    del rng


def test_streaming_batches_equal_one_shot_and_median_within_001_deg():
    pred, gt, mask = _fields(seed=3, n=6)
    exact = metrics.normal_error_stats(pred, gt, mask)
    acc = metrics.NormalErrorAccumulator()
    for i in range(0, 6, 2):
        acc.update(pred[i:i + 2], gt[i:i + 2], mask[i:i + 2])
    streamed = acc.result()
    for k in ("mean", "rmse", "a11_25", "a22_5", "a30"):
        assert streamed[k] == pytest.approx(exact[k], abs=1e-9), k
    assert abs(streamed["median"] - exact["median"]) < 0.01


def test_keras_metric_matches_one_shot():
    pred, gt, mask = _fields(seed=4, n=4)
    exact = metrics.normal_error_stats(pred, gt, mask)
    metric = metrics.AngularErrorMetric()
    for i in range(0, 4, 2):
        metric.update_state(gt[i:i + 2], pred[i:i + 2], sample_weight=mask[i:i + 2])
    got = metric.all_results()
    assert float(keras.ops.convert_to_numpy(metric.result())) == pytest.approx(
        exact["mean"], rel=1e-4)
    for k in ("mean", "rmse", "a11_25", "a22_5", "a30"):
        assert got[k] == pytest.approx(exact[k], rel=1e-4, abs=1e-5), k
    assert abs(got["median"] - exact["median"]) < 0.01


def _forty_five_degrees_with_broken_pixels(bad_value):
    """GT +z everywhere, predictions 45° off, a quarter of the valid pixels non-finite."""
    gt = np.zeros((2, 8, 8, 3), "float32")
    gt[..., 2] = 1.0
    pred = np.zeros_like(gt)
    pred[..., 0], pred[..., 2] = 1.0, 1.0
    pred[:, :4, :4, :] = bad_value
    mask = np.ones((2, 8, 8), bool)
    mask[:, 7, :] = False  # masked pixels stay out of the count
    return pred, gt, mask


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_nonfinite_predictions_count_as_180_degrees_in_every_form(bad_value):
    pred, gt, mask = _forty_five_degrees_with_broken_pixels(bad_value)
    fraction = 32 / 112  # 2 x 16 broken of 2 x 56 valid pixels
    want_mean = (1 - fraction) * 45.0 + fraction * 180.0
    exact = metrics.normal_error_stats(pred, gt, mask)
    acc = metrics.NormalErrorAccumulator()
    acc.update(pred, gt, mask)
    metric = metrics.AngularErrorMetric()
    metric.update_state(gt, pred, sample_weight=mask)
    for got in (exact, acc.result(), metric.all_results()):
        assert got["mean"] == pytest.approx(want_mean, abs=1e-3)
        assert got[metrics.NONFINITE_KEY] == pytest.approx(fraction)
        assert got["a30"] == 0.0 and got["median"] > 44.9
    assert float(keras.ops.convert_to_numpy(metric.result())) == pytest.approx(want_mean,
                                                                                abs=1e-3)
    # All NaN: the worst possible score, never a perfect one.
    nan = np.full_like(gt, np.nan)
    assert metrics.normal_error_stats(nan, gt, mask)["mean"] == 180.0


def test_bad_shapes_and_empty_masks_are_clear_errors():
    pred, gt, mask = _fields()
    with pytest.raises(ValueError, match="pred"):
        metrics.normal_error_stats(pred[..., :2], gt, mask)
    with pytest.raises(ValueError, match="mask"):
        metrics.normal_error_stats(pred, gt, mask[:, :5])
    with pytest.raises(ValueError, match="No valid pixels"):
        metrics.normal_error_stats(pred, gt, np.zeros_like(mask))


def test_miou_and_nme():
    gt = np.array([[0, 1, 1, 2, 2, 2]])
    pred = np.array([[2, 1, 2, 2, 2, 1]])
    conf = metrics.confusion_matrix(pred, gt, 3)
    # class 1: tp 1, union 3 ; class 2: tp 2, union 4
    assert metrics.mean_iou(conf) == pytest.approx((1 / 3 + 2 / 4) / 2)
    g = np.array([[[0, 0], [1, 0], [0, 1], [1, 1]]], float)
    assert metrics.keypoint_nme(g + [0.1, 0.0], g, np.ones((1, 4), bool)) == pytest.approx(0.1)
