"""Writes `dummy_data/`, a tiny FaceWarehouse-layout fixture built from an ellipsoid head.

    python -m tada_datasets.facewarehouse.make_dummy_data

Deterministic. Layout as the release: FaceWarehouse_Data_0/Tester_<k>/TrainingPose/
pose_<j>.{png,land,obj} (5 subjects x 2 poses instead of 150 x 20; 160x120 photos instead of
640x480; quad-faced OBJ with v/vt lines; 74-point .land with y from the bottom), plus
landmark_vertex_indices.txt (camera estimated from the .land points) and landmarks_68.npz
(annotator output; Tester_5/pose_1 deliberately has no entry).
"""

from __future__ import annotations

import io
import pathlib

import numpy as np
from PIL import Image

from . import facewarehouse_dataset_builder as fw
from . import mesh_io, mesh_render

try:
    from ..face_landmarks import landmarks_file, synthetic_face
except ImportError:  # `datasets/` imported as a top-level folder (no parent package).
    from tada_datasets.face_landmarks import landmarks_file, synthetic_face

WIDTH, HEIGHT = 160, 120
DISTANCE = 5.0
POSES = {0: (0.0, 0.0), 1: (20.0, -8.0)}  # pose index -> (yaw, pitch) in degrees
SUBJECTS = (1, 2, 3, 4, 5)
NUM_LAND = 74
OUT = pathlib.Path(__file__).resolve().parent / "dummy_data"


def head_mesh(subject: int):
    """Ellipsoid head in a head frame (y up, z out of the face), slightly per-subject."""
    scale = np.array([1.0, 1.0, 1.0]) + 0.03 * (subject - 3)
    verts, quads = synthetic_face.ellipsoid_mesh(
        radii=tuple(np.array(synthetic_face.HEAD_RADII) * scale), n_lat=18, n_lon=28)
    return verts, quads


def land_vertex_indices(verts: np.ndarray) -> np.ndarray:
    """74 distinct vertices on the front of the head (deterministic)."""
    front = np.flatnonzero(verts[:, 2] > 0.2)
    rng = np.random.default_rng(74)
    return np.sort(rng.choice(front, NUM_LAND, replace=False))


def obj_text(verts: np.ndarray, quads: np.ndarray) -> str:
    lines = [f"v {x:.4f} {y:.4f} {z:.4f}" for x, y, z in verts]
    uv = (verts[:, :2] - verts[:, :2].min(0)) / np.ptp(verts[:, :2], axis=0)
    lines += [f"vt {u:.3f} {v:.3f}" for u, v in uv]
    lines += ["f " + " ".join(f"{i + 1}/{i + 1}" for i in q) for q in quads]
    return "\n".join(lines) + "\n"


def main() -> None:
    records = {}
    idx = None
    for subject in SUBJECTS:
        verts, quads = head_mesh(subject)
        tris = synthetic_face.quads_to_triangles(quads)
        if idx is None:
            idx = land_vertex_indices(verts)
        folder = OUT / "FaceWarehouse_Data_0" / f"Tester_{subject}" / "TrainingPose"
        folder.mkdir(parents=True, exist_ok=True)
        for pose, (yaw, pitch) in POSES.items():
            rng = np.random.default_rng(subject * 10 + pose)
            rot = synthetic_face.HEAD_TO_OPENCV @ synthetic_face.rotation_yaw_pitch(
                yaw + subject, pitch)
            t = np.array([0.05 * (subject - 3), 0.0, DISTANCE])
            cam = fw.CameraConfig()
            k = cam.intrinsics(HEIGHT, WIDTH)
            res = mesh_render.render_normals(verts, tris, rot, t, k, HEIGHT, WIDTH)
            light = np.array([0.2, 0.4, 0.9]) / np.linalg.norm([0.2, 0.4, 0.9])
            shade = np.clip(res.normals @ light, 0.05, 1.0)
            skin = np.array([210, 160, 130]) * (0.9 + 0.02 * subject)
            photo = np.where(res.mask[..., None], skin * shade[..., None], 60 + 20 * pose)
            photo = np.clip(photo, 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(photo).save(buf, format="PNG", optimize=True)
            (folder / f"pose_{pose}.png").write_bytes(buf.getvalue())
            (folder / f"pose_{pose}.obj").write_text(obj_text(verts, quads))
            # .land: the chosen vertices projected, +-0.3 px noise, normalised, y from bottom.
            px = mesh_render.project_points(verts[idx], rot, t, k) + rng.normal(0, 0.3, (74, 2))
            land = (px + 0.5) / np.array([WIDTH, HEIGHT])
            (folder / f"pose_{pose}.land").write_text(mesh_io.format_land(land))
            # 68 anchor landmarks from the face template on the same head and camera.
            pts3 = synthetic_face.lift_to_ellipsoid(synthetic_face.template_68_2d())
            pc = pts3 @ rot.T + t
            uv = (mesh_render.project_points(pts3, rot, t, k) + 0.5) / np.array([WIDTH, HEIGHT])
            depth = (pc[:, 2] - pc[:, 2].mean()) * k.fx / pc[:, 2].mean() / WIDTH
            kp = np.concatenate([uv, depth[:, None]], 1).astype(np.float32)
            vis = ((uv >= 0) & (uv <= 1)).all(1)
            rel = f"FaceWarehouse_Data_0/Tester_{subject}/TrainingPose/pose_{pose}.png"
            if (subject, pose) != (5, 1):
                records[rel] = landmarks_file.LandmarkRecord(kp, vis, (HEIGHT, WIDTH), True)
    (OUT / fw.VERTEX_INDEX_FILENAME).write_text("\n".join(str(i) for i in idx) + "\n")
    landmarks_file.write_landmarks(OUT / landmarks_file.LANDMARKS_FILENAME, records, "synthetic")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
