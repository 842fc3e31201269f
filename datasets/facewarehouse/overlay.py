r"""Figure that overlays the rendered normals and masks on FaceWarehouse photos.

    python -m tada_datasets.facewarehouse.overlay --manual_dir DIR --out overlay.png \
        [--example Tester_1/0 --example Tester_42/7 | --num 4]

One row per image: (1) the photo with the .land points (red) and, in "landmarks" camera mode,
the reprojected landmark vertices (green crosses); (2) the rendered normals as RGB
((n + 1) / 2, project frame); (3) the photo blended with the normals inside the rendered mask,
with the mask outline (yellow) and the landmark face region (cyan). If the normals do not sit
on the face, fix camera.json / landmark_vertex_indices.txt before building.
"""

from __future__ import annotations

import argparse

import numpy as np
from etils import epath

from . import facewarehouse_dataset_builder as fw
from . import mesh_io, mesh_render


def _outline(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(bool)
    inner = m.copy()
    inner[1:-1, 1:-1] = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return m & ~inner


def overlay_figure(manual: epath.Path, selection: list[tuple[str, int]] | None, num: int,
                   out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    examples = fw.list_examples(manual)
    if selection:
        wanted = set(selection)
        examples = [e for e in examples if (e[0], e[2]) in wanted]
        missing = wanted - {(e[0], e[2]) for e in examples}
        if missing:
            raise FileNotFoundError(f"Not found under {manual}: {sorted(missing)}")
    else:
        step = max(1, len(examples) // num)
        examples = examples[::step][:num]
    camera = fw.load_camera_config(manual)
    landmarks, landmarks_path = fw.read_landmarks_if_present(manual)
    fig, axes = plt.subplots(len(examples), 3, figsize=(12, 3.2 * len(examples)), squeeze=False)
    for row, (subject, folder, pose, rel) in zip(axes, examples):
        ex = fw.make_example(subject, folder, pose, rel, camera, landmarks, landmarks_path)
        img = ex["image"].astype(np.float32) / 255
        h, w = img.shape[:2]
        colour = np.where(ex["render_mask"][..., None], (ex["normals"] + 1) / 2, 0)
        # normals_mask may be the smaller face region; show the full rendered normals.
        if not np.array_equal(ex["render_mask"], ex["normals_mask"]):
            full = fw.make_example(subject, folder, pose, rel, camera, {}, None)
            colour = np.where(full["render_mask"][..., None], (full["normals"] + 1) / 2, 0)
        blend = np.where(ex["render_mask"][..., None], 0.5 * img + 0.5 * colour, img)
        blend[_outline(ex["render_mask"])] = (1, 1, 0)
        if not np.array_equal(ex["render_mask"], ex["normals_mask"]):
            blend[_outline(ex["normals_mask"])] = (0, 1, 1)
        land = ex["land_points"] * [w, h]
        row[0].imshow(img)
        row[0].scatter(land[:, 0], land[:, 1], s=6, c="r")
        if camera.pose == "landmarks":
            base = folder / "TrainingPose" / f"pose_{pose}"
            verts, _ = mesh_io.parse_obj(base.with_suffix(".obj").read_text(),
                                         source=base.with_suffix(".obj"))
            idx = np.asarray(camera.landmark_vertex_indices)
            pose34 = ex["mesh_to_camera"].astype(np.float64)
            px = mesh_render.project_points(verts[idx[idx >= 0]], pose34[:, :3], pose34[:, 3],
                                            camera.intrinsics(h, w)) + 0.5
            row[0].scatter(px[:, 0], px[:, 1], s=12, c="lime", marker="x")
        kp = ex["keypoints"][ex["keypoints_visible"]]
        row[0].scatter(kp[:, 0] * w, kp[:, 1] * h, s=4, c="cyan")
        row[0].set_title(f"{ex['id']}: photo, .land (red), anchors (cyan)", fontsize=8)
        row[1].imshow(colour)
        row[1].set_title("rendered normals (n+1)/2", fontsize=8)
        row[2].imshow(np.clip(blend, 0, 1))
        row[2].set_title("blend; mesh mask (yellow), face region (cyan)", fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manual_dir", required=True)
    parser.add_argument("--out", default="facewarehouse_overlay.png")
    parser.add_argument("--example", action="append", default=[],
                        help="Tester_<k>/<pose index>, repeatable")
    parser.add_argument("--num", type=int, default=4, help="without --example: spread over all")
    args = parser.parse_args(argv)
    selection = [(e.split("/")[0], int(e.split("/")[1])) for e in args.example]
    overlay_figure(epath.Path(args.manual_dir), selection, args.num, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
