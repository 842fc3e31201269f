"""Tests for the FaceWarehouse builder, its mesh renderer, camera estimation and file parsers."""

import json
import shutil
from typing import ClassVar

import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath

from . import facewarehouse_dataset_builder as fw
from . import mesh_io, mesh_render

try:
    from ..face_landmarks import synthetic_face
except ImportError:  # `datasets/` imported as a top-level folder (no parent package).
    from tada_datasets.face_landmarks import synthetic_face

DUMMY = epath.Path(fw.__file__).parent / "dummy_data"


class FacewarehouseTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = fw.Builder
    SPLITS: ClassVar = {"train": 6, "validation": 2, "test": 2}  # 5 subjects x 2 poses, split 3/1/1
    SKIP_CHECKSUMS = True


# --- Renderer against analytic geometry ----------------------------------------------------


def _uv_sphere(n_lat=64, n_lon=128):
    th = np.linspace(0, np.pi, n_lat + 1)
    ph = np.linspace(0, 2 * np.pi, n_lon + 1)[:-1]
    t, p = np.meshgrid(th, ph, indexing="ij")
    v = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], -1).reshape(-1, 3)
    idx = np.arange((n_lat + 1) * n_lon).reshape(n_lat + 1, n_lon)
    nxt = np.roll(idx, -1, axis=1)
    quads = np.stack([idx[:-1], idx[1:], nxt[1:], nxt[:-1]], -1).reshape(-1, 4)
    return v, np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])


def _analytic_ellipsoid(radii, rot, t, k, h, w):
    """Ray-cast an ellipsoid x^T A x = 1 (head frame, A = diag(1/r^2)) seen through R, t."""
    cols, rows = np.meshgrid(np.arange(w), np.arange(h))
    d = np.stack([(cols - k.cx) / k.fx, (rows - k.cy) / k.fy, np.ones((h, w))], -1)
    # Into the ellipsoid frame: origin o = -R^T t, direction R^T d.
    o = -rot.T @ t
    dl = d @ rot  # (R^T d) for row vectors
    a_inv = 1.0 / np.square(radii)
    qa = (dl * dl * a_inv).sum(-1)
    qb = 2 * (dl * o * a_inv).sum(-1)
    qc = (o * o * a_inv).sum() - 1
    disc = qb**2 - 4 * qa * qc
    mask = disc > 0
    s = (-qb - np.sqrt(np.maximum(disc, 0))) / (2 * qa)
    p = o + dl * s[..., None]
    n_head = p * a_inv
    n_cam = n_head @ rot.T
    n_cam /= np.linalg.norm(n_cam, axis=-1, keepdims=True)
    normals = np.stack([n_cam[..., 0], -n_cam[..., 1], -n_cam[..., 2]], -1)  # project frame
    return normals, mask, disc / np.maximum(disc.max(), 1e-12)


def _check_render(verts, faces, radii, rot, t, k, h, w, max_deg=1.0, min_iou=0.98):
    res = mesh_render.render_normals(verts, faces, rot, t, k, h, w)
    normals, mask, disc = _analytic_ellipsoid(np.asarray(radii), rot, t, k, h, w)
    iou = (mask & res.mask).sum() / (mask | res.mask).sum()
    inner = mask & res.mask & (disc > 0.05)  # away from the silhouette
    cos = np.clip((normals * res.normals).sum(-1)[inner], -1, 1)
    assert iou > min_iou
    assert np.degrees(np.arccos(cos)).max() < max_deg
    assert (res.normals[res.mask][:, 2] > -0.05).all()
    return res


def test_render_sphere_matches_analytic():
    v, f = _uv_sphere()
    k = mesh_render.Intrinsics(500.0, 500.0, 159.5, 119.5)
    _check_render(v, f, (1, 1, 1), np.eye(3), np.array([0.1, -0.2, 5.0]), k, 240, 320)


def test_render_rotated_ellipsoid_matches_analytic():
    radii = (0.75, 1.0, 0.8)
    verts, quads = synthetic_face.ellipsoid_mesh(radii, n_lat=64, n_lon=128)
    faces = synthetic_face.quads_to_triangles(quads)
    rot = synthetic_face.HEAD_TO_OPENCV @ synthetic_face.rotation_yaw_pitch(30, -10)
    k = mesh_render.Intrinsics(400.0, 420.0, 150.0, 125.0)
    res = _check_render(verts, faces, radii, rot, np.array([0.2, 0.1, 4.0]), k, 240, 320)
    assert not res.flipped_winding  # outward-wound quads need no flip


def test_winding_is_detected_and_flipped():
    v, f = _uv_sphere(16, 32)
    k = mesh_render.Intrinsics(300.0, 300.0, 63.5, 63.5)
    a = mesh_render.render_normals(v, f, np.eye(3), np.array([0, 0, 5.0]), k, 128, 128)
    b = mesh_render.render_normals(v, f[:, ::-1], np.eye(3), np.array([0, 0, 5.0]), k, 128, 128)
    assert a.flipped_winding != b.flipped_winding
    np.testing.assert_allclose(a.normals, b.normals, atol=1e-6)


def test_estimate_pose_recovers_transform():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(74, 3)) * [0.6, 0.8, 0.3]
    rot = synthetic_face.HEAD_TO_OPENCV @ synthetic_face.rotation_yaw_pitch(25, 10)
    t = np.array([0.3, -0.1, 6.0])
    k = mesh_render.Intrinsics(640, 640, 320, 240)
    px = mesh_render.project_points(pts, rot, t, k) + rng.normal(0, 0.2, (74, 2))
    r_est, t_est, rms = mesh_render.estimate_pose(pts, px, k)
    assert rms < 0.5
    np.testing.assert_allclose(r_est, rot, atol=5e-3)
    np.testing.assert_allclose(t_est, t, atol=0.05)


# --- File formats and bad inputs -------------------------------------------------------------


def test_land_y_is_flipped_to_top_left_origin():
    pts = mesh_io.parse_land("3\n0.25 0.9\n0.5 0.5\n0.75 0.1\n")
    np.testing.assert_allclose(pts, [[0.25, 0.1], [0.5, 0.5], [0.75, 0.9]])
    # A point near the bottom of the .land frame (y small) is low in the image (y large).
    assert pts[2, 1] > pts[0, 1]


def test_land_count_mismatch_names_file():
    with pytest.raises(ValueError, match=r"pose_3\.land.*says 4 points but 2 follow"):
        mesh_io.parse_land("4\n0.1 0.2\n0.3 0.4\n", source="Tester_1/pose_3.land")


def test_obj_quads_become_triangles():
    v, f = mesh_io.parse_obj("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nf 1/1 2/1 3/1 4/1\n")
    assert v.shape == (4, 3)
    np.testing.assert_array_equal(f, [[0, 1, 2], [0, 2, 3]])
    _, f = mesh_io.parse_obj("v 0 0 0\nv 1 0 0\nv 1 1 0\nf -3 -2 -1\n")
    np.testing.assert_array_equal(f, [[0, 1, 2]])


@pytest.mark.parametrize("text, message", [
    ("", "no vertices"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces"),
    ("v 0 0 0\nv 1 0 zz\n", "bad vertex"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "exceeds"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", "< 3 vertices"),
])
def test_bad_obj_names_file(text, message):
    with pytest.raises(ValueError, match=rf"pose_7\.obj.*{message}"):
        mesh_io.parse_obj(text, source="Tester_9/TrainingPose/pose_7.obj")


def _copy_dummy(tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(DUMMY, manual)
    return epath.Path(manual)


def test_missing_modality_names_file(tmp_path):
    manual = _copy_dummy(tmp_path)
    obj = manual / "FaceWarehouse_Data_0/Tester_2/TrainingPose/pose_1.obj"
    obj.unlink()
    builder = fw.Builder(data_dir=str(tmp_path / "data"))
    with pytest.raises(Exception, match=r"Tester_2/TrainingPose/pose_1\.obj"):
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))


def test_empty_manual_dir_gives_instructions(tmp_path):
    manual = tmp_path / "manual"
    (manual / "something").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="Tester_") as err:
        fw.list_examples(epath.Path(manual))
    assert "kunzhou.net" in str(err.value)


def test_land_and_vertex_list_count_mismatch_names_file(tmp_path):
    manual = _copy_dummy(tmp_path)
    (manual / fw.VERTEX_INDEX_FILENAME).write_text("1\n2\n3\n4\n5\n6\n7\n")
    cam = fw.load_camera_config(manual)
    subject, folder, pose, rel = fw.list_examples(manual)[0]
    with pytest.raises(ValueError, match=r"pose_0\.land: 74 points but .* 7 entries"):
        fw.make_example(subject, folder, pose, rel, cam, {}, None)


def test_fixed_camera_from_json_and_landmark_camera_agree(tmp_path):
    manual = _copy_dummy(tmp_path)
    subject, folder, pose, rel = fw.list_examples(manual)[0]
    est = fw.make_example(subject, folder, pose, rel, fw.load_camera_config(manual), {}, None)
    pose_34 = est["mesh_to_camera"].astype(np.float64)
    (manual / fw.CAMERA_FILENAME).write_text(json.dumps({
        "pose": "fixed", "fx": 160.0, "cx": 80.0, "cy": 60.0,
        "rotation": pose_34[:, :3].tolist(), "translation": pose_34[:, 3].tolist()}))
    cam = fw.load_camera_config(manual)
    assert cam.pose == "fixed" and cam.intrinsics(120, 160).fy == 160.0
    fixed = fw.make_example(subject, folder, pose, rel, cam, {}, None)
    np.testing.assert_array_equal(fixed["normals_mask"], est["normals_mask"])
    (manual / fw.CAMERA_FILENAME).write_text(json.dumps({"pose": "fixed", "focal": 3}))
    with pytest.raises(ValueError, match=r"camera\.json: unknown keys \['focal'\]"):
        fw.load_camera_config(manual)


def test_rendered_normals_match_the_fixture_geometry():
    """Normals rendered with the estimated camera equal the ones used to draw the photo."""
    from . import make_dummy_data as mk

    manual = DUMMY
    subject, folder, pose, rel = fw.list_examples(manual)[1]  # Tester_1, pose_1
    ex = fw.make_example(subject, folder, pose, rel, fw.load_camera_config(manual), {}, None)
    yaw, pitch = mk.POSES[pose]
    rot = synthetic_face.HEAD_TO_OPENCV @ synthetic_face.rotation_yaw_pitch(yaw + 1, pitch)
    t = np.array([0.05 * (1 - 3), 0.0, mk.DISTANCE])
    radii = np.array(synthetic_face.HEAD_RADII) * (1 + 0.03 * (1 - 3))
    k = fw.CameraConfig().intrinsics(mk.HEIGHT, mk.WIDTH)
    normals, mask, disc = _analytic_ellipsoid(radii, rot, t, k, mk.HEIGHT, mk.WIDTH)
    inner = mask & ex["render_mask"] & (disc > 0.1)
    cos = np.clip((normals * ex["normals"]).sum(-1)[inner], -1, 1)
    assert np.degrees(np.arccos(cos)).mean() < 3.0  # coarse fixture mesh (18 x 28 quads)
    iou = (mask & ex["render_mask"]).sum() / (mask | ex["render_mask"]).sum()
    assert iou > 0.95


def test_overlay_figure_and_pose_histogram_cli(tmp_path):
    from . import overlay, pose_histogram

    out = tmp_path / "overlay.png"
    overlay.main(["--manual_dir", str(DUMMY), "--out", str(out), "--example", "Tester_1/1"])
    assert out.read_bytes()[:4] == b"\x89PNG"
    hist_path = tmp_path / "hist.json"
    pose_histogram.main(["--manual_dir", str(DUMMY), "--out", str(hist_path)])
    hist = json.loads(hist_path.read_text())
    assert hist["total"] == 10 and hist["estimator"] == "mean_normal_v1"


# --- Corrupt photos, empty renders, empty splits (full builds on a copy of dummy_data) -------


def _build(tmp_path, manual):
    builder = fw.Builder(data_dir=str(tmp_path / "data"))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    return builder


def _subjects_by_split(manual):
    split_of = fw.splits.split_groups(s for s, _, _, _ in fw.list_examples(manual))
    out = {"train": [], "validation": [], "test": []}
    for subject, name in sorted(split_of.items()):
        out[name].append(subject)
    return out


def _pose_file(manual, subject, pose, suffix):
    return manual / "FaceWarehouse_Data_0" / subject / "TrainingPose" / f"pose_{pose}{suffix}"


def _degenerate_faces(obj_path):
    """Keeps the vertices (so the camera is still estimated) but makes every face zero-area."""
    lines = obj_path.read_text().splitlines()
    obj_path.write_text("\n".join(ln if not ln.startswith("f ") else "f 1 1 1" for ln in lines))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_photo_names_the_file(tmp_path, fmt):
    manual = _copy_dummy(tmp_path)
    path = _pose_file(manual, _subjects_by_split(manual)["train"][0], 1, ".png")
    if fmt == "JPEG":  # A JPEG saved under the release's .png name is still readable...
        img = tfds.core.lazy_imports.PIL_Image.open(str(path)).convert("RGB")
        img.save(str(path), format="JPEG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # ...but not once truncated.
    with pytest.raises(ValueError, match="cannot decode this image file") as err:
        _build(tmp_path, manual)
    msg = str(err.value)
    assert str(path) in msg and "expected a photo" in msg and "BytesIO" not in msg


def test_empty_render_is_skipped_and_counted(tmp_path, caplog):
    manual = _copy_dummy(tmp_path)
    obj = _pose_file(manual, _subjects_by_split(manual)["train"][0], 1, ".obj")
    _degenerate_faces(obj)
    builder = _build(tmp_path, manual)
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
        "train": 5, "validation": 2, "test": 2}
    assert builder.info.metadata["skipped_invalid_normals"] == {
        "train": 1, "validation": 0, "test": 0}
    assert any("skipped 1 of 6" in r.getMessage() and str(obj) in r.getMessage()
               for r in caplog.records)


def test_split_without_any_valid_normal_fails_naming_split_and_dir(tmp_path):
    manual = _copy_dummy(tmp_path)
    for subject in _subjects_by_split(manual)["test"]:
        for pose in (0, 1):
            _degenerate_faces(_pose_file(manual, subject, pose, ".obj"))
    with pytest.raises(ValueError, match="split 'test' has no valid normal pixel") as err:
        _build(tmp_path, manual)
    assert f"under {manual}" in str(err.value) and fw.CAMERA_FILENAME in str(err.value)


def test_too_few_subjects_leave_the_empty_split_out(tmp_path, caplog):
    manual = _copy_dummy(tmp_path)
    for k in (4, 5):  # Three subjects: the 70/15/15 cut gives train 2, validation 0, test 1.
        shutil.rmtree(manual / "FaceWarehouse_Data_0" / f"Tester_{k}")
    builder = _build(tmp_path, manual)
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 4, "test": 2}
    assert any("split 'validation' left out" in r.getMessage() and "3 Tester_<k>" in
               r.getMessage() for r in caplog.records)


if __name__ == "__main__":
    tfds.testing.test_main()
