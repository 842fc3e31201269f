"""Procedural sim2real indoor scenes: a numpy scene sampler and an analytic ray caster.

Every example is a pure function of ``(seed, split, index)``. A room (floor, four walls,
ceiling) is furnished with objects built from analytic primitives (convex polyhedra given by
their face planes, spheres, capped cylinders). Primary rays are intersected with every
primitive in closed form, vectorised over the pixels of each primitive's screen-space bounding
rectangle. Fine relief (wall panels and ribs, floor tiles, cabinet doors, quilted sofas, rugs)
is analytic bump mapping: it changes the ground-truth normals and the shading, not the depth.

The source domain ("synthetic") is clean: plain colours, one directional light and ambient
light, no shadows, no sensor. The target domain ("real-like") has procedural textures,
daylight plus ceiling point lights with cast shadows, another field of view, a colour cast, an
exposure error, vignetting, blur, sensor noise and depth-sensor holes, and its camera looks
down more and rolls (label-distribution shift). Shading stays Lambertian in both domains, so
it remains a valid cue for the exact normals.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

# --- Public constants --------------------------------------------------------------------
CLASS_NAMES = (
    "void",
    "floor",
    "wall",
    "ceiling",
    "table",
    "chair",
    "cabinet",
    "crate",
    "pillar",
    "ball",
    "lamp",
    "ramp",
    "pyramid",
    "sofa",
    "rug",
)
NUM_CLASSES = len(CLASS_NAMES)  # Including void (0).
NUM_ROOM_CORNER_KEYPOINTS = 8
NUM_OBJECT_KEYPOINTS = 8
NUM_KEYPOINTS = NUM_ROOM_CORNER_KEYPOINTS + NUM_OBJECT_KEYPOINTS
# Room corners are ordered by bearing from the camera's forward direction (floor, then the
# ceiling corners above them); objects by distance from the camera (nearest first).
KEYPOINT_NAMES = tuple(
    [f"floor_corner_{i}" for i in range(4)]
    + [f"ceiling_corner_{i}" for i in range(4)]
    + [f"object_{i}" for i in range(NUM_OBJECT_KEYPOINTS)]
)

SOURCE = "source"
TARGET = "target"
# Split name -> (domain, code mixed into the random seed).
SPLITS = {
    "source_train": (SOURCE, 0),
    "source_val": (SOURCE, 1),
    "target_train": (TARGET, 2),
    "target_val": (TARGET, 3),
    "target_test": (TARGET, 4),
}

FLOOR, WALL, CEILING = 1, 2, 3
TABLE, CHAIR, CABINET, CRATE, PILLAR, BALL, LAMP, RAMP, PYRAMID, SOFA, RUG = range(4, 15)
OBJECT_CLASSES = (TABLE, CHAIR, CABINET, CRATE, PILLAR, BALL, LAMP, RAMP, PYRAMID, SOFA, RUG)

# Relative frequency of each object class (furniture-mix shift: the target is more like an
# office/living room, the source has every shape equally often).
OBJECT_MIX = {
    SOURCE: dict.fromkeys(OBJECT_CLASSES, 1.0),
    TARGET: {
        TABLE: 2.0,
        CHAIR: 3.0,
        CABINET: 2.0,
        CRATE: 1.0,
        PILLAR: 0.5,
        BALL: 0.5,
        LAMP: 1.0,
        RAMP: 0.5,
        PYRAMID: 0.5,
        SOFA: 1.5,
        RUG: 1.0,
    },
}


@dataclasses.dataclass(frozen=True)
class PoseDistribution:
    """Camera pose prior. Pitch > 0 looks down; roll is about the viewing axis."""

    pitch_deg: tuple[float, float]  # uniform range
    roll_std_deg: float  # normal, clipped at roll_max_deg
    roll_max_deg: float
    height_m: tuple[float, float]  # uniform range of camera height above the floor
    fov_deg: tuple[float, float]  # uniform range of the horizontal field of view


# The label-distribution shift: a level synthetic camera versus a hand-held one that looks
# down and rolls. Field of view (intrinsics) is part of the appearance shift, so `matched`
# configs keep the source's own field of view.
SOURCE_POSE = PoseDistribution((0.0, 24.0), 2.5, 6.0, (1.3, 1.7), (60.0, 60.0))
TARGET_POSE = PoseDistribution((10.0, 34.0), 6.0, 15.0, (1.1, 1.7), (48.0, 58.0))


@dataclasses.dataclass(frozen=True)
class GenerationSpec:
    """What an example depends on besides its split and index."""

    image_size: int = 128
    seed: int = 0
    match_pose: bool = False  # source camera pitch/roll/height drawn from the target's prior
    noisy_anchor: bool = True  # erode/jitter target_train segmentation boundaries, keypoints


# --- Geometry helpers -----------------------------------------------------------------
def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for a (..., 3) and b (3,) or (3, k), elementwise: BLAS threads would
    oversubscribe the CPUs when examples are rendered in parallel processes."""
    a = np.asarray(a)
    if b.ndim == 1:
        return a[..., 0] * b[0] + a[..., 1] * b[1] + a[..., 2] * b[2]
    return a[..., 0, None] * b[0] + a[..., 1, None] * b[1] + a[..., 2, None] * b[2]


@dataclasses.dataclass
class Camera:
    """Pinhole camera. ``rotation`` maps camera-frame vectors to the world (columns are the
    camera's x right, y up, z backward axes); the world has y up and the floor at y = 0."""

    position: np.ndarray
    rotation: np.ndarray
    fov_deg: float
    size: int
    yaw: float = 0.0
    pitch: float = 0.0  # radians, > 0 looks down
    roll: float = 0.0

    @property
    def focal(self) -> float:
        return 0.5 * self.size / np.tan(0.5 * np.radians(self.fov_deg))

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit ray directions through the pixel centres: (camera frame, world), (S, S, 3)."""
        s, f = self.size, self.focal
        c = np.arange(s) + 0.5 - 0.5 * s
        x, y = np.meshgrid(c / f, -c / f)  # rows go down the image, y goes up
        d_cam = _unit(np.stack([x, y, -np.ones_like(x)], axis=-1))
        return d_cam, _dot(d_cam, self.rotation.T)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> normalised (x, y) (N, 2) and depth along the view axis."""
        p = (points - self.position) @ self.rotation
        depth = -p[:, 2]
        safe = np.where(np.abs(depth) < 1e-9, 1e-9, depth)
        x = (self.focal * p[:, 0] / safe + 0.5 * self.size) / self.size
        y = (-self.focal * p[:, 1] / safe + 0.5 * self.size) / self.size
        return np.stack([x, y], axis=-1), depth


def make_camera(
    position: Any, yaw: float, pitch: float, roll: float, fov_deg: float, size: int
) -> Camera:
    """Camera at ``position`` turned by ``yaw`` about world y, then pitched down by ``pitch``
    (radians) about its x axis, then rolled by ``roll`` about its viewing axis."""
    rotation = rot_y(yaw) @ rot_x(-pitch) @ rot_z(roll)
    return Camera(np.asarray(position, float), rotation, fov_deg, size, yaw, pitch, roll)


# --- Primitives -------------------------------------------------------------------------
@dataclasses.dataclass
class Part:
    """One analytic primitive of an object. ``kind`` is convex, sphere or cylinder."""

    kind: str
    label: int
    material: int
    normals: np.ndarray | None = None  # convex: (M, 3) outward face normals
    offsets: np.ndarray | None = None  # convex: inside is normals @ x <= offsets
    center: np.ndarray | None = None  # sphere / cylinder centre
    radius: float = 0.0
    axis: np.ndarray | None = None  # cylinder axis (unit)
    half_length: float = 0.0
    vertices: np.ndarray | None = None  # bounding points for screen rectangles
    bump: dict | None = None  # relief (height field) on some faces
    bump_faces: str = "up"  # which faces carry it: up (tops), sides (vertical) or all
    instance: int = -1  # index of the object the part belongs to

    @property
    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        c = self.vertices.mean(0)
        return c, float(np.linalg.norm(self.vertices - c, axis=1).max())


def convex_part(
    local_normals,
    local_points,
    local_vertices,
    rotation,
    translation,
    label,
    material,
    bump=None,
    bump_faces="up",
) -> Part:
    """Convex polyhedron from faces (normal, point on face) in a local frame."""
    n_local = _unit(np.asarray(local_normals, float))
    d_local = np.einsum("ij,ij->i", n_local, np.asarray(local_points, float))
    n = n_local @ rotation.T
    t = np.asarray(translation, float)
    verts = np.asarray(local_vertices, float) @ rotation.T + t
    return Part(
        "convex",
        label,
        material,
        normals=n,
        offsets=d_local + n @ t,
        vertices=verts,
        bump=bump,
        bump_faces=bump_faces,
    )


_BOX_SIGNS = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], float)


def box_part(center, half, rotation, label, material, bump=None, bump_faces="up") -> Part:
    half = np.asarray(half, float)
    eye = np.eye(3)
    normals = np.concatenate([eye, -eye])
    points = np.concatenate([eye * half, -eye * half])
    return convex_part(
        normals, points, _BOX_SIGNS * half, rotation, center, label, material, bump, bump_faces
    )


def sphere_part(center, radius, label, material) -> Part:
    c = np.asarray(center, float)
    return Part(
        "sphere", label, material, center=c, radius=float(radius), vertices=c + _BOX_SIGNS * radius
    )


def cylinder_part(center, axis, radius, half_length, label, material) -> Part:
    c, a = np.asarray(center, float), _unit(np.asarray(axis, float))
    u = _unit(np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 0.0, 1.0]))
    v = np.cross(a, u)
    verts = c + _BOX_SIGNS @ np.stack([u * radius, v * radius, a * half_length])
    return Part(
        "cylinder",
        label,
        material,
        center=c,
        radius=float(radius),
        axis=a,
        half_length=float(half_length),
        vertices=verts,
    )


def intersect(part: Part, origin: np.ndarray, dirs: np.ndarray, eps: float = 1e-6):
    """Ray-primitive intersection. origin (3,) or (N, 3), dirs (N, 3) unit.

    Returns (t, geometric normal): t = inf where missed or the entry is behind eps."""
    if part.kind == "convex":
        return _intersect_convex(part.normals, part.offsets, origin, dirs, eps)
    if part.kind == "sphere":
        return _intersect_sphere(part.center, part.radius, origin, dirs, eps)
    return _intersect_cylinder(part, origin, dirs, eps)


def _intersect_convex(normals, offsets, origin, dirs, eps):
    # Slab method over face planes (Kay-Kajiya): enter = last plane crossed inward.
    denom = _dot(dirs, normals.T)
    num = offsets - _dot(origin, normals.T)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = num / denom
    entering = denom < -1e-12
    t_in = np.where(entering, t, -np.inf)
    k = t_in.argmax(1)
    t_near = np.take_along_axis(t_in, k[:, None], 1)[:, 0]
    t_far = np.where(denom > 1e-12, t, np.inf).min(1)
    outside_parallel = ((np.abs(denom) <= 1e-12) & (num < 0)).any(1)
    hit = (t_near <= t_far) & (t_near > eps) & ~outside_parallel
    return np.where(hit, t_near, np.inf), normals[k]


def _intersect_sphere(center, radius, origin, dirs, eps):
    w = origin - center
    b = _dot(dirs, w) if w.ndim == 1 else np.einsum("ij,ij->i", dirs, w)
    c = (w @ w if w.ndim == 1 else np.einsum("ij,ij->i", w, w)) - radius**2
    disc = b * b - c
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    t = np.where((disc > 0) & (t > eps), t, np.inf)
    p = origin + dirs * np.where(np.isfinite(t), t, 0.0)[:, None]
    return t, (p - center) / radius


def _intersect_cylinder(part, origin, dirs, eps):
    a, r, h = part.axis, part.radius, part.half_length
    w = np.broadcast_to(origin - part.center, dirs.shape)
    da, wa = _dot(dirs, a), _dot(w, a)
    dp, wp = dirs - da[:, None] * a, w - wa[:, None] * a
    qa = np.einsum("ij,ij->i", dp, dp)
    qb = 2.0 * np.einsum("ij,ij->i", dp, wp)
    qc = np.einsum("ij,ij->i", wp, wp) - r * r
    disc = qb * qb - 4 * qa * qc
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-qb - np.sqrt(np.maximum(disc, 0.0))) / (2 * qa)
        s_side = wa + t_side * da
        side_ok = (disc > 0) & (qa > 1e-12) & (t_side > eps) & (np.abs(s_side) <= h)
        t_side = np.where(side_ok, t_side, np.inf)
        caps = []
        for sign in (1.0, -1.0):
            t_cap = (sign * h - wa) / da
            q = wp + t_cap[:, None] * dp
            ok = (np.abs(da) > 1e-12) & (t_cap > eps) & (np.einsum("ij,ij->i", q, q) <= r * r)
            caps.append(np.where(ok, t_cap, np.inf))
    t = np.minimum(t_side, np.minimum(caps[0], caps[1]))
    radial = wp + np.where(np.isfinite(t_side), t_side, 0.0)[:, None] * dp
    normal = radial / r
    normal = np.where((t == caps[0])[:, None], a, normal)
    normal = np.where(((t == caps[1]) & (t != caps[0]))[:, None], -a, normal)
    return t, normal


# --- Relief (bump mapping) --------------------------------------------------------------
def _relief_gradient(bump: dict, u: np.ndarray, v: np.ndarray):
    """Gradient (dh/du, dh/dv) of an analytic height field."""
    kind = bump["kind"]
    if kind == "ribbed":  # h = A sin(k u + phase); slope amplitude A k
        g = bump["slope"] * np.cos(bump["k"] * u + bump["phase"])
        return g, np.zeros_like(v)
    if kind == "quilted":  # h = A sin(ku u + pu) sin(kv v + pv)
        su, cu = np.sin(bump["ku"] * u + bump["pu"]), np.cos(bump["ku"] * u + bump["pu"])
        sv, cv = np.sin(bump["kv"] * v + bump["pv"]), np.cos(bump["kv"] * v + bump["pv"])
        return bump["slope"] * cu * sv, bump["slope"] * su * cv
    if kind == "panel":  # raised panels with bevelled frames, within a band of heights
        w, b, s = bump["width"], bump["bevel"], bump["slope"]
        v0, v1 = bump["v_range"]
        band = (v >= v0) & (v <= v1)
        m = np.mod(u - bump["phase"], w)
        gu = np.where(m < b, s, np.where(m > w - b, -s, 0.0))
        gv = np.where(v < v0 + b, s, np.where(v > v1 - b, -s, 0.0))
        inner = (m >= b) & (m <= w - b)  # vertical bevels only where not a horizontal one
        gv = np.where(inner, gv, 0.0)
        return np.where(band, gu, 0.0), np.where(band, gv, 0.0)
    if kind == "tiles":  # floor tiles / planks with bevelled joints
        w, b, s = bump["size"], bump["bevel"], bump["slope"]
        grads = []
        for x, size in ((u, w[0]), (v, w[1])):
            m = np.mod(x, size)
            grads.append(np.where(m < b, s, np.where(m > size - b, -s, 0.0)))
        return grads[0], grads[1]
    raise ValueError(f"Unknown relief {kind!r}.")


def apply_relief(bump: dict, n0: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Bump-mapped unit normals for surface points p (N, 3) with geometric normals n0.

    Tangents: u horizontal along the face, v = n0 x u (world up on vertical faces); on
    horizontal faces u is world x."""
    up = np.array([0.0, 1.0, 0.0])
    tu = np.cross(up, n0)
    flat = np.linalg.norm(tu, axis=1) < 0.3
    tu[flat] = [1.0, 0.0, 0.0]
    tu = _unit(tu)
    tv = np.cross(n0, tu)
    gu, gv = _relief_gradient(bump, np.einsum("ij,ij->i", p, tu), np.einsum("ij,ij->i", p, tv))
    return _unit(n0 - gu[:, None] * tu - gv[:, None] * tv)


def _sample_relief(rng, kind: str, top: float | None = None) -> dict | None:
    if kind == "flat":
        return None
    if kind == "ribbed":
        period = rng.uniform(0.15, 0.5)
        return {
            "kind": "ribbed",
            "k": 2 * np.pi / period,
            "phase": rng.uniform(0, 2 * np.pi),
            "slope": np.tan(np.radians(rng.uniform(20, 40))),
        }
    if kind == "quilted":
        return {
            "kind": "quilted",
            "ku": 2 * np.pi / rng.uniform(0.2, 0.5),
            "kv": 2 * np.pi / rng.uniform(0.2, 0.5),
            "pu": rng.uniform(0, 2 * np.pi),
            "pv": rng.uniform(0, 2 * np.pi),
            "slope": np.tan(np.radians(rng.uniform(20, 40))),
        }
    if kind == "panel":  # wall wainscoting / full-height panels, or cabinet doors (top given)
        if top is None or top > 2.2:
            top = rng.choice([rng.uniform(0.8, 1.2), (top or 3.0) - rng.uniform(0.2, 0.5)])
            width, bevel, bottom = rng.uniform(0.4, 1.0), rng.uniform(0.06, 0.12), 0.15
        else:
            width, bevel, bottom = rng.uniform(0.25, 0.45), rng.uniform(0.03, 0.06), 0.05
            top -= 0.05
        return {
            "kind": "panel",
            "width": width,
            "bevel": bevel,
            "slope": np.tan(np.radians(rng.uniform(30, 50))),
            "phase": rng.uniform(0, 1),
            "v_range": (bottom, float(top)),
        }
    if kind == "tiles":
        size = rng.uniform(0.3, 0.6)
        planks = rng.random() < 0.5
        return {
            "kind": "tiles",
            "size": (size * (4.0 if planks else 1.0), size * (0.4 if planks else 1.0)),
            "bevel": rng.uniform(0.02, 0.04),
            "slope": np.tan(np.radians(rng.uniform(20, 35))),
        }
    raise ValueError(kind)


# --- Architecture ------------------------------------------------------------------------
# Inward normal and the bound index into the room array of each wall (-x, +x, -z, +z).
_WALLS = (
    (np.array([1.0, 0.0, 0.0]), 0),
    (np.array([-1.0, 0.0, 0.0]), 1),
    (np.array([0.0, 0.0, 1.0]), 2),
    (np.array([0.0, 0.0, -1.0]), 3),
)
# Per-room probability of each architectural element (both domains).
ARCHITECTURE_P = {"pilasters": 0.6, "corner": 0.5, "platform": 0.45, "beams": 0.35, "slope": 0.3}


def _against_wall(room, wall: int, along: float, width: float, depth: float, y0: float,
                  y1: float, label: int, material: int) -> Part:
    """Axis-aligned box on the inside of ``wall``, ``depth`` into the room (it also reaches
    5 cm into the wall, so no gap shows)."""
    inward, bound = _WALLS[wall]
    axis = 0 if wall < 2 else 2
    centre = np.zeros(3)
    centre[axis] = room[bound] + inward[axis] * (depth - 0.05) / 2
    centre[2 - axis] = along
    centre[1] = (y0 + y1) / 2
    half = np.zeros(3)
    half[axis], half[2 - axis], half[1] = (depth + 0.05) / 2, width / 2, (y1 - y0) / 2
    return box_part(centre, half, np.eye(3), label, material)


def _inside(part: Part, point: np.ndarray, margin: float = 0.0) -> bool:
    """Whether ``point`` lies inside a convex part grown by ``margin``."""
    return bool((part.normals @ point <= part.offsets + margin).all())


def _architecture_parts(rng, room: np.ndarray, camera) -> list[Part]:
    """Pilasters, cut corners, raised platforms with steps, ceiling beams and attic slopes.

    They carry the room's labels and materials (wall, floor, ceiling): real rooms' layout
    classes are not one plane each, and without them "segmentation -> class-mean normal"
    would recover most of the floor, wall and ceiling normals from the anchor alone.
    """
    x0, x1, z0, z1, h = room
    parts: list[Part] = []
    span = lambda wall: (z0, z1) if wall < 2 else (x0, x1)  # noqa: E731
    if rng.random() < ARCHITECTURE_P["pilasters"]:  # pilasters and chimney breasts
        for _ in range(int(rng.integers(1, 4))):
            wall = int(rng.integers(4))
            lo, hi = span(wall)
            width = rng.uniform(0.25, 1.2)
            along = rng.uniform(lo + width / 2, hi - width / 2)
            parts.append(_against_wall(room, wall, along, width, rng.uniform(0.12, 0.45), 0.0,
                                       h + 0.05, WALL, 1))
    if rng.random() < ARCHITECTURE_P["corner"]:  # a corner cut by a slanted wall
        cx, cz = room[int(rng.integers(2))], room[2 + int(rng.integers(2))]
        a = rng.uniform(0.35, 0.9)
        yaw = np.pi / 4 + np.radians(rng.uniform(-15, 15))
        parts.append(box_part([cx, h / 2, cz], [a, h / 2 + 0.05, a], rot_y(yaw), WALL, 1))
    if rng.random() < ARCHITECTURE_P["platform"]:  # a raised floor area with a step
        wall = int(rng.integers(4))
        lo, hi = span(wall)
        width = rng.uniform(1.2, min(3.0, hi - lo))
        along = rng.uniform(lo + width / 2, hi - width / 2)
        depth, rise = rng.uniform(0.7, 1.5), rng.uniform(0.15, 0.4)
        parts.append(_against_wall(room, wall, along, width, depth, -0.05, rise, FLOOR, 0))
        if rng.random() < 0.6:
            parts.append(_against_wall(room, wall, along, width * rng.uniform(0.4, 1.0),
                                       depth + rng.uniform(0.25, 0.4), -0.05, rise / 2,
                                       FLOOR, 0))
    if rng.random() < ARCHITECTURE_P["beams"]:  # exposed ceiling beams
        along_x = rng.random() < 0.5
        n = int(rng.integers(2, 5))
        drop, thick = rng.uniform(0.15, 0.35), rng.uniform(0.12, 0.3)
        lo, hi = (z0, z1) if along_x else (x0, x1)
        for k in range(n):
            c = lo + (k + 1) * (hi - lo) / (n + 1)
            centre = [(x0 + x1) / 2, h - drop / 2, c] if along_x else [c, h - drop / 2,
                                                                       (z0 + z1) / 2]
            half = ([(x1 - x0) / 2 + 0.05, drop / 2 + 0.02, thick / 2] if along_x else
                    [thick / 2, drop / 2 + 0.02, (z1 - z0) / 2 + 0.05])
            parts.append(box_part(centre, half, np.eye(3), CEILING, 2))
    if rng.random() < ARCHITECTURE_P["slope"]:  # an attic slope along one wall
        inward, bound = _WALLS[int(rng.integers(4))]
        drop, run = rng.uniform(0.4, 0.9), rng.uniform(0.8, 1.6)
        wall_pt = np.array([room[bound], 0.0, room[bound]]) * np.abs(inward)
        along = np.cross(inward, [0.0, 1.0, 0.0])
        ext = max(x1 - x0, z1 - z0)
        up = np.array([0.0, 1.0, 0.0])
        normals = [drop / run * inward - up, -inward, up, along, -along]
        points = [wall_pt + (h - drop) * up, wall_pt - 0.05 * inward, (h + 0.05) * up,
                  wall_pt + ext * along, wall_pt - ext * along]
        verts = [wall_pt + u * inward + y * up + s * ext * along
                 for u, y in ((-0.05, h - drop - 0.05), (-0.05, h + 0.05), (run, h + 0.05))
                 for s in (-1, 1)]
        parts.append(convex_part(normals, points, verts, np.eye(3), np.zeros(3), CEILING, 2))
    # Never enclose the camera (it must see the room from inside).
    return [p for p in parts if not _inside(p, camera.position, margin=0.3)]


# --- Scene sampling --------------------------------------------------------------------
# Base albedo per class (linear RGB); the target re-draws colours around shifted hues.
_PALETTE = {
    FLOOR: (0.55, 0.42, 0.30),
    WALL: (0.72, 0.72, 0.68),
    CEILING: (0.85, 0.85, 0.85),
    TABLE: (0.50, 0.32, 0.20),
    CHAIR: (0.28, 0.34, 0.55),
    CABINET: (0.62, 0.56, 0.45),
    CRATE: (0.66, 0.50, 0.28),
    PILLAR: (0.70, 0.70, 0.76),
    BALL: (0.80, 0.25, 0.20),
    LAMP: (0.85, 0.80, 0.50),
    RAMP: (0.40, 0.56, 0.40),
    PYRAMID: (0.55, 0.40, 0.62),
    SOFA: (0.33, 0.50, 0.55),
    RUG: (0.62, 0.30, 0.35),
}


@dataclasses.dataclass
class Material:
    albedo: np.ndarray
    texture: dict | None = None


@dataclasses.dataclass
class Scene:
    room: np.ndarray  # (x0, x1, z0, z1, height)
    parts: list[Part]
    materials: list[Material]  # 0 floor, 1 walls, 2 ceiling, then one per object
    wall_relief: list[dict | None]  # per wall face: -x, +x, -z, +z
    floor_relief: dict | None
    keypoints: list[np.ndarray]  # one surface point per object
    lights: list[dict]
    ambient: np.ndarray
    camera: Camera


# Source (synthetic) materials are textured too, like SUNCG-PBRS's, but more often plain,
# with weaker, smoother patterns and no checkerboards: (kinds, probabilities, contrast).
TEXTURES = {
    SOURCE: (("plain", "noise", "stripes"), (0.5, 0.35, 0.15), (0.05, 0.2)),
    TARGET: (("plain", "noise", "stripes", "checker"), (0.15, 0.45, 0.2, 0.2), (0.15, 0.4)),
}
SOURCE_LAMP_P = 0.5  # source rooms with one ceiling lamp besides the sun
SOURCE_SHADOWS = True  # cast shadows in the source (physically based renders have them)


def _sample_material(rng, label: int, domain: str) -> Material:
    base = np.array(_PALETTE[label])
    if domain == SOURCE:  # colours around the class colour, each object its own
        mix = rng.uniform(0.0, 0.5)
        albedo = (1 - mix) * base + mix * rng.uniform(0.1, 0.9, 3) + rng.uniform(-0.06, 0.06, 3)
    else:  # real-like: broader colours, partly unrelated to the class
        mix = rng.uniform(0.0, 0.6)
        albedo = (1 - mix) * base + mix * rng.uniform(0.1, 0.9, 3) + rng.uniform(-0.1, 0.1, 3)
    kinds, probs, contrast = TEXTURES[domain]
    kind = rng.choice(kinds, p=probs)
    texture = None
    if kind != "plain":
        texture = {
            "kind": str(kind),
            "contrast": rng.uniform(*contrast),
            "scale": rng.uniform(0.1, 0.5),
        }
        if kind == "noise":
            texture["dirs"] = _unit(rng.normal(size=(4, 3)))
            texture["freqs"] = 2 * np.pi / (texture["scale"] * rng.uniform(0.5, 2.0, 4))
            texture["phases"] = rng.uniform(0, 2 * np.pi, 4)
        elif kind == "stripes":
            texture["dir"] = _unit(rng.normal(size=3))
    return Material(np.clip(albedo, 0.05, 0.95), texture)


def sample_camera(rng, room: np.ndarray, pose: PoseDistribution, size: int) -> Camera:
    x0, x1, z0, z1, _ = room
    pos = np.array(
        [
            rng.uniform(x0 + 0.5, x1 - 0.5),
            rng.uniform(*pose.height_m),
            rng.uniform(z0 + 0.5, z1 - 0.5),
        ]
    )
    centre = np.array([(x0 + x1) / 2, (z0 + z1) / 2])
    to_centre = centre - pos[[0, 2]]
    # The camera looks along -z for yaw 0; yaw turns it towards +x for negative angles.
    yaw = np.arctan2(-to_centre[0], -to_centre[1]) if np.linalg.norm(to_centre) > 0.3 else 0.0
    yaw += rng.uniform(-np.radians(55), np.radians(55))
    pitch = np.radians(rng.uniform(*pose.pitch_deg))
    roll = np.radians(
        np.clip(rng.normal(0.0, pose.roll_std_deg), -pose.roll_max_deg, pose.roll_max_deg)
    )
    return make_camera(pos, yaw, pitch, roll, rng.uniform(*pose.fov_deg), size)


def _object_parts(rng, label: int, xz: np.ndarray, yaw: float, material: int, room_h: float):
    """Parts and one keypoint (a surface point) of an object standing at ``xz``."""
    ry = rot_y(yaw)

    def at(p) -> np.ndarray:  # object frame -> world
        return np.array([xz[0], 0.0, xz[1]]) + ry @ np.asarray(p, float)

    parts: list[Part] = []
    if label == TABLE:
        h = rng.uniform(0.68, 0.8)
        if rng.random() < 0.3:  # round table on one leg
            r = rng.uniform(0.35, 0.6)
            parts.append(cylinder_part(at([0, h - 0.025, 0]), [0, 1, 0], r, 0.025, label, material))
            parts.append(
                cylinder_part(
                    at([0, (h - 0.05) / 2, 0]), [0, 1, 0], 0.05, (h - 0.05) / 2, label, material
                )
            )
        else:
            a, b = rng.uniform(0.4, 0.8), rng.uniform(0.3, 0.5)
            parts.append(box_part(at([0, h - 0.025, 0]), [a, 0.025, b], ry, label, material))
            for sx in (-1, 1):
                for sz in (-1, 1):
                    parts.append(
                        box_part(
                            at([sx * (a - 0.06), (h - 0.05) / 2, sz * (b - 0.06)]),
                            [0.03, (h - 0.05) / 2, 0.03],
                            ry,
                            label,
                            material,
                        )
                    )
        return parts, at([0, h, 0]), 0.8
    if label == CHAIR:
        s, h = rng.uniform(0.2, 0.26), rng.uniform(0.42, 0.5)
        cushion = _sample_relief(rng, "quilted") if rng.random() < 0.5 else None
        parts.append(box_part(at([0, h, 0]), [s, 0.03, s], ry, label, material, cushion))
        for sx in (-1, 1):
            for sz in (-1, 1):
                parts.append(
                    box_part(
                        at([sx * (s - 0.03), (h - 0.03) / 2, sz * (s - 0.03)]),
                        [0.02, (h - 0.03) / 2, 0.02],
                        ry,
                        label,
                        material,
                    )
                )
        tilt, bh = np.radians(rng.uniform(0, 25)), rng.uniform(0.22, 0.32)
        rb = ry @ rot_x(tilt)  # lean the backrest backwards (+z local)
        centre = at([0, h + 0.03, s]) + rb @ np.array([0, bh, 0])
        parts.append(box_part(centre, [s, bh, 0.025], rb, label, material))
        return parts, centre + rb @ np.array([0, bh, 0]), s * 1.5
    if label == CABINET:
        a, b, h = rng.uniform(0.25, 0.6), rng.uniform(0.2, 0.3), rng.uniform(0.5, 1.0)
        doors = _sample_relief(rng, "panel", 2 * h) if rng.random() < 0.6 else None
        parts.append(box_part(at([0, h, 0]), [a, h, b], ry, label, material, doors, "sides"))
        return parts, at([0, 2 * h, 0]), float(np.hypot(a, b))
    if label == CRATE:
        half = rng.uniform(0.15, 0.32, 3)
        rot = ry @ rot_x(np.radians(rng.uniform(10, 45))) @ rot_z(np.radians(rng.uniform(-30, 30)))
        verts = _BOX_SIGNS * half @ rot.T
        centre = np.array([xz[0], -verts[:, 1].min(), xz[1]])
        parts.append(box_part(centre, half, rot, label, material))
        return parts, centre + verts[verts[:, 1].argmax()], float(np.linalg.norm(half))
    if label == PILLAR:
        r = rng.uniform(0.1, 0.28)
        if rng.random() < 0.3:  # a drum lying on its side
            hl = rng.uniform(0.25, 0.5)
            parts.append(cylinder_part(at([0, r, 0]), ry @ [1.0, 0, 0], r, hl, label, material))
            return parts, at([0, 2 * r, 0]), float(np.hypot(r, hl))
        h = room_h if rng.random() < 0.5 else rng.uniform(0.5, 1.3)
        parts.append(cylinder_part(at([0, h / 2, 0]), [0, 1, 0], r, h / 2, label, material))
        return parts, at([0, h, 0]), r
    if label == BALL:
        r = rng.uniform(0.12, 0.4)
        parts.append(sphere_part(at([0, r, 0]), r, label, material))
        return parts, at([0, 2 * r, 0]), r
    if label == LAMP:
        ph, rb, rt, hs = (
            rng.uniform(1.1, 1.6),
            rng.uniform(0.17, 0.27),
            rng.uniform(0.07, 0.14),
            rng.uniform(0.2, 0.32),
        )
        parts.append(cylinder_part(at([0, 0.015, 0]), [0, 1, 0], 0.15, 0.015, label, material))
        parts.append(cylinder_part(at([0, ph / 2, 0]), [0, 1, 0], 0.02, ph / 2, label, material))
        ang = np.arange(8) * np.pi / 4 + rng.uniform(0, np.pi / 4)
        u = np.stack([np.cos(ang), np.zeros(8), np.sin(ang)], 1)
        side_n = hs * u + (rb - rt) * np.array([0.0, 1.0, 0.0])
        normals = np.concatenate([side_n, [[0, 1, 0], [0, -1, 0]]])
        points = np.concatenate([rb * u, [[0, hs, 0], [0, 0, 0]]])
        vr = 1.0 / np.cos(np.pi / 8)
        verts = np.concatenate([rb * vr * u, rt * vr * u + [0, hs, 0]])
        base = at([0, ph - 0.6 * hs, 0])
        parts.append(convex_part(normals, points, verts, ry, base, label, material))
        return parts, base + [0, hs, 0], rb
    if label == RAMP:
        a, b, h = rng.uniform(0.25, 0.5), rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.6)
        normals = [[0, -1, 0], [0, 0, -1], [1, 0, 0], [-1, 0, 0], [0, 2 * b, h]]
        points = [[0, 0, 0], [0, 0, -b], [a, 0, 0], [-a, 0, 0], [0, 0, b]]
        verts = [[sx * a, 0, sz * b] for sx in (-1, 1) for sz in (-1, 1)] + [
            [sx * a, h, -b] for sx in (-1, 1)
        ]
        parts.append(convex_part(normals, points, verts, ry, at([0, 0, 0]), label, material))
        return parts, at([0, h, -b]), float(np.hypot(a, b))
    if label == PYRAMID:
        a, h = rng.uniform(0.2, 0.45), rng.uniform(0.3, 0.9)
        if rng.random() < 0.5:  # square pyramid
            normals = [[0, -1, 0], [h, a, 0], [-h, a, 0], [0, a, h], [0, a, -h]]
            points = [[0, 0, 0], [a, 0, 0], [-a, 0, 0], [0, 0, a], [0, 0, -a]]
            verts = [[sx * a, 0, sz * a] for sx in (-1, 1) for sz in (-1, 1)] + [[0, h, 0]]
            kp = [0, h, 0]
        else:  # gable roof: triangular prism
            b = rng.uniform(0.3, 0.6)
            normals = [[0, -1, 0], [h, a, 0], [-h, a, 0], [0, 0, 1], [0, 0, -1]]
            points = [[0, 0, 0], [a, 0, 0], [-a, 0, 0], [0, 0, b], [0, 0, -b]]
            verts = [[sx * a, 0, sz * b] for sx in (-1, 1) for sz in (-1, 1)] + [
                [0, h, sz * b] for sz in (-1, 1)
            ]
            kp = [0, h, 0]
        parts.append(convex_part(normals, points, verts, ry, at([0, 0, 0]), label, material))
        return parts, at(kp), a * 1.42
    if label == SOFA:
        a, b = rng.uniform(0.6, 1.0), rng.uniform(0.38, 0.45)
        seat = rng.uniform(0.38, 0.45)
        bump = _sample_relief(rng, "quilted")
        parts.append(
            box_part(
                at([0, seat / 2, 0.05]), [a, seat / 2, b - 0.05], ry, label, material, bump, "all"
            )
        )
        back_h = rng.uniform(0.75, 0.9)
        parts.append(
            box_part(
                at([0, back_h / 2, -b + 0.1]),
                [a, back_h / 2, 0.1],
                ry,
                label,
                material,
                bump,
                "all",
            )
        )
        for sx in (-1, 1):
            parts.append(
                box_part(
                    at([sx * (a + 0.1), seat * 0.75, 0]),
                    [0.1, seat * 0.75, b],
                    ry,
                    label,
                    material,
                    bump,
                    "all",
                )
            )
        return parts, at([0, back_h, -b + 0.1]), float(np.hypot(a + 0.2, b))
    if label == RUG:
        a, b = rng.uniform(0.5, 1.2), rng.uniform(0.4, 0.9)
        bump = _sample_relief(rng, rng.choice(["ribbed", "quilted"]))
        parts.append(box_part(at([0, 0.01, 0]), [a, 0.01, b], ry, label, material, bump))
        return parts, at([0, 0.02, 0]), float(np.hypot(a, b))
    raise ValueError(label)


_AGAINST_WALL = (CABINET, SOFA)


def sample_scene(rng, domain: str, pose: PoseDistribution, size: int) -> Scene:
    """Room, camera, furniture and lights for one example."""
    width, length, height = rng.uniform(3.2, 6.0), rng.uniform(3.2, 6.0), rng.uniform(2.5, 3.1)
    room = np.array([-width / 2, width / 2, -length / 2, length / 2, height])
    camera = sample_camera(rng, room, pose, size)

    materials = [_sample_material(rng, c, domain) for c in (FLOOR, WALL, CEILING)]
    relief_p = [0.3, 0.35, 0.35] if domain == SOURCE else [0.2, 0.4, 0.4]
    wall_relief = [
        _sample_relief(rng, str(rng.choice(["flat", "panel", "ribbed"], p=relief_p)), height)
        for _ in range(4)
    ]
    # One relief for the whole room half the time, so walls do not all differ.
    if rng.random() < 0.5:
        wall_relief = [wall_relief[0]] * 4
    floor_relief = (
        _sample_relief(rng, "tiles") if rng.random() < (0.15 if domain == SOURCE else 0.4) else None
    )

    mix = OBJECT_MIX[domain]
    probs = np.array([mix[c] for c in OBJECT_CLASSES])
    probs /= probs.sum()
    parts: list[Part] = _architecture_parts(rng, room, camera)
    architecture = list(parts)
    for i, part in enumerate(architecture):
        part.instance = -2 - i  # its own shadow-casting group, no keypoint
    # Furniture keeps clear of what stands on the floor (pilasters, corners, platforms).
    blocked = [part for part in architecture if part.vertices[:, 1].min() < 0.5]
    keypoints: list[np.ndarray] = []
    footprints: list[tuple[np.ndarray, float]] = []
    cam_xz = camera.position[[0, 2]]
    forward = -camera.rotation[:, 2]
    cam_bearing = np.arctan2(forward[0], forward[2])
    num_objects = rng.integers(6, 13) if domain == SOURCE else rng.integers(8, 15)
    for _ in range(int(num_objects)):
        label = int(rng.choice(OBJECT_CLASSES, p=probs))
        mat = len(materials)
        materials.append(_sample_material(rng, label, domain))
        shape_seed = int(rng.integers(2**63))
        # Shape once at the origin; placement tries move only its vertices.
        local_parts, _, radius = _object_parts(
            np.random.default_rng(shape_seed), label, np.zeros(2), 0.0, mat, height
        )
        local = np.concatenate([p.vertices for p in local_parts])
        for _try in range(20):
            yaw = rng.uniform(0, 2 * np.pi)
            if rng.random() < 0.75:  # in front of the camera: rooms look cluttered
                bearing = cam_bearing + np.radians(rng.uniform(-0.6, 0.6) * camera.fov_deg)
                xz = cam_xz + rng.uniform(0.9, 3.0) * np.array([np.sin(bearing), np.cos(bearing)])
            else:
                xz = np.array([rng.uniform(room[0], room[1]), rng.uniform(room[2], room[3])])
            if label in _AGAINST_WALL and rng.random() < 0.7:
                wall = int(rng.integers(4))
                depth = 0.3 if label == CABINET else 0.5
                if wall < 2:
                    xz[0] = room[wall] + (depth if wall == 0 else -depth)
                    yaw = np.pi / 2 if wall == 0 else -np.pi / 2
                else:
                    xz[1] = room[wall] + (depth if wall == 2 else -depth)
                    yaw = 0.0 if wall == 2 else np.pi
            pts = local @ rot_y(yaw).T + [xz[0], 0.0, xz[1]]
            inside = (
                (pts[:, 0] > room[0] + 0.01)
                & (pts[:, 0] < room[1] - 0.01)
                & (pts[:, 2] > room[2] + 0.01)
                & (pts[:, 2] < room[3] - 0.01)
                & (pts[:, 1] < height - 0.01 + (label == PILLAR) * 0.02)
            ).all()
            clear_cam = np.linalg.norm(xz - cam_xz) > radius + 0.6
            clear = label == RUG or all(
                np.linalg.norm(xz - c) > 0.8 * (radius + r) for c, r in footprints
            )
            base = np.concatenate([pts, pts.mean(0, keepdims=True)])
            base[:, 1] = 0.05
            free = not any(_inside(b, q, margin=0.05) for b in blocked for q in base)
            if inside and clear_cam and clear and free:
                obj_parts, kp, _ = _object_parts(
                    np.random.default_rng(shape_seed), label, xz, yaw, mat, height
                )
                for part in obj_parts:
                    part.instance = len(keypoints)
                parts.extend(obj_parts)
                keypoints.append(kp)
                if label != RUG:  # furniture may stand on rugs
                    footprints.append((xz, radius))
                break

    lights: list[dict] = []
    az, el = rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(30, 75))
    sun = np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
    centre = np.array([(room[0] + room[1]) / 2, height / 2, (room[2] + room[3]) / 2])
    if domain == SOURCE:
        # A white sun, as a far point light: SUNCG-PBRS is path traced, so its images have
        # cast shadows too (SOURCE_SHADOWS); a ceiling lamp in some rooms.
        lights.append(
            {"kind": "point", "pos": centre + 50.0 * sun, "falloff": 1e6,
             "intensity": np.full(3, rng.uniform(0.55, 0.95)), "shadows": SOURCE_SHADOWS}
        )
        if rng.random() < SOURCE_LAMP_P:
            lights += _ceiling_lights(rng, room, parts, architecture, 1,
                                      shadows=SOURCE_SHADOWS)
        ambient = np.full(3, rng.uniform(0.15, 0.4))
    else:
        # Daylight through windows: a far light (so it casts shadows like the lamps).
        tint = rng.uniform(-0.1, 0.1)
        lights.append(
            {
                "kind": "point",
                "pos": centre + 50.0 * sun,
                "falloff": 1e6,
                "intensity": rng.uniform(0.5, 1.0) * np.array([1 - tint, 1.0, 1 + tint]),
            }
        )
        lights += _ceiling_lights(rng, room, parts, architecture, int(rng.integers(1, 3)))
        ambient = rng.uniform(0.12, 0.3) * np.array([1.0, 1.0, 1.0 + rng.uniform(-0.1, 0.15)])
    return Scene(
        room, parts, materials, wall_relief, floor_relief, keypoints, lights, ambient, camera
    )


def _ceiling_lights(rng, room, parts, architecture, count: int, shadows: bool = True):
    """Up to ``count`` warm-ish point lights below the ceiling, clear of every part."""
    height = room[4]
    lights = []
    for _ in range(count):
        for _try in range(10):
            pos = np.array(
                [
                    rng.uniform(room[0] + 0.3, room[1] - 0.3),
                    height - rng.uniform(0.15, 0.6),
                    rng.uniform(room[2] + 0.3, room[3] - 0.3),
                ]
            )
            if all(
                np.linalg.norm(pos - p.bounding_sphere[0]) > p.bounding_sphere[1]
                for p in parts
                if p.instance >= 0
            ) and not any(_inside(p, pos, margin=0.1) for p in architecture):
                warm = rng.uniform(0.0, 0.25)
                lights.append(
                    {
                        "kind": "point",
                        "pos": pos,
                        "falloff": rng.uniform(3.0, 6.0),
                        "intensity": rng.uniform(0.2, 0.6)
                        * np.array([1.0, 1.0 - 0.4 * warm, 1.0 - warm]),
                        "shadows": shadows,
                    }
                )
                break
    return lights


# --- Rendering ------------------------------------------------------------------------
def _screen_rect(part: Part, camera: Camera):
    """Pixel rectangle (r0, r1, c0, c1) that contains the part's projection, or None."""
    xy, depth = camera.project(part.vertices)
    s = camera.size
    if depth.max() <= 1e-3:
        return None
    if depth.min() < 0.05:
        return 0, s, 0, s
    x, y = xy[:, 0] * s, xy[:, 1] * s
    c0, c1 = int(max(np.floor(x.min()) - 1, 0)), int(min(np.ceil(x.max()) + 1, s))
    r0, r1 = int(max(np.floor(y.min()) - 1, 0)), int(min(np.ceil(y.max()) + 1, s))
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


# Room faces: (axis, bound index into room array, inward normal), ids 0..5.
_ROOM_FACES = (
    (1, None, np.array([0.0, 1.0, 0.0])),  # floor (y = 0)
    (1, 4, np.array([0.0, -1.0, 0.0])),  # ceiling
    (0, 0, np.array([1.0, 0.0, 0.0])),  # wall x = x0
    (0, 1, np.array([-1.0, 0.0, 0.0])),  # wall x = x1
    (2, 2, np.array([0.0, 0.0, 1.0])),  # wall z = z0
    (2, 3, np.array([0.0, 0.0, -1.0])),  # wall z = z1
)
_ROOM_LABELS = np.array([FLOOR, CEILING, WALL, WALL, WALL, WALL])
_ROOM_MATERIALS = np.array([0, 2, 1, 1, 1, 1])


def _intersect_room(room, origin, dirs):
    x0, x1, z0, z1, h = room
    lo, hi = np.array([x0, 0.0, z0]), np.array([x1, h, z1])
    with np.errstate(divide="ignore", invalid="ignore"):
        t_axes = np.where(dirs > 0, (hi - origin) / dirs, (lo - origin) / dirs)
    t_axes = np.where(np.abs(dirs) < 1e-12, np.inf, t_axes)
    axis = t_axes.argmin(-1)
    t = np.take_along_axis(t_axes, axis[..., None], -1)[..., 0]
    positive = np.take_along_axis(dirs, axis[..., None], -1)[..., 0] > 0
    # face id: y -> floor(0)/ceiling(1); x -> 2/3; z -> 4/5.
    face = np.select([axis == 1, axis == 0], [positive * 1, 2 + positive * 1], 4 + positive * 1)
    return t, face


def _texture(tex: dict, p: np.ndarray) -> np.ndarray:
    """Multiplicative albedo modulation in [1 - contrast, 1] at world points p (N, 3)."""
    kind, s = tex["kind"], tex["scale"]
    if kind == "noise":
        v = np.sin(_dot(p, tex["dirs"].T * tex["freqs"]) + tex["phases"]).mean(1)
        pattern = np.clip(0.5 + 0.9 * v, 0.0, 1.0)
    elif kind == "stripes":
        pattern = 0.5 + 0.5 * np.tanh(3.0 * np.sin(2 * np.pi * _dot(p, tex["dir"]) / s))
    else:  # checker
        pattern = (np.floor(p / s).astype(np.int64).sum(1) % 2).astype(float)
    return 1.0 - tex["contrast"] * (1.0 - pattern)


def _sphere_near_segments(center, radius, origin, dirs, dist) -> np.ndarray:
    """Conservative test: may the segments origin + t dirs, 0 < t < dist, touch the sphere?"""
    w = center - origin
    proj = _dot(dirs, w)
    return (w @ w - proj**2 < radius * radius) & (proj > -radius) & (proj < dist + radius)


def _in_shadow(scene: Scene, light_pos, points, candidates) -> np.ndarray:
    """Whether the segment from the light to each candidate point is blocked by a part."""
    q = points[candidates] - light_pos
    dist = np.linalg.norm(q, axis=1)
    dirs = q / dist[:, None]
    blocked = np.zeros(len(q), bool)
    by_object: dict[int, list[Part]] = {}
    for part in scene.parts:
        by_object.setdefault(part.instance, []).append(part)
    for obj_parts in by_object.values():
        verts = np.concatenate([p.vertices for p in obj_parts])
        c = verts.mean(0)
        idx = np.flatnonzero(
            _sphere_near_segments(c, np.linalg.norm(verts - c, axis=1).max(), light_pos, dirs, dist)
            & ~blocked
        )
        for part in obj_parts if len(idx) else ():
            pc, pr = part.bounding_sphere
            sub = idx[_sphere_near_segments(pc, pr, light_pos, dirs[idx], dist[idx])]
            if len(sub):
                t, _ = intersect(part, light_pos, dirs[sub], eps=1e-4)
                blocked[sub[t < dist[sub] * (1 - 1e-4) - 2e-3]] = True
    out = np.zeros(len(points), bool)
    out[candidates] = blocked
    return out


def render(scene: Scene, camera: Camera, domain: str, rng) -> dict[str, np.ndarray]:
    """Ray-cast the scene; returns the example's arrays (before anchor-label noise)."""
    s = camera.size
    d_cam, dirs = camera.rays()
    o = camera.position
    t, face = _intersect_room(scene.room, o, dirs)
    normal = np.stack([_ROOM_FACES[i][2] for i in range(6)])[face]
    label = _ROOM_LABELS[face].astype(np.uint8)
    material = _ROOM_MATERIALS[face]
    surface = face.astype(np.int32)  # 0..5 room faces, 6 + i part i

    for i, part in enumerate(scene.parts):
        rect = _screen_rect(part, camera)
        if rect is None:
            continue
        r0, r1, c0, c1 = rect
        sub = dirs[r0:r1, c0:c1].reshape(-1, 3)
        tp, npart = intersect(part, o, sub)
        tv = t[r0:r1, c0:c1]
        closer = (tp < tv.reshape(-1)).reshape(tv.shape)
        if not closer.any():
            continue
        tv[closer] = tp.reshape(tv.shape)[closer]
        normal[r0:r1, c0:c1][closer] = npart.reshape(tv.shape + (3,))[closer]
        label[r0:r1, c0:c1][closer] = part.label
        material[r0:r1, c0:c1][closer] = part.material
        surface[r0:r1, c0:c1][closer] = 6 + i

    points = o + dirs * t[..., None]
    geometric = normal.copy()
    shading = normal.copy()
    # Relief: walls and the faces of parts that carry one.
    for face_id in range(6):
        relief = (
            scene.floor_relief
            if face_id == 0
            else (scene.wall_relief[face_id - 2] if face_id >= 2 else None)
        )
        sel = surface == face_id
        if relief is not None and sel.any():
            shading[sel] = apply_relief(relief, geometric[sel], points[sel])
    for i, part in enumerate(scene.parts):
        if part.bump is None:
            continue
        sel = surface == 6 + i
        if part.bump_faces == "up":
            sel &= geometric[..., 1] > 0.9
        elif part.bump_faces == "sides":
            sel &= np.abs(geometric[..., 1]) < 0.1
        if sel.any():
            shading[sel] = apply_relief(part.bump, geometric[sel], points[sel])
    # Relief never turns a visible surface away from the camera.
    to_cam = -dirs
    facing = np.einsum("...i,...i->...", shading, to_cam)
    fix = (facing < 0.05) & (shading != geometric).any(-1)
    if fix.any():
        shading[fix] = _unit(shading[fix] + (0.05 - facing[fix])[:, None] * to_cam[fix])

    depth = t * -d_cam[..., 2]
    image = _shade(scene, domain, points, shading, geometric, material, rng)
    normals_cam = _dot(shading, camera.rotation)
    mask = np.ones((s, s), bool)
    if domain == TARGET:  # depth-sensor-like missing data: grazing surfaces and blobs
        cos_view = np.einsum("...i,...i->...", shading, to_cam)
        mask &= cos_view > 0.1
        yy, xx = np.mgrid[0:s, 0:s] / s
        for _ in range(int(rng.integers(0, 4))):
            cy, cx, ry, rx = rng.uniform(0, 1), rng.uniform(0, 1), *rng.uniform(0.02, 0.1, 2)
            mask &= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 > 1.0
    normals_cam = np.where(mask[..., None], normals_cam, 0.0)

    keypoints, visible = _keypoints(scene, camera, depth)
    return {
        "image": image,
        "normals": normals_cam.astype(np.float32),
        "normals_mask": mask,
        "segmentation": label[..., None],
        "depth": np.where(mask, depth, 0.0).astype(np.float32),
        "keypoints": keypoints,
        "keypoints_visible": visible,
    }


def _shade(scene, domain, points, shading, geometric, material, rng) -> np.ndarray:
    albedo = np.stack([m.albedo for m in scene.materials])[material]
    if any(m.texture is not None for m in scene.materials):
        for k in np.unique(material):
            tex = scene.materials[k].texture
            if tex is not None:
                sel = material == k
                albedo[sel] *= _texture(tex, points[sel])[:, None]
    light = np.broadcast_to(scene.ambient, shading.shape).copy()
    flat_n, flat_g, flat_p = shading.reshape(-1, 3), geometric.reshape(-1, 3), points.reshape(-1, 3)
    for lt in scene.lights:
        if lt["kind"] == "directional":
            cos = np.clip(_dot(flat_n, lt["dir"]), 0.0, None)
            light += (cos[:, None] * lt["intensity"]).reshape(light.shape)
            continue
        to_l = lt["pos"] - flat_p
        dist = np.linalg.norm(to_l, axis=1)
        ldir = to_l / dist[:, None]
        cos = np.clip(np.einsum("ij,ij->i", flat_n, ldir), 0.0, None)
        lit = cos > 0
        # Offset along the geometric normal so a surface never shadows itself.
        shadow = (
            _in_shadow(scene, lt["pos"], flat_p + 1e-3 * flat_g, np.flatnonzero(lit))
            if lt.get("shadows", True)
            else np.zeros(len(cos), bool)
        )
        energy = cos * ~shadow / (1.0 + (dist / lt["falloff"]) ** 2)
        light += (energy[:, None] * lt["intensity"]).reshape(light.shape)
    radiance = albedo * light
    if domain == SOURCE:
        return _to_uint8(radiance)
    return _real_camera(radiance, rng)


# Sensor model of the target camera: blur sigma (px at 128²), read noise and shot-noise gain
# (in sRGB units).
CAMERA_BLUR_PX = (0.4, 1.0)
CAMERA_READ_NOISE = (0.004, 0.012)
CAMERA_SHOT_NOISE = 0.008


def _real_camera(radiance: np.ndarray, rng) -> np.ndarray:
    """Auto-exposure with an exposure error, colour cast, vignetting, blur, sensor noise."""
    s = radiance.shape[0]
    radiance = radiance * (0.8 / max(np.percentile(radiance.max(-1), 90), 1e-3))
    radiance *= rng.uniform(0.7, 1.3) * rng.uniform(0.85, 1.15, 3)
    yy, xx = (np.mgrid[0:s, 0:s] + 0.5) / s - 0.5
    radiance *= (1.0 - rng.uniform(0.2, 0.5) * (xx**2 + yy**2) / 0.5)[..., None]
    radiance = _gaussian_blur(radiance, rng.uniform(*CAMERA_BLUR_PX))
    srgb = np.clip(radiance, 0.0, 1.0) ** (1 / 2.2)
    sigma = rng.uniform(*CAMERA_READ_NOISE)
    srgb = srgb + rng.normal(size=srgb.shape) * (sigma + CAMERA_SHOT_NOISE * np.sqrt(srgb))
    return (np.clip(srgb, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def _to_uint8(radiance: np.ndarray) -> np.ndarray:
    return (np.clip(radiance, 0.0, 1.0) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    x = np.arange(-2, 3)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    w /= w.sum()
    for axis in (0, 1):
        pad = [(2, 2) if a == axis else (0, 0) for a in range(img.ndim)]
        p = np.pad(img, pad, mode="edge")
        n = img.shape[axis]
        img = sum(wk * np.take(p, np.arange(k, k + n), axis=axis) for k, wk in enumerate(w))
    return img


def _keypoints(scene: Scene, camera: Camera, depth_map: np.ndarray):
    """Room corners (ordered by bearing from the camera's forward direction, floor then
    ceiling) and one surface point per object (nearest objects first), padded."""
    x0, x1, z0, z1, h = scene.room
    floor = np.array([[x, 0.0, z] for x in (x0, x1) for z in (z0, z1)])
    forward = -camera.rotation[:, 2]
    rel = floor - camera.position
    bearing = np.arctan2(
        rel[:, 0] * forward[2] - rel[:, 2] * forward[0],
        rel[:, 0] * forward[0] + rel[:, 2] * forward[2],
    )
    floor = floor[np.argsort(bearing)]
    corners = np.concatenate([floor, floor + [0.0, h, 0.0]])
    objs = np.array(scene.keypoints).reshape(-1, 3)
    objs = objs[np.argsort(np.linalg.norm(objs - camera.position, axis=1))]
    objs = objs[:NUM_OBJECT_KEYPOINTS]
    pts = np.concatenate([corners, objs])
    xy, z = camera.project(pts)
    s = camera.size
    visible = (z > 0.05) & (xy >= 0).all(1) & (xy < 1).all(1)
    ij = np.clip(np.floor(xy * s).astype(int), 0, s - 1)
    seen = depth_map[ij[:, 1], ij[:, 0]]
    visible &= np.abs(seen - z) <= KEYPOINT_DEPTH_TOLERANCE[0] * z + KEYPOINT_DEPTH_TOLERANCE[1]
    kps = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    vis = np.zeros(NUM_KEYPOINTS, bool)
    n = len(pts)
    kps[:n] = np.where(visible[:, None], np.concatenate([xy, z[:, None]], 1), 0.0)
    vis[:n] = visible
    return kps, vis


# A keypoint is visible when the depth map at its pixel is within rel * depth + abs (metres).
KEYPOINT_DEPTH_TOLERANCE = (0.04, 0.03)


# --- Anchor-label noise ------------------------------------------------------------------
def noisy_segmentation(seg: np.ndarray, rng) -> np.ndarray:
    """Erode/jitter class boundaries like hand or automatic 'free' labels: each boundary pixel
    becomes void or takes a neighbour's label."""
    s2 = seg[..., 0]
    p = np.pad(s2, 1, mode="edge")
    neigh = np.stack([p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]])
    boundary = (neigh != s2).any(0)
    pick = neigh[
        rng.integers(0, 4, s2.shape), np.arange(s2.shape[0])[:, None], np.arange(s2.shape[1])
    ]
    u = rng.random(s2.shape)
    out = np.where(boundary & (u < 0.5), 0, np.where(boundary, pick, s2))
    return out.astype(np.uint8)[..., None]


def anchor_indices(seed: int, num_target_train: int, target_anchor_count: int | None):
    """Indices of target_train examples whose anchor labels are usable (a seeded subset)."""
    if target_anchor_count is None or target_anchor_count >= num_target_train:
        return set(range(num_target_train))
    perm = np.random.default_rng([seed, 7919]).permutation(num_target_train)
    return {int(i) for i in perm[:target_anchor_count]}


# --- Entry point -----------------------------------------------------------------------
def example_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS[split][1], index])


def generate_example(
    spec: GenerationSpec,
    split: str,
    index: int,
    has_anchor: bool = True,
    return_scene: bool = False,
):
    """One example as numpy arrays, a pure function of (spec, split, index, has_anchor)."""
    domain = SPLITS[split][0]
    rng = example_rng(spec.seed, split, index)
    pose = TARGET_POSE if domain == TARGET else SOURCE_POSE
    if domain == SOURCE and spec.match_pose:
        pose = dataclasses.replace(TARGET_POSE, fov_deg=SOURCE_POSE.fov_deg)
    scene = sample_scene(rng, domain, pose, spec.image_size)
    ex = render(scene, scene.camera, domain, rng)
    if split == "target_train":
        if not has_anchor:
            ex["segmentation"] = np.zeros_like(ex["segmentation"])
            ex["keypoints"] = np.zeros_like(ex["keypoints"])
            ex["keypoints_visible"] = np.zeros_like(ex["keypoints_visible"])
        elif spec.noisy_anchor:
            ex["segmentation"] = noisy_segmentation(ex["segmentation"], rng)
            px = 1.0 / spec.image_size
            jitter = rng.normal(size=(NUM_KEYPOINTS, 3)) * np.array([px, px, 0.0])
            jitter[:, 2] = rng.normal(size=NUM_KEYPOINTS) * 0.02 * ex["keypoints"][:, 2]
            ex["keypoints"] = np.where(
                ex["keypoints_visible"][:, None], ex["keypoints"] + jitter, 0.0
            ).astype(np.float32)
    ex["has_anchor"] = bool(has_anchor) if split == "target_train" else True
    ex["id"] = f"sim2real_rooms/seed{spec.seed}/{split}/{index:06d}"
    if return_scene:
        return ex, scene
    return ex
