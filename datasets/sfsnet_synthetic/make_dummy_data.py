"""Writes `dummy_data/`, a tiny SfSNet-layout fixture rendered from an ellipsoid head.

    python -m tada_datasets.sfsnet_synthetic.make_dummy_data

Deterministic: same bytes on every run. Layout mirrors the release:
DATA_pose_15/<dddd>/<nnnnnn>_{face,normal,mask,albedo,depth}_<i>_<j>.png and _light_<i>_<j>.txt
(48x48 instead of 512x512), plus landmarks_68.npz (annotator output) and
target_pose_histogram.json (for the `frontal` config). Identity 000002 has one render without
its normal PNG (an incomplete set the builder must skip). 000022_face_2_3.png has no entry in
the landmark file, and 000003_face_2_3.png is marked "no face detected".
"""

from __future__ import annotations

import io
import json
import pathlib

import numpy as np
from PIL import Image

from tada_datasets.face_landmarks import face_region, head_pose, landmarks_file, synthetic_face
from tada_datasets.facewarehouse import mesh_render

SIZE = 48
FOCAL = 110.0
DISTANCE = 4.0
IDENTITIES = {"0001": ("000001", "000002", "000003"), "0002": ("000021", "000022")}
# (i, j) -> (yaw, pitch) in degrees: one near-frontal and one side render per identity.
RENDERS = {("1", "1"): (0.0, 0.0), ("2", "3"): (40.0, 5.0)}
OUT = pathlib.Path(__file__).resolve().parent / "dummy_data"


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def encode_sfsnet_normals(normals: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Project-frame normals -> SfSNet 8-bit PNG (R = down, G = right, B = toward camera)."""
    sfs = np.stack([-normals[..., 1], normals[..., 0], normals[..., 2]], -1)
    v = np.clip(np.round((sfs + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.where(mask[..., None], v, 0).astype(np.uint8)


def render_face(yaw: float, pitch: float, seed: int):
    rng = np.random.default_rng(seed)
    verts, quads = synthetic_face.ellipsoid_mesh(n_lat=32, n_lon=48)
    tris = synthetic_face.quads_to_triangles(quads)
    rot = synthetic_face.HEAD_TO_OPENCV @ synthetic_face.rotation_yaw_pitch(yaw, pitch)
    t = np.array([0.0, 0.0, DISTANCE])
    k = mesh_render.Intrinsics(FOCAL, FOCAL, SIZE / 2 - 0.5, SIZE / 2 - 0.5)
    res = mesh_render.render_normals(verts, tris, rot, t, k, SIZE, SIZE)
    light = np.array([0.3, 0.5, 0.8]) / np.linalg.norm([0.3, 0.5, 0.8])
    albedo = np.array([200, 150, 120]) * (0.9 + 0.2 * rng.random())
    shade = np.clip(res.normals @ light, 0.05, 1.0)
    face = np.where(res.mask[..., None], albedo * shade[..., None], 30).astype(np.uint8)
    # 68 template points on the ellipsoid, projected with the same camera.
    pts3 = synthetic_face.lift_to_ellipsoid(synthetic_face.template_68_2d())
    cam = pts3 @ rot.T + t
    u = (FOCAL * cam[:, 0] / cam[:, 2] + k.cx + 0.5) / SIZE
    v = (FOCAL * cam[:, 1] / cam[:, 2] + k.cy + 0.5) / SIZE
    depth = (cam[:, 2] - cam[:, 2].mean()) * FOCAL / cam[:, 2].mean() / SIZE
    kp = np.stack([u, v, depth], -1).astype(np.float32)
    visible = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    return res, face, albedo, kp, visible


def main() -> None:
    root = OUT / "DATA_pose_15"
    records = {}
    frontal_poses = []
    for folder, idents in IDENTITIES.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for n_ident, ident in enumerate(idents):
            renders = dict(RENDERS)
            if ident == "000002":
                renders[("3", "2")] = (10.0, 0.0)  # written without its normal map
            for (i, j), (yaw, pitch) in renders.items():
                seed = int(ident) * 100 + int(i) * 10 + int(j)
                yaw_i = yaw + (n_ident - 1) * 3.0
                res, face, albedo, kp, visible = render_face(yaw_i, pitch, seed)
                stem = f"{ident}_{{}}_{i}_{j}"
                mask_png = np.where(res.mask, 255, 0).astype(np.uint8)
                files = {
                    "face": _png(face),
                    "normal": _png(encode_sfsnet_normals(res.normals, res.mask)),
                    "mask": _png(np.repeat(mask_png[..., None], 3, -1)),
                    "albedo": _png(np.where(res.mask[..., None], albedo, 0).astype(np.uint8)),
                    "depth": _png(np.where(res.mask, 255 - (res.depth - 3) * 100, 0)
                                  .clip(0, 255).astype(np.uint8)),
                }
                if (i, j) == ("3", "2"):
                    del files["normal"]
                for modality, data in files.items():
                    (root / folder / (stem.format(modality) + ".png")).write_bytes(data)
                light = np.random.default_rng(seed).normal(0, 0.3, 27)
                (root / folder / (stem.format("light") + ".txt")).write_text(
                    "\t".join(f"{x:.6f}" for x in light) + "\n")
                rel = f"DATA_pose_15/{folder}/{stem.format('face')}.png"
                if rel.endswith("000022_face_2_3.png"):
                    continue  # not annotated: the builder must fall back to the mask
                rec = landmarks_file.LandmarkRecord(kp, visible, (SIZE, SIZE), True)
                if (i, j) == ("1", "1"):
                    region = face_region.face_region_mask(kp, visible, SIZE, SIZE)
                    frontal_poses.append(
                        head_pose.pose_from_normals(res.normals, res.mask & region))
                if rel.endswith("000003_face_2_3.png"):
                    rec = landmarks_file.empty_record(SIZE, SIZE)
                records[rel] = rec
    landmarks_file.write_landmarks(OUT / landmarks_file.LANDMARKS_FILENAME, records, "synthetic")
    # Target histogram: the estimator's output on a target that has exactly the poses of the
    # near-frontal renders, so `frontal` must keep those 5 and drop the side views.
    hist = head_pose.PoseHistogram()
    for pose in frontal_poses:
        hist.add(*pose)
    (OUT / head_pose.TARGET_HISTOGRAM_FILENAME).write_text(json.dumps(hist.to_dict()) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
