"""A vectorised numpy z-buffer rasteriser for normal maps, and the camera model used with it.

Pixels are tested against each triangle's screen bounding box in one batch (no per-pixel
Python loop), with perspective-correct barycentric interpolation of vertex normals and a
z-buffer that keeps the nearest surface. Camera frame inside this module is OpenCV's
(x right, y down, z forward, pixel centre of column c at u = c); `render_normals` returns
normals in the project's frame (x right, y up, z toward the camera).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels, OpenCV convention (pixel centres at integers)."""

    fx: float
    fy: float
    cx: float
    cy: float


@dataclasses.dataclass(frozen=True)
class RenderResult:
    normals: np.ndarray  # float32 (H, W, 3), project frame, zeros outside the mask
    mask: np.ndarray  # bool (H, W)
    depth: np.ndarray  # float32 (H, W), camera z, 0 outside the mask
    flipped_winding: bool  # True when the faces were wound clockwise and normals were flipped


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (V, 3), unit length (zero for unused vertices)."""
    v = np.asarray(vertices, np.float64)
    tri = v[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # |fn| = 2 * area
    vn = np.zeros_like(v)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    norm = np.linalg.norm(vn, axis=1, keepdims=True)
    return np.where(norm > 0, vn / np.maximum(norm, 1e-300), 0.0)


def rasterize(
    vertices_cam: np.ndarray,
    faces: np.ndarray,
    attributes: np.ndarray,
    intrinsics: Intrinsics,
    height: int,
    width: int,
    near: float = 1e-6,
    max_candidates: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-buffered rasterisation of per-vertex ``attributes`` (V, C).

    Returns (attributes (H, W, C) perspective-correctly interpolated, mask (H, W),
    depth (H, W)). Triangles with a vertex at z <= near are skipped.
    """
    v = np.asarray(vertices_cam, np.float64)
    z = v[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = intrinsics.fx * v[:, 0] / z + intrinsics.cx
        w = intrinsics.fy * v[:, 1] / z + intrinsics.cy
    tz = z[faces]
    keep = (tz > near).all(axis=1)
    f = faces[keep]
    tu, tw, tz = u[f], w[f], z[f]
    area = ((tu[:, 1] - tu[:, 0]) * (tw[:, 2] - tw[:, 0])
            - (tu[:, 2] - tu[:, 0]) * (tw[:, 1] - tw[:, 0]))
    x0 = np.maximum(np.ceil(tu.min(axis=1)), 0).astype(np.int64)
    x1 = np.minimum(np.floor(tu.max(axis=1)), width - 1).astype(np.int64)
    y0 = np.maximum(np.ceil(tw.min(axis=1)), 0).astype(np.int64)
    y1 = np.minimum(np.floor(tw.max(axis=1)), height - 1).astype(np.int64)
    nx, ny = x1 - x0 + 1, y1 - y0 + 1
    ok = (nx > 0) & (ny > 0) & (np.abs(area) > 1e-12)
    f, tu, tw, tz, area = f[ok], tu[ok], tw[ok], tz[ok], area[ok]
    x0, y0, nx, ny = x0[ok], y0[ok], nx[ok], ny[ok]
    counts = nx * ny

    zbuf = np.full(height * width, np.inf)
    winner_face = np.full(height * width, -1, np.int64)
    winner_bary = np.zeros((height * width, 3))

    # Chunk the triangles so that the candidate (triangle, pixel) pairs fit in memory.
    cum = np.cumsum(counts)
    chunks, start = [], 0
    while start < len(f):
        stop = int(np.searchsorted(cum, cum[start] - counts[start] + max_candidates, "right"))
        stop = max(stop, start + 1)
        chunks.append(slice(start, stop))
        start = stop
    for sl in chunks:
        c = counts[sl]
        tri = np.repeat(np.arange(sl.start, sl.stop), c)
        if tri.size == 0:
            continue
        offs = np.arange(tri.size) - np.repeat(np.cumsum(c) - c, c)
        px = x0[tri] + offs % nx[tri]
        py = y0[tri] + offs // nx[tri]
        pu, pw = px.astype(np.float64), py.astype(np.float64)
        a_u, a_w = tu[tri], tw[tri]
        # Edge functions, divided by the signed area: screen-space barycentrics.
        l0 = ((a_u[:, 1] - pu) * (a_w[:, 2] - pw) - (a_u[:, 2] - pu) * (a_w[:, 1] - pw)) / area[tri]
        l1 = ((a_u[:, 2] - pu) * (a_w[:, 0] - pw) - (a_u[:, 0] - pu) * (a_w[:, 2] - pw)) / area[tri]
        l2 = 1.0 - l0 - l1
        eps = -1e-9
        inside = (l0 >= eps) & (l1 >= eps) & (l2 >= eps)
        tri, px, py = tri[inside], px[inside], py[inside]
        lam = np.stack([l0[inside], l1[inside], l2[inside]], axis=1)
        inv_z = (lam / tz[tri]).sum(axis=1)
        depth = 1.0 / inv_z
        bary = lam / tz[tri] / inv_z[:, None]  # perspective-correct
        pix = py * width + px
        order = np.lexsort((depth, pix))
        pix_s = pix[order]
        first = np.ones(len(order), bool)
        first[1:] = pix_s[1:] != pix_s[:-1]
        sel = order[first]
        pix_w = pix[sel]
        better = depth[sel] < zbuf[pix_w]
        sel, pix_w = sel[better], pix_w[better]
        zbuf[pix_w] = depth[sel]
        winner_face[pix_w] = tri[sel]
        winner_bary[pix_w] = bary[sel]

    mask = winner_face >= 0
    attrs = np.asarray(attributes, np.float64)
    out = np.zeros((height * width, attrs.shape[1]))
    fv = f[winner_face[mask]]
    out[mask] = np.einsum("nk,nkc->nc", winner_bary[mask], attrs[fv])
    depth_img = np.where(mask, zbuf, 0.0)
    return (out.reshape(height, width, -1), mask.reshape(height, width),
            depth_img.reshape(height, width))


def render_normals(
    vertices: np.ndarray,
    faces: np.ndarray,
    rotation: np.ndarray,
    translation: np.ndarray,
    intrinsics: Intrinsics,
    height: int,
    width: int,
) -> RenderResult:
    """Renders interpolated vertex normals of a mesh into a camera.

    Args:
        vertices, faces: the mesh, (V, 3) and (F, 3) triangles.
        rotation, translation: mesh-to-camera transform x_cam = R x + t, camera in OpenCV's
            frame (x right, y down, z forward).
        intrinsics: pinhole intrinsics, OpenCV pixel convention.

    Returns:
        RenderResult with normals in the project frame (x right, y up, z toward the camera).
        If most visible normals point away from the camera the mesh is wound clockwise; all
        normals are then flipped and ``flipped_winding`` is True.
    """
    r = np.asarray(rotation, np.float64)
    t = np.asarray(translation, np.float64).reshape(3)
    v_cam = np.asarray(vertices, np.float64) @ r.T + t
    n_cam = vertex_normals(vertices, faces) @ r.T
    interp, mask, depth = rasterize(v_cam, faces, n_cam, intrinsics, height, width)
    norm = np.linalg.norm(interp, axis=-1, keepdims=True)
    mask &= norm[..., 0] > 1e-8
    n = np.where(mask[..., None], interp / np.maximum(norm, 1e-12), 0.0)
    # Viewing ray through each pixel (OpenCV frame); a visible front face has n . ray < 0.
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    ray = np.stack([(cols - intrinsics.cx) / intrinsics.fx,
                    (rows - intrinsics.cy) / intrinsics.fy, np.ones((height, width))], -1)
    facing = (n * ray).sum(-1)[mask]
    flipped = bool(facing.size and np.mean(facing > 0) > 0.5)
    if flipped:
        n = -n
    project = np.stack([n[..., 0], -n[..., 1], -n[..., 2]], axis=-1)  # OpenCV -> project frame
    return RenderResult(
        normals=np.where(mask[..., None], project, 0.0).astype(np.float32),
        mask=mask,
        depth=depth.astype(np.float32),
        flipped_winding=flipped,
    )


# --- Mesh-to-camera pose from 2D landmarks (perspective-n-point, numpy only) ---------------


def rodrigues(rvec: np.ndarray) -> np.ndarray:
    """Rotation matrix from an axis-angle vector."""
    theta = float(np.linalg.norm(rvec))
    if theta < 1e-12:
        return np.eye(3)
    k = np.asarray(rvec, np.float64) / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def _axis_angle(r: np.ndarray) -> np.ndarray:
    cos = np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)
    theta = np.arccos(cos)
    if theta < 1e-9:
        return np.zeros(3)
    if np.pi - theta < 1e-6:  # Near 180 degrees: take the axis from R + I.
        m = (r + np.eye(3)) / 2
        axis = m[:, np.argmax(np.diag(m))]
        return axis / np.linalg.norm(axis) * theta
    w = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    return w / (2 * np.sin(theta)) * theta


def project_points(points: np.ndarray, r: np.ndarray, t: np.ndarray, k: Intrinsics) -> np.ndarray:
    pc = np.asarray(points, np.float64) @ r.T + t
    return np.stack([k.fx * pc[:, 0] / pc[:, 2] + k.cx, k.fy * pc[:, 1] / pc[:, 2] + k.cy], 1)


def estimate_pose(
    points3d: np.ndarray, pixels: np.ndarray, intrinsics: Intrinsics, iterations: int = 30
) -> tuple[np.ndarray, np.ndarray, float]:
    """Mesh-to-camera (R, t) from >= 6 non-coplanar 3D-2D correspondences.

    Direct linear transform on normalised coordinates, projected to the nearest rotation,
    then Levenberg-Marquardt on the pixel reprojection error. Returns (R, t, rms_pixels).
    """
    p3 = np.asarray(points3d, np.float64)
    p2 = np.asarray(pixels, np.float64)
    if len(p3) < 6 or len(p3) != len(p2):
        raise ValueError(f"need >= 6 matching 3D/2D points, got {len(p3)} and {len(p2)}")
    centre = p3.mean(axis=0)
    scale = np.sqrt(((p3 - centre) ** 2).sum(axis=1).mean())
    xn = (p3 - centre) / scale
    un = (p2[:, 0] - intrinsics.cx) / intrinsics.fx
    vn = (p2[:, 1] - intrinsics.cy) / intrinsics.fy
    n = len(p3)
    a = np.zeros((2 * n, 12))
    xh = np.hstack([xn, np.ones((n, 1))])
    a[0::2, 0:4] = xh
    a[0::2, 8:12] = -un[:, None] * xh
    a[1::2, 4:8] = xh
    a[1::2, 8:12] = -vn[:, None] * xh
    p = np.linalg.svd(a)[2][-1].reshape(3, 4)
    if p[2, 3] < 0:  # The centroid must lie in front of the camera.
        p = -p
    uu, s, vt = np.linalg.svd(p[:, :3])
    r = uu @ vt
    if np.linalg.det(r) < 0:
        uu[:, -1] *= -1
        r = uu @ vt
    sigma = s.mean()
    t = scale * p[:, 3] / sigma - r @ centre

    # Levenberg-Marquardt on (axis-angle, t) with a numeric Jacobian (6 parameters).
    params = np.concatenate([_axis_angle(r), t])

    def residual(q):
        return (project_points(p3, rodrigues(q[:3]), q[3:], intrinsics) - p2).ravel()

    lam = 1e-3
    res = residual(params)
    for _ in range(iterations):
        jac = np.empty((res.size, 6))
        for i in range(6):
            step = np.zeros(6)
            step[i] = 1e-6 * max(1.0, abs(params[i]))
            jac[:, i] = (residual(params + step) - res) / step[i]
        jtj, jtr = jac.T @ jac, jac.T @ res
        delta = np.linalg.solve(jtj + lam * np.diag(np.diag(jtj) + 1e-12), -jtr)
        cand = params + delta
        res_c = residual(cand)
        if (res_c**2).sum() < (res**2).sum():
            params, res, lam = cand, res_c, lam * 0.3
            if np.abs(delta).max() < 1e-10:
                break
        else:
            lam *= 10
    rms = float(np.sqrt((res**2).reshape(-1, 2).sum(axis=1).mean()))
    return rodrigues(params[:3]), params[3:], rms
