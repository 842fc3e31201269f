"""3D keypoint anchor: 2D heatmaps plus a depth vector (Bulat & Tzimiropoulos style)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tada_keras import conventions as C
from tada_keras.tasks import register
from tada_keras.tasks.base import Task, check_rank, float32_output


@register
class KeypointsTask(Task):
    """K keypoint heatmaps at 1/2 input size and a K-vector of relative depths.

    Heatmap targets are unnormalised Gaussians (peak 1) with standard deviation ``sigma``
    in *output* pixels (default 2.0, face-alignment's 64x64 training maps use sigma 2),
    regressed with a squared error. Depth targets are the keypoints' depths minus the mean
    depth of the visible keypoints of the image (translation invariant, as 3D face
    alignment zero-means z), divided by ``depth_scale``; regressed with a squared error by
    a 2-layer fully-connected branch (256 hidden units) after global average pooling of the
    2nd up-sampling stage's output (paper §4.4). Invisible keypoints never reach a loss.

    Args:
        num_keypoints: K.
        sigma: heatmap Gaussian standard deviation in output pixels.
        depth_scale: divides relative depths (dataset units) before the L2 loss.
        depth_weight: coefficient of the depth term relative to the heatmap term.
        heatmap_weight: coefficient of the heatmap term.
    """

    name = "keypoints"
    label_keys = (C.KEYPOINTS, C.KEYPOINTS_VISIBLE)
    roles = ("anchor",)
    features = (C.KEYPOINTS, C.KEYPOINTS_VISIBLE)
    uses_mid_features = True
    # Mirroring a face swaps left and right landmarks: the permutation of the 68-point
    # scheme is not implemented, so --augment=photometric_flip refuses this task.
    flippable = False
    anchor_metric = "nme"
    anchor_higher_is_better = False

    def __init__(self, num_keypoints: int = 68, sigma: float = 2.0, depth_scale: float = 1.0,
                 depth_weight: float = 1.0, heatmap_weight: float = 100.0):
        if int(num_keypoints) < 1:
            raise ValueError(f"keypoints: num_keypoints must be >= 1, got {num_keypoints}")
        super().__init__(num_keypoints=int(num_keypoints), sigma=float(sigma),
                         depth_scale=float(depth_scale), depth_weight=float(depth_weight),
                         heatmap_weight=float(heatmap_weight))
        self.num_keypoints = int(num_keypoints)
        self.sigma = float(sigma)
        self.depth_scale = float(depth_scale)
        self.depth_weight = float(depth_weight)
        self.heatmap_weight = float(heatmap_weight)

    def build_outputs(self, fine_features, mid_features):
        heatmaps = keras.layers.Conv2DTranspose(
            self.num_keypoints, 4, strides=2, padding="same", name="keypoints_heatmap",
        )(fine_features)
        heatmaps = float32_output(heatmaps, "keypoints_heatmap")
        x = keras.layers.GlobalAveragePooling2D(name="keypoints_depth_pool")(mid_features)
        x = keras.layers.Dense(256, activation="relu", name="keypoints_depth_fc1")(x)
        depth = keras.layers.Dense(self.num_keypoints, dtype="float32",
                                   name="keypoints_depth")(x)
        return {"keypoints_heatmap": heatmaps, "keypoints_depth": depth}

    def check_labels(self, y, y_pred):
        k = self.num_keypoints
        check_rank(y, C.KEYPOINTS, 3, 3, f"(B, {k}, 3)")
        check_rank(y, C.KEYPOINTS_VISIBLE, 2, None, f"(B, {k})")
        if tuple(y[C.KEYPOINTS].shape)[1] != k or tuple(y[C.KEYPOINTS_VISIBLE].shape)[1] != k:
            raise ValueError(f"labels['keypoints']: expected {k} keypoints, got shapes "
                             f"{tuple(y[C.KEYPOINTS].shape)} and "
                             f"{tuple(y[C.KEYPOINTS_VISIBLE].shape)}")

    def loss_terms(self, y, y_pred):
        heatmaps = ops.cast(y_pred["keypoints_heatmap"], "float32")
        points, visible = sanitize_keypoints(y[C.KEYPOINTS], y[C.KEYPOINTS_VISIBLE])
        target = gaussian_heatmaps(points, ops.shape(heatmaps)[1], ops.shape(heatmaps)[2],
                                   self.sigma)
        heat_loss = ops.square(heatmaps - target)  # (B, h, w, K)
        heat_weight = ops.zeros_like(heat_loss) + visible[:, None, None, :]
        rel_depth = relative_depth(points[..., 2], visible) / self.depth_scale
        depth_pred = ops.cast(y_pred["keypoints_depth"], "float32")
        depth_loss = ops.square(depth_pred - rel_depth)
        return [(heat_loss, heat_weight, self.heatmap_weight),
                (depth_loss, visible, self.depth_weight)]

    def anchor_agreement(self, y, outputs, settings):
        """Pixels within ``settings.anchor_radius`` (normalised image units) of a
        visible landmark whose teacher heatmap peaks within that radius of it."""
        heat = ops.cast(outputs["keypoints_heatmap"], "float32")  # (B, h, w, K)
        height, width = heat.shape[1], heat.shape[2]
        points, visible = sanitize_keypoints(y[C.KEYPOINTS], y[C.KEYPOINTS_VISIBLE])
        flat = ops.argmax(ops.reshape(ops.transpose(heat, (0, 3, 1, 2)),
                                      (-1, heat.shape[3], height * width)), axis=-1)
        py = (ops.cast(flat // width, "float32") + 0.5) / height
        px = (ops.cast(flat % width, "float32") + 0.5) / width
        radius2 = float(settings.anchor_radius) ** 2
        located = (ops.square(px - points[..., 0]) + ops.square(py - points[..., 1])
                   <= radius2)
        agree = ops.logical_and(visible > 0.5, located)  # (B, K)
        xs = (ops.cast(ops.arange(width), "float32") + 0.5)[None, None, :, None] / width
        ys = (ops.cast(ops.arange(height), "float32") + 0.5)[None, :, None, None] / height
        near = (ops.square(xs - points[:, None, None, :, 0])
                + ops.square(ys - points[:, None, None, :, 1])) <= radius2
        return ops.any(ops.logical_and(near, agree[:, None, None, :]), axis=-1)

    # --- data ---------------------------------------------------------------------------
    @classmethod
    def config_from_info(cls, info):
        return {"num_keypoints": int(info.features[C.KEYPOINTS].shape[0])}

    def evaluator(self):
        return _KeypointEvaluator()

    def read_dense(self, example):
        if C.KEYPOINTS not in example:
            raise ValueError("The dataset has no 'keypoints' feature for the keypoint "
                             "anchor.")
        return {}

    def make_labels(self, example, dense, geometry):
        points, visible = keypoints_after_crop(example, geometry)
        return {C.KEYPOINTS: points, C.KEYPOINTS_VISIBLE: visible}

    def feature_locations(self, features, labels):
        return keypoint_features(features, labels[C.KEYPOINTS], labels[C.KEYPOINTS_VISIBLE])


class _KeypointEvaluator:
    """NME (``keypoint_nme`` below: mean 2D error of the visible keypoints over the
    square root of their bounding box's area, averaged over images with >= 2 visible
    keypoints) of the heatmaps' peaks, located in normalised image coordinates."""

    def __init__(self):
        self.pred, self.gt, self.visible = [], [], []

    def update(self, outputs, labels):
        if "keypoints_heatmap" not in outputs:
            return
        self.pred.append(heatmap_peaks(np.asarray(outputs["keypoints_heatmap"])))
        self.gt.append(np.asarray(labels[C.KEYPOINTS])[..., :2])
        self.visible.append(np.asarray(labels[C.KEYPOINTS_VISIBLE], bool))

    def result(self):
        if not self.pred:
            return {}
        visible = np.concatenate(self.visible)
        if not (visible.sum(-1) >= 2).any():
            return {}
        return {"nme": keypoint_nme(np.concatenate(self.pred), np.concatenate(self.gt),
                                      visible)}


def heatmap_peaks(heatmaps: np.ndarray) -> np.ndarray:
    """(B, h, w, K) heatmaps -> (B, K, 2) x, y of each map's maximum, normalised to [0, 1]
    (pixel centres at (i + 0.5) / size, the labels' convention)."""
    b, h, w, k = heatmaps.shape
    flat = np.moveaxis(heatmaps, -1, 1).reshape(b, k, h * w)
    index = np.argmax(np.nan_to_num(flat, nan=-np.inf), axis=-1)
    return np.stack([(index % w + 0.5) / w, (index // w + 0.5) / h], axis=-1)


def keypoints_after_crop(example, geometry):
    """Keypoints (normalised to the uncropped image) moved into the crop's frame; those the
    crop cut off become invisible."""
    import tensorflow as tf

    points = tf.cast(example[C.KEYPOINTS], tf.float32)
    visible = tf.cast(example[C.KEYPOINTS_VISIBLE], tf.bool)
    if geometry.offset is not None:
        oy, ox, h, w = (tf.cast(v, tf.float32) for v in geometry.offset)
        size = tf.cast(tf.shape(geometry.image)[:2], tf.float32)
        x = (points[:, 0] * w - ox) / size[1]
        y = (points[:, 1] * h - oy) / size[0]
        visible = visible & (x >= 0) & (x < 1) & (y >= 0) & (y < 1)
        points = tf.stack([x, y, points[:, 2]], axis=-1)
    return points, visible


def keypoint_features(features: np.ndarray, keypoints: np.ndarray,
                      visible: np.ndarray) -> dict[int, np.ndarray]:
    """Bilinearly sampled feature at each visible keypoint of one image.

    ``keypoints`` (K, >=2): x, y normalised to [0, 1] (pixel centres at (i + 0.5) / size).
    """
    h, w, _ = features.shape
    out = {}
    for k, (point, vis) in enumerate(zip(np.asarray(keypoints), np.asarray(visible))):
        if not vis:
            continue
        x = np.clip(point[0] * w - 0.5, 0, w - 1)
        y = np.clip(point[1] * h - 0.5, 0, h - 1)
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
        fx, fy = x - x0, y - y0
        top = (1 - fx) * features[y0, x0] + fx * features[y0, x1]
        bottom = (1 - fx) * features[y1, x0] + fx * features[y1, x1]
        out[k] = ((1 - fy) * top + fy * bottom).astype(np.float64)
    return out


def sanitize_keypoints(points, visible):
    """Returns (points with invisible/non-finite rows zeroed, float visibility)."""
    points = ops.cast(points, "float32")
    ok = ops.logical_and(ops.cast(visible, "bool"), ops.all(ops.isfinite(points), axis=-1))
    points = ops.where(ok[..., None], points, ops.zeros_like(points))
    return points, ops.cast(ok, "float32")


def relative_depth(depth, visible):
    """Depth minus the mean depth of the visible keypoints of each example."""
    count = ops.maximum(ops.sum(visible, axis=-1, keepdims=True), 1.0)
    mean = ops.sum(depth * visible, axis=-1, keepdims=True) / count
    return (depth - mean) * visible


def gaussian_heatmaps(points, height, width, sigma):
    """(B, K, >=2) normalised x, y -> (B, height, width, K) Gaussians with peak 1."""
    points = ops.cast(points, "float32")
    xs = (ops.cast(ops.arange(width), "float32") + 0.5)[None, None, :, None]
    ys = (ops.cast(ops.arange(height), "float32") + 0.5)[None, :, None, None]
    px = points[:, None, None, :, 0] * ops.cast(width, "float32")
    py = points[:, None, None, :, 1] * ops.cast(height, "float32")
    dist2 = ops.square(xs - px) + ops.square(ys - py)
    return ops.exp(-dist2 / (2.0 * sigma * sigma))


def keypoint_nme(pred, gt, visible) -> float:
    """Mean 2D error of visible keypoints / sqrt(area of the GT keypoints' bounding box).

    ``pred`` and ``gt`` are (N, K, >=2) in the same units; ``visible`` is (N, K).
    """
    pred, gt = np.asarray(pred, np.float64)[..., :2], np.asarray(gt, np.float64)[..., :2]
    visible = np.asarray(visible, bool)
    errors = []
    for p, g, v in zip(pred, gt, visible):
        if v.sum() < 2:
            continue
        span = g[v].max(0) - g[v].min(0)
        scale = np.sqrt(max(span[0] * span[1], 1e-12))
        errors.append(np.linalg.norm(p[v] - g[v], axis=-1).mean() / scale)
    if not errors:
        raise ValueError("keypoint_nme: no image with >= 2 visible keypoints")
    return float(np.mean(errors))
