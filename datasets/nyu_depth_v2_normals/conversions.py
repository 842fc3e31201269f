"""Pure conversions for NYU Depth v2 (labeled subset) and its surface-normal files.

Everything here works on numpy arrays and strings only, so the tests can feed known
geometry straight in and the visual check can reuse it without building a dataset.
The project's normal frame (``tada_keras.conventions``) is: x right, y up, z toward the
camera, unit length, zeros where invalid.
"""

from __future__ import annotations

import hashlib

import numpy as np

# --- Class tables --------------------------------------------------------------------

# ``classMapping40.mat['className']`` (verified, see README): NYU-40 id k is entry k-1.
NYU40_CLASS_NAMES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
    "bookshelf", "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser",
    "pillow", "mirror", "floor mat", "clothes", "ceiling", "books", "refridgerator",
    "television", "paper", "towel", "shower curtain", "box", "whiteboard", "person",
    "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop",
)  # fmt: skip

# A handful of rows of the published 894 -> 40 table (``classMapping40.mat['mapClass']``):
# raw NYU class id (1-based index into the .mat's ``names``) -> (raw name, NYU-40 id).
# Raw ids/names: csun/syntrain src/constants.py, consistent with ``allClassName`` starting
# book, bottle, cabinet, ceiling, chair, cone, counter (ankurhanda/nyuv2-meta-data).
# Each raw class here carries the name of its NYU-40 class, which is how the 40-class set
# was formed (Gupta et al. 2013), so the target id is the index of that name above.
REFERENCE_894_TO_40 = {
    21: ("wall", 1),
    11: ("floor", 2),
    3: ("cabinet", 3),
    157: ("bed", 4),
    5: ("chair", 5),
    83: ("sofa", 6),
    19: ("table", 7),
    28: ("door", 8),
    59: ("window", 9),
    64: ("picture", 11),
    7: ("counter", 12),
    4: ("ceiling", 22),
    85: ("books", 23),
    144: ("lamp", 35),
}

# --- Normal encodings ----------------------------------------------------------------

# An axes spec says how the stored channels become the project frame: output axis k
# (x right, y up, z toward the camera) = sign * stored channel i. For PNG sources the
# channels are in file order R=0, G=1, B=2; for the Ladicky arrays 0=nx, 1=ny, 2=nz.
#
# eigen: ASSUMED. "NYU colouring" as quoted by the 2D-3D-S authors
#   (alexsax/2D-3D-Semantics issue #13): R = right, G = down, B = toward the camera.
# ladicky_png: INFERRED (MARSLab-UMN/TiltedImageSurfaceNormal dataset_loader_nyud.py):
#   the PNG holds (x, y, z) of an (x right, y down, z forward) frame in B, G, R order.
# ladicky_pklz: ASSUMED. [nx, ny, nz] in the same (right, down, forward) frame as the
#   Ladicky PNGs. No public source states it.
# Verify each on your copy with visual_check.py; override with ``normal_axes``.
DEFAULT_NORMAL_AXES = {
    "eigen": "+0,-1,+2",
    "ladicky_png": "+2,-1,-0",
    "ladicky_pklz": "+0,-1,-2",
}

# Same criterion as yindaz/pbrs convert_camera_normal.m: |‖n‖² − 1| > 0.1 is invalid.
# It also rejects the (0,0,0) and (127,127,127) fill values of 8-bit files.
UNIT_NORM_TOLERANCE = 0.1


def parse_axes(spec: str) -> tuple[tuple[int, float], ...]:
    """Parses ``"+0,-1,+2"`` into ((channel, sign), ...) for output axes x, y, z."""
    tokens = [t.strip() for t in str(spec).split(",")]
    if len(tokens) != 3:
        raise ValueError(f"normal_axes {spec!r}: expected 3 comma-separated items like '+0,-1,+2'")
    axes = []
    for token in tokens:
        if len(token) != 2 or token[0] not in "+-" or token[1] not in "012":
            raise ValueError(f"normal_axes {spec!r}: item {token!r} is not one of +0 -0 +1 ... -2")
        axes.append((int(token[1]), 1.0 if token[0] == "+" else -1.0))
    if sorted(c for c, _ in axes) != [0, 1, 2]:
        raise ValueError(f"normal_axes {spec!r}: each stored channel must be used exactly once")
    return tuple(axes)


def apply_axes(vectors: np.ndarray, spec: str) -> np.ndarray:
    """Reorders and flips the last axis of ``vectors`` as ``spec`` says (see parse_axes)."""
    vectors = np.asarray(vectors, np.float32)
    return np.stack([sign * vectors[..., c] for c, sign in parse_axes(spec)], axis=-1)


def decode_unit_png(png: np.ndarray) -> np.ndarray:
    """Maps an 8- or 16-bit normal image to [-1, 1] by its dtype: n = v / max · 2 − 1."""
    png = np.asarray(png)
    if png.ndim != 3 or png.shape[-1] < 3:
        raise ValueError(f"normal image must be (H, W, 3), got shape {png.shape}")
    if png.dtype == np.uint8:
        scale = 255.0
    elif png.dtype == np.uint16:
        scale = 65535.0
    else:
        raise ValueError(f"normal image must be uint8 or uint16, got {png.dtype}")
    return (png[..., :3].astype(np.float32) / scale) * 2.0 - 1.0


def finalize_normals(vectors: np.ndarray, valid: np.ndarray | None = None):
    """Returns (unit float32 normals with zeros where invalid, bool mask).

    A pixel is valid where ``valid`` (if given) is true, the vector is finite and its
    squared length is within UNIT_NORM_TOLERANCE of 1.
    """
    vectors = np.asarray(vectors, np.float32)
    finite = np.all(np.isfinite(vectors), axis=-1)
    safe = np.where(finite[..., None], vectors, 0.0)
    sq_norm = np.sum(safe * safe, axis=-1)
    mask = finite & (np.abs(sq_norm - 1.0) <= UNIT_NORM_TOLERANCE)
    if valid is not None:
        mask &= np.asarray(valid, bool)
    norm = np.sqrt(np.maximum(sq_norm, 1e-12))[..., None]
    normals = np.where(mask[..., None], safe / norm, 0.0).astype(np.float32)
    return normals, mask


def decode_eigen_normals(png: np.ndarray, mask_png: np.ndarray, axes: str | None = None):
    """Eigen & Fergus ``normals_gt/normals/%04d.png`` + ``masks/%04d.png`` -> (normals, mask)."""
    mask_png = np.asarray(mask_png)
    valid = mask_png > 0 if mask_png.ndim == 2 else np.any(mask_png > 0, axis=-1)
    vectors = apply_axes(decode_unit_png(png), axes or DEFAULT_NORMAL_AXES["eigen"])
    return finalize_normals(vectors, valid)


def decode_ladicky_png_normals(png: np.ndarray, axes: str | None = None):
    """Ladicky ``nyu_normals_gt/{train,test}/%05d.png`` -> (normals, mask).

    The release has no mask file: invalid pixels are the ones that do not decode to a
    unit vector.
    """
    vectors = apply_axes(decode_unit_png(png), axes or DEFAULT_NORMAL_AXES["ladicky_png"])
    return finalize_normals(vectors)


def decode_ladicky_array_normals(
    nxyz: np.ndarray, valid_depth: np.ndarray | None, axes: str | None = None
):
    """One image of ``all_normals.pklz`` ((H, W, 3) [nx, ny, nz]) -> (normals, mask)."""
    vectors = apply_axes(nxyz, axes or DEFAULT_NORMAL_AXES["ladicky_pklz"])
    valid = None if valid_depth is None else np.asarray(valid_depth) > 0
    return finalize_normals(vectors, valid)


# --- MATLAB v7.3 (HDF5) layout -------------------------------------------------------


def matlab_image_to_hwc(image_cwh: np.ndarray) -> np.ndarray:
    """h5py view of one MATLAB H×W×C image, (C, W, H), -> (H, W, C)."""
    if image_cwh.ndim != 3:
        raise ValueError(f"expected a (C, W, H) array, got shape {image_cwh.shape}")
    return np.transpose(image_cwh, (2, 1, 0))


def matlab_matrix_to_hw(matrix_wh: np.ndarray) -> np.ndarray:
    """h5py view of one MATLAB H×W matrix, (W, H), -> (H, W)."""
    if matrix_wh.ndim != 2:
        raise ValueError(f"expected a (W, H) array, got shape {matrix_wh.shape}")
    return np.ascontiguousarray(matrix_wh.T)


def decode_matlab_string(chars: np.ndarray, *, empty: bool = False) -> str:
    """Decodes a MATLAB char array as h5py returns it (uint16 code units, (L, 1)).

    ``bytes(chars)`` would interleave NUL bytes (the bug of TFDS's old labeled builder);
    each uint16 is one UTF-16 code unit. MATLAB stores '' as a uint64 placeholder with a
    ``MATLAB_empty`` attribute; pass ``empty=True`` for it.
    """
    if empty:
        return ""
    chars = np.asarray(chars)
    if chars.ndim == 2 and min(chars.shape) > 1:
        raise ValueError(f"expected a 1-row MATLAB char array, got shape {chars.shape}")
    units = chars.ravel().astype(np.uint16).tobytes()
    return units.decode("utf-16-le")


# --- Labels and splits ---------------------------------------------------------------


def map_894_to_40(labels: np.ndarray, map_class: np.ndarray) -> np.ndarray:
    """Raw NYU labels (0 = unlabeled, 1..894) -> NYU-40 ids (0 = void) as uint8."""
    lut = np.concatenate([[0], np.asarray(map_class).ravel()]).astype(np.uint8)
    labels = np.asarray(labels)
    if labels.size and int(labels.max()) >= lut.size:
        raise ValueError(f"label id {int(labels.max())} is outside the mapping (1..{lut.size - 1})")
    return lut[labels]


def check_class_mapping(map_class: np.ndarray, class_names=None) -> None:
    """Raises ValueError unless ``map_class`` looks like the published 894 -> 40 table."""
    map_class = np.asarray(map_class).ravel()
    if map_class.size < max(REFERENCE_894_TO_40):
        raise ValueError(f"mapClass has {map_class.size} entries, expected 894")
    if map_class.min() < 1 or map_class.max() > len(NYU40_CLASS_NAMES):
        raise ValueError(
            f"mapClass values must be in 1..40, got {map_class.min()}..{map_class.max()}"
        )
    for raw_id, (raw_name, nyu40_id) in REFERENCE_894_TO_40.items():
        if int(map_class[raw_id - 1]) != nyu40_id:
            raise ValueError(
                f"mapClass[{raw_id}] ({raw_name!r}) is {int(map_class[raw_id - 1])}, the "
                f"published table has {nyu40_id} ({NYU40_CLASS_NAMES[nyu40_id - 1]!r})"
            )
    if class_names is not None and tuple(class_names) != NYU40_CLASS_NAMES:
        raise ValueError(f"className differs from the NYU-40 names: {list(class_names)}")


def stable_percent(key: str) -> int:
    """A deterministic value in 0..99 for ``key`` (independent of PYTHONHASHSEED)."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) % 100


def is_validation_scene(scene: str, validation_percent: int) -> bool:
    """Whether a training scene (e.g. ``kitchen_0001a``) is carved out for validation.

    Whole scenes move, like the official split, so no scene is in train and validation.
    """
    return stable_percent(scene) < validation_percent


# --- Convention check on real data (used by visual_check.py) ---------------------------

NYU40_WALL, NYU40_FLOOR, NYU40_CEILING = 1, 2, 22


def compose_axes(spec: str, correction: str) -> str:
    """The spec equal to applying ``spec`` and then ``correction`` (both as in parse_axes)."""
    base = parse_axes(spec)
    tokens = []
    for channel, sign in parse_axes(correction):
        stored, base_sign = base[channel]
        tokens.append(f"{'+' if sign * base_sign > 0 else '-'}{stored}")
    return ",".join(tokens)


def _all_signed_permutations():
    import itertools

    for perm in itertools.permutations(range(3)):
        for signs in itertools.product("+-", repeat=3):
            yield ",".join(f"{s}{c}" for s, c in zip(signs, perm))


def convention_score(normals, mask, labels=None) -> tuple[float, dict]:
    """How well normals fit an upright indoor scene in the project frame (higher = better).

    Floors point up (+y), ceilings down, visible surfaces toward the camera (+z), and
    surfaces in the left third of the image face right more than those in the right third.
    """
    normals = np.asarray(normals, np.float32)
    mask = np.asarray(mask, bool)
    stats = {}
    if mask.any():
        stats["toward_camera"] = float(np.mean(normals[mask][:, 2] > 0))
        width = mask.shape[-1]
        left, right = mask.copy(), mask.copy()
        left[..., width // 3 :] = False
        right[..., : width - width // 3] = False
        if labels is not None:
            walls = np.asarray(labels) == NYU40_WALL
            if (left & walls).any() and (right & walls).any():
                left, right = left & walls, right & walls
        if left.any() and right.any():
            stats["left_minus_right_x"] = float(
                normals[left][:, 0].mean() - normals[right][:, 0].mean()
            )
    if labels is not None:
        labels = np.asarray(labels)
        for name, cls in (("floor_y", NYU40_FLOOR), ("ceiling_y", NYU40_CEILING)):
            region = mask & (labels == cls)
            if region.sum() >= 10:
                stats[name] = float(normals[region][:, 1].mean())
    score = (
        stats.get("floor_y", 0.0)
        - stats.get("ceiling_y", 0.0)
        + 2.0 * stats.get("toward_camera", 0.0)
        - 1.0
        + stats.get("left_minus_right_x", 0.0)
    )
    return score, stats


def suggest_correction(normals, mask, labels=None) -> str:
    """The signed permutation of the decoded axes that best fits an indoor scene."""
    best = max(
        _all_signed_permutations(),
        key=lambda c: convention_score(apply_axes(normals, c), mask, labels)[0],
    )
    return best
