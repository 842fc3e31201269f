"""Tests of the nyu_depth_v2_normals builder: splits, normal conventions, orientation, classes."""

from __future__ import annotations

import gzip
import shutil
from typing import ClassVar

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ..common.normals_feature import UnitNormals
from . import conversions, make_dummy_data
from . import nyu_depth_v2_normals_dataset_builder as builder_lib

DUMMY = builder_lib.Builder.code_path.parent / "dummy_data"
SPLITS = {"train": 3, "validation": 1, "test": 2}


class NyuDepthV2NormalsTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = builder_lib.Builder
    BUILDER_CONFIG_NAMES_TO_TEST: ClassVar[list[str]] = ["eigen", "ladicky_pklz", "ladicky_png"]
    SPLITS = SPLITS
    SKIP_CHECKSUMS = True


# --- helpers -------------------------------------------------------------------------


def angles_deg(a, b):
    cos = np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64), axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def sphere(size=41):
    """Project-frame normals of a sphere filling the image, and its silhouette."""
    coords = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    x = np.tile(coords, (size, 1))  # right
    y = -x.T  # up: row 0 is the top
    inside = x**2 + y**2 < 0.95
    z = np.sqrt(np.clip(1.0 - x**2 - y**2, 0.0, None))
    normals = np.where(inside[..., None], np.stack([x, y, z], -1), 0.0)
    return normals, inside


def tilted_plane(size=8, pitch_deg=30.0, yaw_deg=-20.0):
    """A plane facing the camera, turned up by pitch and to the left by yaw."""
    p, q = np.radians(pitch_deg), np.radians(yaw_deg)
    n = np.array([np.sin(q) * np.cos(p), np.sin(p), np.cos(q) * np.cos(p)])
    return np.broadcast_to(n, (size, size, 3)).copy()


ENCODINGS = {
    # name: (encode project-frame normals per the documented convention, decode)
    "eigen": (
        make_dummy_data.encode_eigen,
        lambda png, valid: conversions.decode_eigen_normals(png, (valid * 255).astype(np.uint8)),
    ),
    "ladicky_png": (
        make_dummy_data.encode_ladicky_png,
        lambda png, valid: conversions.decode_ladicky_png_normals(
            np.where(valid[..., None], png, 0)
        ),
    ),
    "ladicky_pklz": (
        make_dummy_data.encode_ladicky_array,
        lambda arr, valid: conversions.decode_ladicky_array_normals(arr, valid.astype(np.float32)),
    ),
}


# --- normal conversions --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ENCODINGS))
@pytest.mark.parametrize("geometry", ["sphere", "plane"])
def test_known_geometry_decodes_to_project_frame(name, geometry):
    truth, valid = sphere() if geometry == "sphere" else (tilted_plane(), np.ones((8, 8), bool))
    encode, decode = ENCODINGS[name]
    normals, mask = decode(encode(truth), valid)
    assert normals.dtype == np.float32 and mask.dtype == bool
    np.testing.assert_array_equal(mask, valid)
    assert angles_deg(normals[mask], truth[mask]).max() < 0.5
    assert np.all(normals[~mask] == 0)
    if geometry == "sphere":  # right half points right, top half points up, all face us
        size = truth.shape[1]
        assert normals[mask & (np.arange(size) > size // 2)[None, :]][:, 0].min() > 0
        assert normals[: size // 2][mask[: size // 2]][:, 1].min() > 0
        assert normals[mask][:, 2].min() >= 0


def test_16bit_png_decodes_by_dtype():
    truth, valid = sphere()
    png16 = np.round((truth + 1.0) / 2.0 * 65535).astype(np.uint16)
    normals, mask = conversions.finalize_normals(conversions.decode_unit_png(png16), valid)
    assert angles_deg(normals[mask], truth[mask]).max() < 0.05  # float32 arccos limit


def test_axes_override_and_validation():
    vectors = np.array([[[0.1, 0.2, 0.9]]], np.float32)
    np.testing.assert_allclose(conversions.apply_axes(vectors, "-2,+0,+1"), [[[-0.9, 0.1, 0.2]]])
    for bad in ["+0,+0,+1", "0,1,2", "+0,-1", "+3,-1,+2"]:
        with pytest.raises(ValueError):
            conversions.parse_axes(bad)


def test_invalid_pixels_are_zero_and_masked():
    png = np.array([[[0, 0, 0], [127, 127, 127], [128, 128, 255]]], np.uint8)
    normals, mask = conversions.decode_ladicky_png_normals(png)
    np.testing.assert_array_equal(mask, [[False, False, True]])
    assert np.all(normals[0, :2] == 0)


@pytest.mark.parametrize("source", ["eigen", "ladicky_png", "ladicky_pklz"])
def test_fixture_room_reads_back_in_project_frame(source):
    """Each source's dummy files hold the same room; every source reads it back equally."""
    truth, valid, _ = make_dummy_data.room()
    official = {i: ("test" if i in make_dummy_data.TEST_1BASED else "train") for i in range(1, 7)}
    reader = builder_lib._NormalsReader(
        DUMMY, source, conversions.DEFAULT_NORMAL_AXES[source], official, 6
    )
    normals, mask = reader.read(2, (make_dummy_data.HEIGHT, make_dummy_data.WIDTH))
    np.testing.assert_array_equal(mask, valid)
    assert angles_deg(normals[mask], truth[mask]).max() < 0.5
    floor = normals[-1, 8]
    assert floor[1] > 0.7 and normals[0, 8][1] < -0.7  # floor up, ceiling down
    assert normals[6, 2][0] > 0.7 and normals[6, -2][0] < -0.7  # walls face the room


def test_unit_normals_feature_round_trip():
    truth, valid = sphere()
    truth = truth.astype(np.float32)
    feature = UnitNormals(shape=(None, None, 3))
    encoded = feature.encode_example(truth)
    for decoded in (feature.decode_example(encoded).numpy(), feature.decode_example_np(encoded)):
        assert decoded.dtype == np.float32
        assert angles_deg(decoded[valid], truth[valid]).max() < 0.05
        assert np.all(decoded[~valid] == 0)


# --- MATLAB layout, orientation, strings ---------------------------------------------


def test_hdf5_image_is_upright_and_not_mirrored():
    with builder_lib.LabeledMat(DUMMY / builder_lib.MAT_FILE) as mat:
        assert mat.num_images == 6
        image = mat.image(0)
        labels = mat.labels(0)
        depth = mat.matrix("rawDepths", 0)
    assert image.shape == (make_dummy_data.HEIGHT, make_dummy_data.WIDTH, 3)
    np.testing.assert_array_equal(image[0, 0], [255, 0, 0])  # red top-left
    np.testing.assert_array_equal(image[0, -1], [0, 255, 0])  # green top-right
    np.testing.assert_array_equal(image[-1, 0], [0, 0, 255])  # blue bottom-left
    assert (
        labels[0, 8] == make_dummy_data.RAW_CEILING and labels[-1, 8] == make_dummy_data.RAW_FLOOR
    )
    assert depth[0, 0] == 0 and depth[0, -1] > depth[0, 1]  # grows to the right


def test_matlab_uint16_strings_decode_without_nul():
    chars = np.array([[ord(c)] for c in "living_room"], np.uint16)
    assert chars.tobytes().decode("latin-1") != "living_room"  # the old TFDS bug: NULs
    assert conversions.decode_matlab_string(chars) == "living_room"
    assert conversions.decode_matlab_string(np.array([[0x00E9]], np.uint16)) == "é"
    assert conversions.decode_matlab_string(np.zeros(2, np.uint64), empty=True) == ""
    with builder_lib.LabeledMat(DUMMY / builder_lib.MAT_FILE) as mat:
        assert mat.scene_type(5) == "living_room"


# --- classes and splits ----------------------------------------------------------------


def test_class_mapping_matches_published_rows():
    for raw_name, nyu40 in conversions.REFERENCE_894_TO_40.values():
        assert conversions.NYU40_CLASS_NAMES[nyu40 - 1] == raw_name
    map_class = builder_lib.read_class_mapping(DUMMY / builder_lib.MAPPING_FILE)
    raw = np.array([[0, 21, 11, 4], [157, 5, 85, 144]], np.uint16)
    np.testing.assert_array_equal(
        conversions.map_894_to_40(raw, map_class), [[0, 1, 2, 22], [4, 5, 23, 35]]
    )
    wrong = map_class.copy()
    wrong[11 - 1] = 1  # floor -> wall
    with pytest.raises(ValueError, match="mapClass\\[11\\]"):
        conversions.check_class_mapping(wrong)
    with pytest.raises(ValueError, match="outside the mapping"):
        conversions.map_894_to_40(np.array([[900]]), map_class)


def test_splits_are_one_based_and_validation_takes_whole_scenes():
    train, test = builder_lib.read_splits(DUMMY / builder_lib.SPLITS_FILE)
    np.testing.assert_array_equal(train, make_dummy_data.TRAIN_1BASED)
    np.testing.assert_array_equal(test, make_dummy_data.TEST_1BASED)
    scene_of = make_dummy_data.scenes()
    in_validation = {i for i in train if conversions.is_validation_scene(scene_of[i][0], 10)}
    assert in_validation == {6}
    assert conversions.stable_percent("kitchen_0001a") == conversions.stable_percent(
        "kitchen_0001a"
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    builder = builder_lib.Builder(config="eigen", data_dir=tmp_path_factory.mktemp("tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=DUMMY))
    return {s: list(tfds.as_numpy(builder.as_dataset(split=s))) for s in SPLITS}


def test_built_examples_have_project_conventions(built):
    ids = {s: sorted(ex["id"].decode() for ex in exs) for s, exs in built.items()}
    assert ids == {
        "train": ["0002", "0003", "0005"],
        "validation": ["0006"],
        "test": ["0001", "0004"],
    }
    truth, valid, _ = make_dummy_data.room()
    for ex in built["train"]:
        np.testing.assert_array_equal(ex["image"][0, 0], [255, 0, 0])
        assert ex["normals"].dtype == np.float32 and ex["normals_mask"].dtype == bool
        np.testing.assert_array_equal(ex["normals_mask"], valid)
        assert angles_deg(ex["normals"][valid], truth[valid]).max() < 0.5
        seg = ex["segmentation"][..., 0]
        assert (seg[0, 8], seg[-1, 8], seg[6, 7], seg[5, 7], seg[4, 8]) == (22, 2, 4, 0, 1)
        assert ex["depth"][0, 0] == 0 and ex["depth_filled"][0, 0] > 0
        assert "\x00" not in ex["scene_type"].decode()


# --- missing and corrupt inputs --------------------------------------------------------


def _prepare(manual_dir, tmp_path, config="eigen"):
    builder = builder_lib.Builder(config=config, data_dir=tmp_path / "tfds")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )


def test_missing_file_names_first_missing_path(tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(DUMMY, manual)
    (manual / "splits.mat").unlink()
    with pytest.raises(FileNotFoundError, match="splits.mat") as err:
        _prepare(manual, tmp_path)
    assert "MANUAL" in str(err.value).upper() or "manual_dir" in str(err.value)
    shutil.rmtree(manual / "normals_gt")
    shutil.copy(DUMMY / "splits.mat", manual / "splits.mat")
    with pytest.raises(FileNotFoundError, match="normals_gt/normals"):
        _prepare(manual, tmp_path)


def test_truncated_mat_is_a_clear_error(tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(DUMMY, manual)
    path = manual / builder_lib.MAT_FILE
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(ValueError, match="nyu_depth_v2_labeled.mat"):
        _prepare(manual, tmp_path)


def test_corrupt_or_wrong_normal_files_name_the_file(tmp_path):
    good = (DUMMY / "normals_gt/normals/0001.png").read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="truncated.png"):
        builder_lib.read_png(truncated)
    not_png = tmp_path / "text.png"
    not_png.write_bytes(b"hello" * 10)
    with pytest.raises(ValueError, match="text.png: not a PNG"):
        builder_lib.read_png(not_png)

    manual = tmp_path / "manual"
    shutil.copytree(DUMMY, manual)
    make_dummy_data.write_png(manual / "normals_gt/normals/0001.png", np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="0001.png: shape"):
        _prepare(manual, tmp_path)


def test_truncated_pklz_is_a_clear_error(tmp_path):
    path = tmp_path / "all_normals.pklz"
    path.write_bytes((DUMMY / builder_lib.LADICKY_PKLZ).read_bytes()[:500])
    with pytest.raises(ValueError, match="all_normals.pklz"):
        builder_lib.load_ladicky_pklz(path, 6)
    with gzip.open(path, "wb") as f:
        f.write(b"\x80\x02}q\x00.")  # an empty dict
    with pytest.raises(ValueError, match="missing key"):
        builder_lib.load_ladicky_pklz(path, 6)


# --- visual check --------------------------------------------------------------------


def test_visual_check_accepts_right_axes_and_repairs_wrong_ones(tmp_path, capsys):
    from . import visual_check

    out = tmp_path / "check.png"
    visual_check.main(["--manual_dir", str(DUMMY), "--config", "eigen", "--out", str(out)])
    assert "fit the project frame" in capsys.readouterr().out and out.stat().st_size > 0
    for wrong in ["+0,+1,+2", "-0,-1,+2", "+0,+2,-1"]:
        rows, axes = visual_check.load_from_manual_dir(DUMMY, "eigen", wrong, 2)
        assert (
            f"normal_axes='{conversions.DEFAULT_NORMAL_AXES['eigen']}'"
            in visual_check.report(rows, axes)[-1]
        )


if __name__ == "__main__":
    tfds.testing.test_main()
