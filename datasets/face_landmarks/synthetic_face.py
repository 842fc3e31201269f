"""Analytic stand-ins for faces (ellipsoid head, 68-point template) used by fixtures and tests.

Head frame: x to the subject's left = image right when facing the camera, y up, z out of the
face (toward a camera in front of it). Nothing here claims to look like a real face; it only
gives every part of the pipeline known geometry.
"""

from __future__ import annotations

import numpy as np

HEAD_RADII = (0.75, 1.0, 0.8)  # ellipsoid semi-axes x, y, z


def ellipsoid_mesh(radii=HEAD_RADII, n_lat: int = 24, n_lon: int = 32):
    """Closed ellipsoid as (vertices (V, 3), quads (Q, 4)), quads wound counter-clockwise
    seen from outside (so their normals point outward), poles as degenerate quads."""
    a, b, c = radii
    theta = np.linspace(0.0, np.pi, n_lat + 1)  # from +y (top) to -y
    phi = np.linspace(0.0, 2 * np.pi, n_lon + 1)[:-1]
    t, p = np.meshgrid(theta, phi, indexing="ij")
    verts = np.stack(
        [a * np.sin(t) * np.sin(p), b * np.cos(t), c * np.sin(t) * np.cos(p)], -1
    ).reshape(-1, 3)
    idx = np.arange((n_lat + 1) * n_lon).reshape(n_lat + 1, n_lon)
    nxt = np.roll(idx, -1, axis=1)
    quads = np.stack([idx[:-1], idx[1:], nxt[1:], nxt[:-1]], -1).reshape(-1, 4)
    return verts, quads


def quads_to_triangles(quads: np.ndarray) -> np.ndarray:
    return np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])


def ellipsoid_normal(points: np.ndarray, radii=HEAD_RADII) -> np.ndarray:
    n = np.asarray(points) / np.square(radii)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def template_68_2d() -> np.ndarray:
    """(68, 2) frontal face-plane coordinates (x right, y up) in the iBUG 68 order."""
    pts = []
    phi = np.linspace(-0.95 * np.pi / 2, 0.95 * np.pi / 2, 17)
    pts += list(zip(0.62 * np.sin(phi), 0.15 - 0.95 * np.cos(phi)))  # jaw 0-16
    bx = np.linspace(-0.55, -0.15, 5)
    pts += list(zip(bx, 0.45 + 0.08 * np.sin(np.linspace(0.3, 2.8, 5))))  # brow 17-21
    pts += list(zip(-bx[::-1], 0.45 + 0.08 * np.sin(np.linspace(0.3, 2.8, 5))))  # 22-26
    pts += [(0.0, y) for y in (0.32, 0.2, 0.08, -0.04)]  # nose bridge 27-30
    pts += [(x, -0.16) for x in np.linspace(-0.15, 0.15, 5)]  # lower nose 31-35
    eye = [(-0.12, 0.0), (-0.05, 0.04), (0.05, 0.04), (0.12, 0.0), (0.05, -0.04), (-0.05, -0.04)]
    pts += [(x - 0.3, y + 0.25) for x, y in eye]  # right eye 36-41 (image left)
    pts += [(x + 0.3, y + 0.25) for x, y in eye]  # left eye 42-47
    ang = np.linspace(np.pi, -np.pi, 13)[:-1]  # 48 corner, upper lip, 54 corner, lower lip
    pts += list(zip(0.26 * np.cos(ang), -0.42 + 0.1 * np.sin(ang)))
    ang = np.linspace(np.pi, -np.pi, 9)[:-1]
    pts += list(zip(0.18 * np.cos(ang), -0.42 + 0.03 * np.sin(ang)))  # inner lip 60-67
    out = np.array(pts, np.float64)
    assert out.shape == (68, 2)
    return out


def lift_to_ellipsoid(xy: np.ndarray, radii=HEAD_RADII) -> np.ndarray:
    """Points (N, 2) of the face plane -> front surface of the ellipsoid (N, 3)."""
    a, b, c = radii
    q = 1.0 - (xy[:, 0] / a) ** 2 - (xy[:, 1] / b) ** 2
    return np.stack([xy[:, 0], xy[:, 1], c * np.sqrt(np.clip(q, 0.0, None))], -1)


def rotation_yaw_pitch(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Head rotation: yaw about +y (positive turns the face toward +x), then pitch about -x
    (positive tilts the face up, toward +y). Acts on head-frame points."""
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    return rx @ ry


# Head frame (y up, z toward the camera) -> OpenCV camera frame (y down, z forward).
HEAD_TO_OPENCV = np.diag([1.0, -1.0, -1.0])
