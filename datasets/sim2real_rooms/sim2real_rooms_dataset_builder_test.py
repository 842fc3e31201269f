"""Tests of the sim2real_rooms generator (geometry, labels, domains) and its TFDS builder."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import pytest
import tensorflow_datasets as tfds

from . import generator as g
from . import sim2real_rooms_dataset_builder as builder_module

SPEC = g.GenerationSpec(image_size=64, seed=3)


def _example(split: str, index: int, spec: g.GenerationSpec = SPEC, **kw):
    return g.generate_example(spec, split, index, **kw)


def _camera_rays(fov_deg: float, size: int) -> np.ndarray:
    """Unit viewing rays (camera frame) from the documented pinhole convention."""
    f = 0.5 * size / np.tan(0.5 * np.radians(fov_deg))
    c = (np.arange(size) + 0.5 - 0.5 * size) / f
    x, y = np.meshgrid(c, -c)
    d = np.stack([x, y, -np.ones_like(x)], -1)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))


class Sim2RealRoomsBuilderTest(tfds.testing.DatasetBuilderTestCase):
    """Builds the `tiny` config end to end (nothing is downloaded)."""

    DATASET_CLASS = builder_module.Builder
    BUILDER_CONFIG_NAMES_TO_TEST: ClassVar[list[str]] = ["tiny"]
    SPLITS: ClassVar[dict[str, int]] = {
        "source_train": 4,
        "source_val": 2,
        "target_train": 4,
        "target_val": 2,
        "target_test": 3,
    }
    SKIP_CHECKSUMS = True


def test_configs_and_constants():
    configs = {c.name: c for c in builder_module.Builder.BUILDER_CONFIGS}
    assert set(configs) == {"default", "matched", "tiny", "anchors_25", "anchors_100",
                            "clean_anchors"}
    assert configs["matched"].match_pose and not configs["default"].match_pose
    # Anchor ablations differ from default only in the target anchor labels.
    fields = ("image_size", "seed", "match_pose", "num_source_train", "num_target_train",
              "num_target_test")
    for name, (count, noisy) in {"anchors_25": (25, True), "anchors_100": (100, True),
                                 "clean_anchors": (None, False)}.items():
        c = configs[name]
        assert (c.target_anchor_count, c.noisy_anchor) == (count, noisy)
        assert all(getattr(c, f) == getattr(configs["default"], f) for f in fields)
    assert configs["default"].target_anchor_count is None  # all target_train images
    custom = builder_module.make_config("x", image_size=48, num_target_train=10, seed=5)
    assert (custom.image_size, custom.num_examples("target_train"), custom.seed) == (48, 10, 5)
    assert g.CLASS_NAMES[0] == "void" and len(g.CLASS_NAMES) == g.NUM_CLASSES >= 12
    assert len(g.KEYPOINT_NAMES) == g.NUM_KEYPOINTS == 16


def test_determinism_same_bytes_and_index_matters():
    for split in ("source_train", "target_train"):
        a, b = _example(split, 2), _example(split, 2)
        assert a.keys() == b.keys()
        for key in a:
            va, vb = np.asarray(a[key]), np.asarray(b[key])
            assert va.dtype == vb.dtype and va.tobytes() == vb.tobytes(), (split, key)
        c = _example(split, 3)
        assert not np.array_equal(a["image"], c["image"])
        assert a["id"] != c["id"]
    # The seed matters too.
    other = _example("source_train", 2, dataclasses.replace(SPEC, seed=4))
    assert not np.array_equal(other["image"], _example("source_train", 2)["image"])


def test_feature_shapes_and_dtypes():
    ex = _example("target_test", 0)
    s, k = SPEC.image_size, g.NUM_KEYPOINTS
    expected = {
        "image": ((s, s, 3), np.uint8),
        "normals": ((s, s, 3), np.float32),
        "normals_mask": ((s, s), np.bool_),
        "segmentation": ((s, s, 1), np.uint8),
        "depth": ((s, s), np.float32),
        "keypoints": ((k, 3), np.float32),
        "keypoints_visible": ((k,), np.bool_),
    }
    for key, (shape, dtype) in expected.items():
        assert ex[key].shape == shape and ex[key].dtype == dtype, key
    assert ex["segmentation"].max() < g.NUM_CLASSES


@pytest.mark.parametrize("split", ["source_train", "target_test"])
def test_normals_unit_zero_invalid_and_camera_facing(split):
    for index in range(3):
        ex, scene = _example(split, index, return_scene=True)
        n, mask = ex["normals"], ex["normals_mask"]
        assert mask.mean() > 0.8
        np.testing.assert_allclose(np.linalg.norm(n[mask], axis=-1), 1.0, atol=1e-5)
        assert not n[~mask].any() and not ex["depth"][~mask].any()
        assert (ex["depth"][mask] > 0).all()
        rays = _camera_rays(scene.camera.fov_deg, SPEC.image_size)
        # Visible surfaces face the camera along their viewing ray ...
        assert ((n * -rays).sum(-1)[mask] > 0).all()
        # ... so n_z > 0 except near the image border (ceilings, grazing walls), where
        # n_z > -sin(angle between the ray and the optical axis).
        assert (n[..., 2][mask] > -np.sqrt(1 - rays[..., 2][mask] ** 2)).all()
        assert (n[..., 2][mask] > 0).mean() > 0.8
    if split == "target_test":
        masks = [_example(split, i)["normals_mask"] for i in range(6)]
        assert min(m.mean() for m in masks) < 1.0  # sensor-like holes exist in the target


@pytest.mark.parametrize(
    "pitch_deg, roll_deg", [(0.0, 0.0), (20.0, 10.0), (35.0, -15.0), (-10.0, 5.0)]
)
def test_floor_and_ceiling_normals_follow_camera_rotation(pitch_deg, roll_deg):
    rng = np.random.default_rng(0)
    scene = g.sample_scene(rng, g.SOURCE, g.SOURCE_POSE, 48)
    scene.floor_relief = None  # a flat floor: its normal is exactly world up
    # The room's own floor and ceiling planes only: no furniture in front of them and no
    # architecture (platforms and beams share their labels but not their normals).
    scene.parts = []
    theta, phi = np.radians(pitch_deg), np.radians(roll_deg)
    camera = g.make_camera(scene.camera.position, scene.camera.yaw, theta, phi, 70.0, 48)
    ex = g.render(scene, camera, g.SOURCE, rng)
    seg = ex["segmentation"][..., 0]
    up = np.array([np.sin(phi) * np.cos(theta), np.cos(phi) * np.cos(theta), np.sin(theta)])
    for label, expected in ((g.FLOOR, up), (g.CEILING, -up)):
        sel = (seg == label) & ex["normals_mask"]
        if label == g.CEILING and pitch_deg > 25:
            continue  # looking down: no ceiling in view
        assert sel.sum() > 20, g.CLASS_NAMES[label]
        assert _angle_deg(ex["normals"][sel], expected).max() < 0.5


def test_sphere_normals_match_depth_geometry():
    """Known pattern: a ball's normals equal (unprojected depth point - centre) / radius."""
    rng = np.random.default_rng(1)
    scene = g.sample_scene(rng, g.SOURCE, g.SOURCE_POSE, 64)
    cam = g.make_camera(
        scene.camera.position, scene.camera.yaw, np.radians(10), np.radians(5), 60.0, 64
    )
    centre = cam.position + cam.rotation @ np.array([0.3, -0.2, -2.0])
    scene.parts = [g.sphere_part(centre, 0.5, g.BALL, 3)]
    ex = g.render(scene, cam, g.SOURCE, rng)
    sel = ex["segmentation"][..., 0] == g.BALL
    assert sel.sum() > 200
    rays = _camera_rays(60.0, 64)
    points = rays / -rays[..., 2:] * ex["depth"][..., None]  # camera frame, z = -depth
    c_cam = cam.rotation.T @ (centre - cam.position)
    expected = (points - c_cam) / 0.5
    assert _angle_deg(ex["normals"][sel], expected[sel]).max() < 0.5


def test_keypoints_project_onto_matching_depth_and_surfaces():
    num_visible = 0
    for split in ("source_train", "target_test"):
        for index in range(8):
            ex, scene = _example(split, index, return_scene=True)
            kp, vis = ex["keypoints"], ex["keypoints_visible"]
            s = SPEC.image_size
            assert not kp[~vis].any()
            seg = np.pad(ex["segmentation"][..., 0], 1, mode="edge")
            room_corners = np.array(
                [
                    [x, y, z]
                    for x in scene.room[:2]
                    for y in (0, scene.room[4])
                    for z in scene.room[2:4]
                ]
            )
            for k in np.flatnonzero(vis):
                x, y, depth = kp[k]
                assert 0 <= x < 1 and 0 <= y < 1 and depth > 0
                i, j = int(y * s), int(x * s)
                seen = ex["depth"][i, j]
                if seen > 0:  # not a sensor hole
                    assert abs(seen - depth) <= 0.04 * depth + 0.03
                labels = seg[i : i + 3, j : j + 3]
                if k < g.NUM_ROOM_CORNER_KEYPOINTS:
                    assert np.isin(labels, [g.FLOOR, g.WALL, g.CEILING]).any()
                    # Unprojecting (x, y, depth) lands on a room corner.
                    f = 0.5 * s / np.tan(0.5 * np.radians(scene.camera.fov_deg))
                    p_cam = np.array([(x - 0.5) * s / f, -(y - 0.5) * s / f, -1.0]) * depth
                    world = scene.camera.position + scene.camera.rotation @ p_cam
                    assert np.linalg.norm(room_corners - world, axis=1).min() < 1e-3
                else:
                    assert (labels >= g.TABLE).any()
                num_visible += 1
    assert num_visible >= 16


def test_within_class_normal_spread_is_large():
    """The anchor is not a coarse copy of the main task: segmentation -> class-mean normal
    leaves a large error."""
    exs = [_example("source_train", i) for i in range(6)]
    n = np.concatenate([e["normals"][e["normals_mask"]] for e in exs])
    seg = np.concatenate([e["segmentation"][..., 0][e["normals_mask"]] for e in exs])
    means = np.zeros((g.NUM_CLASSES, 3))
    np.add.at(means, seg, n)
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-9)
    err = _angle_deg(n, means[seg])
    assert np.sqrt((err**2).mean()) > 20.0
    assert len(np.unique(seg)) >= 6


def _floor_pose_deg(ex) -> tuple[float, float]:
    """(pitch, |roll|) read from the floor normals: n = (sin r cos p, cos r cos p, sin p)."""
    sel = (ex["segmentation"][..., 0] == g.FLOOR) & ex["normals_mask"]
    if sel.sum() < 10:
        return np.nan, np.nan
    n = np.median(ex["normals"][sel], axis=0)
    return np.degrees(np.arcsin(n[2])), abs(np.degrees(np.arctan2(n[0], n[1])))


def _neighbour_noise(ex) -> float:
    """Median |horizontal image difference| between pixels of one class (noise, texture)."""
    img = ex["image"].astype(float)
    same = ex["segmentation"][:, 1:, 0] == ex["segmentation"][:, :-1, 0]
    return float(np.median(np.abs(img[:, 1:] - img[:, :-1]).max(-1)[same]))


def test_target_differs_in_appearance_and_camera_pose():
    n, spec = 32, dataclasses.replace(SPEC, image_size=32)
    source = [_example("source_train", i, spec) for i in range(n)]
    target = [_example("target_train", i, spec) for i in range(n)]
    # Sensor noise and textures: per-image median step inside a class. The source has
    # weak textures and cast shadows (1.1.0) but no sensor; the target's are >= 2x larger.
    source_noise = np.median([_neighbour_noise(e) for e in source])
    assert source_noise <= 3.0
    assert np.median([_neighbour_noise(e) for e in target]) >= max(6.0, 2 * source_noise)
    src_pose = np.array([_floor_pose_deg(e) for e in source])
    tgt_pose = np.array([_floor_pose_deg(e) for e in target])
    src_mean, tgt_mean = np.nanmean(src_pose, 0), np.nanmean(tgt_pose, 0)
    assert tgt_mean[0] - src_mean[0] > 8.0  # the target camera looks down more
    assert tgt_mean[1] > 1.5 * src_mean[1]  # and rolls more (roll σ 6° vs 2.5°)
    matched = dataclasses.replace(spec, match_pose=True)
    matched_src = [_example("source_train", i, matched) for i in range(n)]
    matched_pose = np.nanmean([_floor_pose_deg(e) for e in matched_src], 0)
    assert abs(matched_pose[0] - tgt_mean[0]) < 7.0
    # Matching the pose keeps the source's appearance.
    assert np.median([_neighbour_noise(e) for e in matched_src]) <= 3.0


def test_anchor_availability_and_noise():
    anchored = g.anchor_indices(0, 10, 4)
    assert len(anchored) == 4 and anchored == g.anchor_indices(0, 10, 4)
    assert g.anchor_indices(0, 10, None) == set(range(10))
    spec = g.GenerationSpec(image_size=32, noisy_anchor=True)
    off = g.generate_example(spec, "target_train", 0, has_anchor=False)
    assert not off["has_anchor"] and not off["segmentation"].any()
    assert not off["keypoints_visible"].any() and off["normals_mask"].any()
    noisy = g.generate_example(spec, "target_train", 0, has_anchor=True)
    clean = g.generate_example(dataclasses.replace(spec, noisy_anchor=False), "target_train", 0)
    assert noisy["has_anchor"]
    np.testing.assert_array_equal(noisy["normals"], clean["normals"])  # main labels untouched
    changed = noisy["segmentation"] != clean["segmentation"]
    assert 0 < changed.mean() < 0.3 and (noisy["segmentation"][changed] == 0).any()
    assert (clean["segmentation"] > 0).all()


if __name__ == "__main__":
    tfds.testing.test_main()


def test_architecture_gives_layout_classes_several_orientations(monkeypatch):
    """Pilasters, cut corners, platforms, beams and attic slopes keep the layout labels, so
    floor, wall and ceiling pixels are not one plane each (world frame)."""
    monkeypatch.setattr(g, "ARCHITECTURE_P", dict.fromkeys(g.ARCHITECTURE_P, 1.0))
    world = {g.FLOOR: [], g.WALL: [], g.CEILING: []}
    for seed in range(6):
        rng = np.random.default_rng(seed)
        scene = g.sample_scene(rng, g.SOURCE, g.SOURCE_POSE, 64)
        scene.parts = [p for p in scene.parts if p.instance < -1]  # no furniture in front
        labels = {p.label for p in scene.parts}
        assert labels <= {g.FLOOR, g.WALL, g.CEILING} and labels
        for part in scene.parts:  # the camera is always inside the free space
            if part.kind == "convex":
                assert not g._inside(part, scene.camera.position)
        cam = g.make_camera(scene.camera.position, scene.camera.yaw, np.radians(35), 0.0,
                            90.0, 64)
        up = g.make_camera(scene.camera.position, scene.camera.yaw, np.radians(-35), 0.0,
                           90.0, 64)
        for camera in (cam, up):
            ex = g.render(scene, camera, g.SOURCE, rng)
            seg, mask = ex["segmentation"][..., 0], ex["normals_mask"]
            n = ex["normals"] @ camera.rotation.T  # camera -> world
            for label in world:
                world[label].append(n[(seg == label) & mask])
    floor, wall, ceiling = (np.concatenate(world[k]) for k in (g.FLOOR, g.WALL, g.CEILING))
    # Platform risers (vertical, floor-labelled; 0.15-0.4 m high, so few pixels: 0.7 %).
    assert (np.abs(floor[:, 1]) < 0.1).mean() > 0.003
    assert ((np.abs(wall[:, 0]) > 0.3) & (np.abs(wall[:, 2]) > 0.3)).mean() > 0.01  # corners
    assert (ceiling[:, 1] > -0.95).mean() > 0.01  # beam sides and slopes
