"""Head pose from a normal map, pose histograms and histogram-matching subset selection.

The paper's "SfSsyn-front" set was re-rendered so that its head rotations follow the poses
estimated on FaceWarehouse. We cannot re-render SfSNet's 3DMM faces, so we *select* renders
instead: every face gets a (yaw, pitch) estimate, and renders are kept with a per-bin
probability that turns the source's pose histogram into the target's (rejection sampling,
the decision hashed from the example id so that it is deterministic).

Pose estimate ("mean_normal_v1"): the mean camera-frame normal over the face mask. For a
rigid face the mean normal turns with the head, so yaw = atan2(m_x, m_z) (positive: the face
looks toward the image's right) and pitch = atan2(m_y, hypot(m_x, m_z)) (positive: looking
up). It is biased toward zero (foreshortened and self-occluded parts count less), but the same
estimator runs on both domains, and the histograms are compared in its own units. Roll is not
estimated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib

import numpy as np

ESTIMATOR = "mean_normal_v1"
DEFAULT_YAW_EDGES = tuple(float(v) for v in range(-90, 91, 10))
DEFAULT_PITCH_EDGES = tuple(float(v) for v in range(-60, 61, 10))
TARGET_HISTOGRAM_FILENAME = "target_pose_histogram.json"


def pose_from_normals(normals: np.ndarray, mask: np.ndarray) -> tuple[float, float] | None:
    """(yaw, pitch) in degrees from camera-frame normals (H, W, 3); None if the mask is empty."""
    m = np.asarray(mask, bool)
    if not m.any():
        return None
    mean = np.asarray(normals, np.float64)[m].mean(axis=0)
    if np.linalg.norm(mean) < 1e-6:
        return None
    yaw = np.degrees(np.arctan2(mean[0], mean[2]))
    pitch = np.degrees(np.arctan2(mean[1], np.hypot(mean[0], mean[2])))
    return float(yaw), float(pitch)


@dataclasses.dataclass
class PoseHistogram:
    """2D histogram of (yaw, pitch) in degrees; values outside the edges go to the end bins."""

    yaw_edges: tuple[float, ...] = DEFAULT_YAW_EDGES
    pitch_edges: tuple[float, ...] = DEFAULT_PITCH_EDGES
    counts: np.ndarray | None = None  # (len(yaw_edges) - 1, len(pitch_edges) - 1)
    estimator: str = ESTIMATOR

    def __post_init__(self):
        shape = (len(self.yaw_edges) - 1, len(self.pitch_edges) - 1)
        if self.counts is None:
            self.counts = np.zeros(shape, np.int64)
        self.counts = np.asarray(self.counts, np.int64)
        if self.counts.shape != shape:
            raise ValueError(f"histogram counts shape {self.counts.shape} != edges {shape}")

    def bin_of(self, yaw: float, pitch: float) -> tuple[int, int]:
        iy = int(np.clip(np.searchsorted(self.yaw_edges, yaw, side="right") - 1,
                         0, len(self.yaw_edges) - 2))
        ip = int(np.clip(np.searchsorted(self.pitch_edges, pitch, side="right") - 1,
                         0, len(self.pitch_edges) - 2))
        return iy, ip

    def add(self, yaw: float, pitch: float) -> None:
        self.counts[self.bin_of(yaw, pitch)] += 1

    def to_dict(self) -> dict:
        return {
            "estimator": self.estimator,
            "yaw_edges": list(self.yaw_edges),
            "pitch_edges": list(self.pitch_edges),
            "counts": self.counts.tolist(),
            "total": int(self.counts.sum()),
        }

    @classmethod
    def from_dict(cls, d: dict, source="<dict>") -> PoseHistogram:
        try:
            return cls(
                yaw_edges=tuple(float(v) for v in d["yaw_edges"]),
                pitch_edges=tuple(float(v) for v in d["pitch_edges"]),
                counts=np.asarray(d["counts"], np.int64),
                estimator=d.get("estimator", ESTIMATOR),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"{source}: not a pose histogram ({e})") from e

    def marginals_text(self) -> str:
        """Human-readable yaw and pitch marginals (for logs and READMEs)."""
        yaw = self.counts.sum(axis=1)
        pitch = self.counts.sum(axis=0)

        def fmt(edges, c):
            return "  ".join(
                f"[{edges[i]:+.0f},{edges[i + 1]:+.0f}):{int(c[i])}"
                for i in range(len(c)) if c[i])

        return (f"yaw   {fmt(self.yaw_edges, yaw)}\n"
                f"pitch {fmt(self.pitch_edges, pitch)}")


def read_histogram(path) -> PoseHistogram:
    try:
        from etils import epath

        text = epath.Path(path).read_text()
    except ImportError:
        text = pathlib.Path(path).read_text()
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    hist = PoseHistogram.from_dict(d, source=path)
    if hist.estimator != ESTIMATOR:
        raise ValueError(f"{path}: histogram made with estimator {hist.estimator!r}, "
                         f"this code uses {ESTIMATOR!r}")
    return hist


def acceptance_table(target: PoseHistogram, source: PoseHistogram) -> np.ndarray:
    """Per-bin keep probabilities that reshape ``source`` into ``target`` (rejection sampling).

    keep(b) = r(b) / max r with r(b) = p_target(b) / p_source(b); bins the source lacks are
    unreachable, so the selected histogram is the target's restricted to the source's support.
    """
    if (target.yaw_edges, target.pitch_edges) != (source.yaw_edges, source.pitch_edges):
        raise ValueError("target and source pose histograms use different bin edges")
    pt = target.counts / max(target.counts.sum(), 1)
    ps = source.counts / max(source.counts.sum(), 1)
    ratio = np.where(ps > 0, pt / np.where(ps > 0, ps, 1), 0.0)
    top = ratio.max()
    return ratio / top if top > 0 else ratio


def hashed_uniform(key: str) -> float:
    """A deterministic number in [0, 1) from a string (stable across runs and machines)."""
    digest = hashlib.md5(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64
