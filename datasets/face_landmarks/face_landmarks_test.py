"""Tests of the landmark file format, face-region mask, pose histograms, splits, 468->68 table.

No MediaPipe needed (the annotator CLI runs with a stand-in detector); the pose test renders
with facewarehouse.mesh_render, whose package imports TensorFlow.
"""

import numpy as np
import pytest

from . import annotate, face_region, head_pose, landmarks_file, mediapipe_68, splits, synthetic_face


def _record(seed=0, h=40, w=50):
    rng = np.random.default_rng(seed)
    kp = rng.random((68, 3)).astype(np.float32)
    vis = rng.random(68) > 0.2
    return landmarks_file.LandmarkRecord(kp, vis, (h, w), True)


def test_landmark_file_round_trip_is_byte_stable(tmp_path):
    recs = {"a/b.png": _record(0), "c.png": landmarks_file.empty_record(10, 20)}
    landmarks_file.write_landmarks(tmp_path / "x.npz", recs, "test")
    landmarks_file.write_landmarks(tmp_path / "y.npz", recs, "test")
    assert (tmp_path / "x.npz").read_bytes() == (tmp_path / "y.npz").read_bytes()
    back = landmarks_file.read_landmarks(tmp_path / "x.npz")
    assert sorted(back) == ["a/b.png", "c.png"]
    np.testing.assert_array_equal(back["a/b.png"].keypoints, recs["a/b.png"].keypoints)
    np.testing.assert_array_equal(back["a/b.png"].visible, recs["a/b.png"].visible)
    assert back["c.png"].image_size == (10, 20) and not back["c.png"].detected
    with open(tmp_path / "x.npz", "rb") as f:  # loads without pickles
        assert "paths" in np.load(f, allow_pickle=False).files


def test_landmark_file_mismatched_counts_name_the_file(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, paths=np.array(["a.png", "b.png"]), keypoints=np.zeros((1, 68, 3)),
             visible=np.zeros((2, 68), bool), image_size=np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match=r"bad\.npz.*expected \(2, 68, 3\)"):
        landmarks_file.read_landmarks(path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.npz"):
        landmarks_file.read_landmarks(tmp_path / "junk.npz")


def test_record_size_check_names_the_file():
    with pytest.raises(ValueError, match=r"lm\.npz.*'x\.png'.*\(40, 50\)"):
        landmarks_file.check_record_matches_image(_record(), "x.png", 41, 50, "lm.npz")


def test_face_region_is_the_hull_of_visible_points():
    kp = np.array([[0.2, 0.2, 0], [0.8, 0.2, 0], [0.8, 0.8, 0], [0.2, 0.8, 0], [0.5, 0.5, 0],
                   [0.99, 0.99, 0]])
    vis = np.array([True, True, True, True, True, False])
    mask = face_region.face_region_mask(kp, vis, 100, 100)
    assert abs(mask.sum() - 60 * 60) <= 2 * 60 + 1
    assert mask[50, 50] and not mask[90, 90] and not mask[10, 50]
    assert face_region.face_region_mask(kp, np.zeros(6, bool), 10, 10) is None


def test_pose_from_normals_sign_and_monotonicity():
    """Turning an ellipsoid head right/up turns the estimate right/up, monotonically."""
    try:
        from ..facewarehouse import mesh_render
    except ImportError:  # `datasets/` imported as a top-level folder (no parent package).
        from tada_datasets.facewarehouse import mesh_render

    verts, quads = synthetic_face.ellipsoid_mesh(n_lat=24, n_lon=32)
    tris = synthetic_face.quads_to_triangles(quads)
    k = mesh_render.Intrinsics(120, 120, 31.5, 31.5)
    front = synthetic_face.lift_to_ellipsoid(synthetic_face.template_68_2d())

    def estimate(yaw, pitch):
        rot = synthetic_face.HEAD_TO_OPENCV @ synthetic_face.rotation_yaw_pitch(yaw, pitch)
        t = np.array([0, 0, 4.0])
        res = mesh_render.render_normals(verts, tris, rot, t, k, 64, 64)
        uv = (mesh_render.project_points(front, rot, t, k) + 0.5) / 64
        region = face_region.face_region_mask(uv, np.ones(68, bool), 64, 64)
        return head_pose.pose_from_normals(res.normals, res.mask & region)

    yaws = [estimate(y, 0)[0] for y in (-40, -20, 0, 20, 40)]
    assert np.all(np.diff(yaws) > 3) and abs(yaws[2]) < 2
    pitches = [estimate(0, p)[1] for p in (-20, 0, 20)]
    assert pitches[0] < pitches[1] - 3 < pitches[2] - 6


def test_histogram_matching_selects_the_target_distribution():
    target = head_pose.PoseHistogram()
    source = head_pose.PoseHistogram()
    for _ in range(10):
        target.add(2.0, 1.0)
    poses = {f"s{i}": (2.0 if i % 4 == 0 else 35.0, 1.0) for i in range(400)}
    for p in poses.values():
        source.add(*p)
    keep = head_pose.acceptance_table(target, source)
    kept = [k for k, p in poses.items()
            if head_pose.hashed_uniform(k) < keep[source.bin_of(*p)]]
    assert kept and all(poses[k][0] == 2.0 for k in kept) and len(kept) == 100
    d = target.to_dict()
    assert head_pose.PoseHistogram.from_dict(d).counts.sum() == 10 and "yaw" in (
        target.marginals_text())


def test_split_by_group_is_deterministic_and_disjoint():
    groups = [f"{i:06d}" for i in range(100)]
    a = splits.split_groups(groups)
    b = splits.split_groups(reversed(groups))
    assert a == b
    counts = {s: sum(v == s for v in a.values()) for s in ("train", "validation", "test")}
    assert counts == {"train": 70, "validation": 15, "test": 15}


def test_mediapipe_table_is_well_formed():
    flat = [i for row in mediapipe_68.MEDIAPIPE_TO_68 for i in row]
    assert len(mediapipe_68.MEDIAPIPE_TO_68) == 68
    assert all(0 <= i < 468 for i in flat)
    pts = np.arange(468 * 2, dtype=float).reshape(468, 2)
    out = mediapipe_68.mediapipe_to_68(pts)
    assert out.shape == (68, 2)
    np.testing.assert_allclose(out[30], pts[4])  # nose tip
    np.testing.assert_allclose(out[27], (pts[168] + pts[6]) / 2)


def test_annotate_cli_with_stand_in_detector(tmp_path, monkeypatch):
    from PIL import Image

    (tmp_path / "a").mkdir()
    Image.new("RGB", (30, 20)).save(tmp_path / "a" / "x_face_1_1.png")
    Image.new("RGB", (30, 20)).save(tmp_path / "a" / "x_normal_1_1.png")
    Image.new("RGB", (30, 20), (255, 0, 0)).save(tmp_path / "a" / "y_face_1_1.png")

    def fake_backend():
        def detect(image):
            if image[0, 0, 0] == 255:
                return None
            kp = np.full((68, 3), 0.5, np.float32)
            kp[0, 0] = 1.5  # outside the image -> invisible
            return kp
        return detect, lambda: None

    monkeypatch.setattr(annotate, "mediapipe_detector", fake_backend)
    out = tmp_path / "lm.npz"
    annotate.main(["--images_dir", str(tmp_path), "--pattern", "*/*_face_*.png",
                   "--out", str(out)])
    recs = landmarks_file.read_landmarks(out)
    assert sorted(recs) == ["a/x_face_1_1.png", "a/y_face_1_1.png"]
    x, y = recs["a/x_face_1_1.png"], recs["a/y_face_1_1.png"]
    assert x.detected and x.image_size == (20, 30) and x.visible.sum() == 67
    assert not y.detected and not y.visible.any()
