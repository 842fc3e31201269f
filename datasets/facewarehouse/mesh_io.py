"""Readers for FaceWarehouse's ``pose_<j>.obj`` meshes and ``pose_<j>.land`` landmarks."""

from __future__ import annotations

import numpy as np


def parse_obj(text: str, source="<obj>") -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float64 and triangles (F, 3) int64 from Wavefront OBJ text.

    Polygons (FaceWarehouse uses quads) are split into triangle fans (0, k, k + 1), which
    keeps their winding. ``v/vt/vn`` index forms and negative (relative) indices are accepted.
    Raises ValueError naming ``source`` for a file with no vertices, no faces, unparsable
    numbers or indices out of range.
    """
    verts, tris = [], []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("v "):
            parts = line.split()
            try:
                verts.append([float(parts[1]), float(parts[2]), float(parts[3])])
            except (IndexError, ValueError) as e:
                raise ValueError(f"{source}:{lineno}: bad vertex line {raw!r}") from e
        elif line.startswith("f "):
            parts = line.split()[1:]
            if len(parts) < 3:
                raise ValueError(f"{source}:{lineno}: face with < 3 vertices: {raw!r}")
            try:
                idx = [int(p.split("/")[0]) for p in parts]
            except ValueError as e:
                raise ValueError(f"{source}:{lineno}: bad face line {raw!r}") from e
            if 0 in idx:
                raise ValueError(f"{source}:{lineno}: vertex index 0 is invalid in {raw!r}")
            n_before = len(verts)
            idx = [i - 1 if i > 0 else n_before + i for i in idx]
            if min(idx) < 0:
                raise ValueError(f"{source}:{lineno}: relative index before the first vertex")
            for k in range(1, len(idx) - 1):
                tris.append((idx[0], idx[k], idx[k + 1]))
    if not verts:
        raise ValueError(f"{source}: OBJ has no vertices ('v x y z' lines)")
    if not tris:
        raise ValueError(f"{source}: OBJ has no faces ('f ...' lines)")
    v = np.asarray(verts, np.float64)
    f = np.asarray(tris, np.int64)
    if f.max() >= len(v):
        raise ValueError(f"{source}: face index {f.max() + 1} exceeds the {len(v)} vertices")
    if not np.isfinite(v).all():
        raise ValueError(f"{source}: OBJ has non-finite vertex coordinates")
    return v, f


def parse_land(text: str, source="<land>") -> np.ndarray:
    """Landmarks (N, 2) from a ``.land`` file, converted to the project's image frame.

    The file holds the point count on line 1, then ``x y`` per line, normalised to [0, 1]
    with y measured from the *bottom* of the image (johnmawoods/Facial-Tracking
    ``src/tensor.cpp`` reads pixel ``x = x*W, y = H - y*H``). Returned columns are x, y
    normalised with the origin at the top-left and y pointing down, i.e. (x, 1 - y).
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{source}: empty .land file")
    try:
        n = int(lines[0].split()[0])
    except ValueError as e:
        raise ValueError(f"{source}: first line must be the point count, got {lines[0]!r}") from e
    rows = lines[1:]
    if len(rows) != n:
        raise ValueError(f"{source}: header says {n} points but {len(rows)} follow")
    try:
        pts = np.array([[float(t) for t in r.split()[:2]] for r in rows], np.float64)
    except ValueError as e:
        raise ValueError(f"{source}: unparsable coordinates ({e})") from e
    if pts.shape != (n, 2):
        raise ValueError(f"{source}: every point needs two coordinates")
    return np.stack([pts[:, 0], 1.0 - pts[:, 1]], axis=1)


def format_land(points_top_left: np.ndarray) -> str:
    """Inverse of :func:`parse_land` (used to write fixtures)."""
    pts = np.asarray(points_top_left, np.float64)
    lines = [str(len(pts))] + [f"{x:.6f} {1.0 - y:.6f}" for x, y in pts]
    return "\n".join(lines) + "\n"


def format_obj(vertices: np.ndarray, faces: np.ndarray) -> str:
    """Minimal OBJ text (1-based faces) for fixtures."""
    out = [f"v {x:.5f} {y:.5f} {z:.5f}" for x, y, z in vertices]
    out += ["f " + " ".join(str(int(i) + 1) for i in face) for face in faces]
    return "\n".join(out) + "\n"
