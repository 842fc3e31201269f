"""Times `mesh_render.render_normals` on a FaceWarehouse-sized mesh at 640x480.

    python -m tada_datasets.facewarehouse.benchmark_render [--repeats 10]

The mesh is an ellipsoid head with 11,615 vertices / 23,000 triangles (FaceWarehouse meshes
have 11,510 vertices, quads split into about 23,000 triangles), covering about 63k pixels.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from . import mesh_render

try:
    from ..face_landmarks import synthetic_face
except ImportError:  # `datasets/` imported as a top-level folder (no parent package).
    from tada_datasets.face_landmarks import synthetic_face


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    verts, quads = synthetic_face.ellipsoid_mesh(n_lat=100, n_lon=115)
    faces = synthetic_face.quads_to_triangles(quads)
    k = mesh_render.Intrinsics(640.0, 640.0, 320.0, 240.0)
    rot = synthetic_face.HEAD_TO_OPENCV @ synthetic_face.rotation_yaw_pitch(20, 5)
    t = np.array([0.0, 0.0, 4.0])
    mesh_render.render_normals(verts, faces, rot, t, k, 480, 640)  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        res = mesh_render.render_normals(verts, faces, rot, t, k, 480, 640)
        times.append(time.perf_counter() - start)
    print(f"{len(verts)} vertices, {len(faces)} triangles, {int(res.mask.sum())} pixels covered; "
          f"640x480 render: median {1000 * np.median(times):.0f} ms, "
          f"min {1000 * min(times):.0f} ms over {args.repeats} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
