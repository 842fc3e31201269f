"""Evaluation metrics of every task, in one namespace (each lives with its task).

* surface normals (``tasks/normals.py``): pooled angular error, exact
  (``normal_error_stats``), streaming (``NormalErrorAccumulator``) and as a Keras metric
  (``AngularErrorMetric``); statistics pooled over all valid pixels of a split, never a
  mean of per-image means; non-finite predictions count as 180°;
* segmentation (``tasks/segmentation.py``): ``confusion_matrix``, ``mean_iou``;
* keypoints (``tasks/keypoints.py``): ``keypoint_nme``;
* depth (``tasks/depth.py``): its evaluator's metrics.
"""

from tada_keras.tasks.keypoints import keypoint_nme
from tada_keras.tasks.normals import (
    NONFINITE_ERROR,
    NONFINITE_KEY,
    STAT_KEYS,
    THRESHOLDS,
    AngularErrorMetric,
    NormalErrorAccumulator,
    angular_errors,
    normal_error_stats,
    resize_normals,
    stats_from_errors,
)
from tada_keras.tasks.segmentation import confusion_matrix, mean_iou

__all__ = ["NONFINITE_ERROR", "NONFINITE_KEY", "STAT_KEYS", "THRESHOLDS",
           "AngularErrorMetric", "NormalErrorAccumulator", "angular_errors",
           "confusion_matrix", "keypoint_nme", "mean_iou", "normal_error_stats",
           "resize_normals", "stats_from_errors"]
