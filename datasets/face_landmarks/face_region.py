"""The facial-region evaluation mask, computed from 2D landmarks as in the paper.

The paper (Sec. 5, "Faces") computes "the facial region mask from the 2D keypoints"; we take
the filled convex hull of the visible 68 landmarks (jaw line and eyebrows bound it), which is
the usual choice in facial normal evaluation. The forehead above the brows is excluded.
"""

from __future__ import annotations

import numpy as np


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Counter-clockwise convex hull (Andrew's monotone chain) of (N, 2) points."""
    pts = np.unique(np.asarray(points, np.float64), axis=0)
    if len(pts) < 3:
        return pts
    order = np.lexsort((pts[:, 1], pts[:, 0]))
    pts = pts[order]

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in pts[::-1]:
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def polygon_mask(polygon_xy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bool (H, W) mask of pixel centres inside a convex polygon given in pixel units."""
    mask = np.zeros((height, width), bool)
    if len(polygon_xy) < 3:
        return mask
    x0, y0 = np.floor(polygon_xy.min(axis=0)).astype(int)
    x1, y1 = np.ceil(polygon_xy.max(axis=0)).astype(int)
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, width - 1), min(y1, height - 1)
    if x1 < x0 or y1 < y0:
        return mask
    xs = np.arange(x0, x1 + 1) + 0.5
    ys = np.arange(y0, y1 + 1) + 0.5
    gx, gy = np.meshgrid(xs, ys)
    # Signed area sign tells the winding; inside = same side of every edge.
    a = polygon_xy
    b = np.roll(polygon_xy, -1, axis=0)
    area = np.sum(a[:, 0] * b[:, 1] - b[:, 0] * a[:, 1])
    sign = 1.0 if area > 0 else -1.0
    inside = np.ones(gx.shape, bool)
    for (ax, ay), (bx, by) in zip(a, b):
        inside &= sign * ((bx - ax) * (gy - ay) - (by - ay) * (gx - ax)) >= 0
    mask[y0 : y1 + 1, x0 : x1 + 1] = inside
    return mask


def face_region_mask(
    keypoints: np.ndarray, visible: np.ndarray, height: int, width: int
) -> np.ndarray | None:
    """Convex hull of the visible landmarks as a bool (H, W) mask; None if < 3 are visible.

    Args:
        keypoints: (K, >=2) with columns x, y normalised to [0, 1] (origin top-left).
        visible: (K,) bool.
    """
    vis = np.asarray(visible, bool)
    if vis.sum() < 3:
        return None
    xy = np.asarray(keypoints, np.float64)[vis, :2] * np.array([width, height])
    return polygon_mask(convex_hull(xy), height, width)
