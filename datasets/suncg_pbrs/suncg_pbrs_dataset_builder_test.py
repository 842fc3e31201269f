"""Tests of the suncg_pbrs builder: splits by house, subsets, normal convention, bad files."""

from __future__ import annotations

import shutil
from typing import ClassVar

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ..common.normals_feature import UnitNormals
from . import conversions, make_dummy_data
from . import suncg_pbrs_dataset_builder as builder_lib

DUMMY = builder_lib.Builder.code_path.parent / "dummy_data"
SPLITS = {"train": 4, "validation": 2, "test": 1}


class SuncgPbrsTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = builder_lib.Builder
    BUILDER_CONFIG_NAMES_TO_TEST: ClassVar[list[str]] = [
        "full",
        "subset_10k",
        "subset_100k",
        "full_no_category",
    ]
    SPLITS = SPLITS
    SKIP_CHECKSUMS = True


def angles_deg(a, b):
    cos = np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64), axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def sphere(size=41):
    coords = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    right = np.tile(coords, (size, 1))
    up = -right.T  # row 0 is the top of the image
    inside = right**2 + up**2 < 0.95
    toward = np.sqrt(np.clip(1.0 - right**2 - up**2, 0.0, None))
    return np.where(inside[..., None], np.stack([right, up, toward], -1), 0.0), inside


def pbrs_png(right, forward, up, bits):
    """Documented PBRS encoding, written out independently: R=right, G=forward, B=up."""
    top = 2**bits - 1
    values = np.round((np.stack([right, forward, up], -1) + 1.0) / 2.0 * top)
    return values.astype(np.uint16 if bits == 16 else np.uint8)


# --- normal convention ---------------------------------------------------------------


@pytest.mark.parametrize("bits", [16, 8])
def test_sphere_decodes_to_project_frame(bits):
    truth, inside = sphere()
    png = pbrs_png(truth[..., 0], -truth[..., 2], truth[..., 1], bits)
    valid = (inside * 255).astype(np.uint8)
    normals, mask = conversions.decode_pbrs_normals(png, valid)
    np.testing.assert_array_equal(mask, inside)
    assert angles_deg(normals[mask], truth[mask]).max() < 0.5
    assert np.all(normals[~mask] == 0)
    right_half = mask & (np.arange(41) > 20)[None, :]
    assert normals[right_half][:, 0].min() > 0  # right side of the sphere points right
    assert normals[:20][mask[:20]][:, 1].min() > 0  # top half points up
    assert normals[mask][:, 2].min() >= 0  # all visible: toward the camera


@pytest.mark.parametrize("bits", [16, 8])
def test_tilted_plane_decodes_to_project_frame(bits):
    # A floor seen by a camera pitched 30° down: normal = up, i.e. 30° toward the camera.
    pitch = np.radians(30.0)
    truth = np.array([0.0, np.cos(pitch), np.sin(pitch)])
    png = np.broadcast_to(pbrs_png(truth[0], -truth[2], truth[1], bits), (4, 5, 3))
    normals, mask = conversions.decode_pbrs_normals(png, np.full((4, 5), 255, np.uint8))
    assert mask.all() and angles_deg(normals, truth).max() < 0.5


def test_valid_mask_and_non_unit_pixels_are_invalid():
    png = pbrs_png(np.zeros((1, 3)), -np.ones((1, 3)), np.zeros((1, 3)), 16)
    png[0, 1] = 0  # (-1, -1, -1): not a unit vector
    normals, mask = conversions.decode_pbrs_normals(png, np.array([[255, 255, 0]], np.uint8))
    np.testing.assert_array_equal(mask, [[True, False, False]])
    np.testing.assert_allclose(normals[0, 0], [0, 0, 1], atol=1e-4)
    assert np.all(normals[0, 1:] == 0)


def test_unit_normals_feature_round_trip():
    truth, inside = sphere()
    feature = UnitNormals()
    encoded = feature.encode_example(truth.astype(np.float32))
    decoded = feature.decode_example(encoded).numpy()
    assert decoded.dtype == np.float32 and np.all(decoded[~inside] == 0)
    assert angles_deg(decoded[inside], truth[inside]).max() < 0.05


# --- splits and subsets ----------------------------------------------------------------


def test_split_by_house_is_deterministic_and_near_90_5_5():
    houses = [f"{k:032x}" for k in range(20_000)]
    splits = [conversions.split_of_house(h) for h in houses]
    assert splits == [conversions.split_of_house(h) for h in houses]
    share = {s: splits.count(s) / len(splits) for s in ("train", "validation", "test")}
    assert abs(share["train"] - 0.90) < 0.01 and abs(share["test"] - 0.05) < 0.01


def test_subset_is_deterministic_and_spread_over_houses():
    views = [(f"house{h:03d}", f"{v:06d}") for h in range(200) for v in range(20)]
    subset = conversions.select_subset(views, 400)
    assert len(subset) == 400 and subset == conversions.select_subset(views[::-1], 400)
    assert len({h for h, _ in subset}) > 100  # not the first 20 houses of the list
    assert conversions.select_subset(views, None) == set(views)


def test_goodlist_parsing():
    assert conversions.parse_goodlist_line("abc123/000004\n") == ("abc123", "000004")
    assert conversions.parse_goodlist_line("  \n") is None
    with pytest.raises(ValueError, match="line 7"):
        conversions.parse_goodlist_line("abc123 000004", 7)


def _build(manual_dir, tmp_path, **config):
    config.setdefault("name", "test_config")
    builder = builder_lib.Builder(
        config=builder_lib.PbrsConfig(**config), data_dir=tmp_path / "tfds"
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
    return {s: list(tfds.as_numpy(builder.as_dataset(split=s))) for s in builder.info.splits}


def test_built_dataset_splits_by_house_and_keeps_conventions(tmp_path):
    built = _build(DUMMY, tmp_path, name="full_copy")
    houses = {s: {ex["house"].decode() for ex in exs} for s, exs in built.items()}
    assert {s: len(exs) for s, exs in built.items()} == SPLITS
    assert not (
        houses["train"] & houses["validation"]
        or houses["train"] & houses["test"]
        or houses["validation"] & houses["test"]
    )
    truth, valid, labels = make_dummy_data.room()
    for ex in [ex for exs in built.values() for ex in exs]:  # includes the 8-bit view
        assert ex["id"].decode().startswith(ex["house"].decode() + "/")
        np.testing.assert_array_equal(ex["image"][0, 0], [255, 0, 0])
        np.testing.assert_array_equal(ex["normals_mask"], valid)
        assert angles_deg(ex["normals"][valid], truth[valid]).max() < 0.5
        assert ex["normals"][-1, 8, 1] > 0.7 and ex["normals"][6, 1, 0] > 0.7
        np.testing.assert_array_equal(ex["segmentation"][..., 0], labels)


def test_max_examples_builds_a_subset(tmp_path):
    built = _build(DUMMY, tmp_path, max_examples=3)
    assert sum(len(exs) for exs in built.values()) == 3


# --- missing and corrupt inputs --------------------------------------------------------


def _copy(tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(DUMMY, manual)
    return manual


def _first_train_view():
    return next(
        (h, v) for h, v in make_dummy_data.goodlist() if conversions.split_of_house(h) == "train"
    )


def test_missing_inputs_name_the_first_missing_path(tmp_path):
    manual = _copy(tmp_path)
    shutil.rmtree(manual / "category_v2")
    with pytest.raises(FileNotFoundError, match="category_v2") as err:
        _build(manual, tmp_path)
    assert "data_goodlist_v2.txt" in str(err.value)  # the instructions come along
    house, view = make_dummy_data.goodlist()[0]
    (manual / f"mlt_v2/{house}/{view}_mlt.png").unlink()
    with pytest.raises(FileNotFoundError, match=f"{view}_mlt.png"):
        _build(manual, tmp_path, with_category=False)


def test_truncated_png_fails_with_its_path_or_is_skipped_and_counted(tmp_path):
    manual = _copy(tmp_path)
    house, view = _first_train_view()
    path = manual / f"normal_v2/{house}/{view}_norm_camera.png"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ValueError, match=f"{view}_norm_camera.png: truncated"):
        _build(manual, tmp_path, name="strict", skip_bad_views=False)
    with pytest.raises(ValueError, match="skipped 1 of 4"):
        _build(manual, tmp_path, name="default_skip")
    built = _build(manual, tmp_path, name="lenient", max_skipped_fraction=0.5)
    assert len(built["train"]) == SPLITS["train"] - 1


def test_bad_category_and_shape_are_errors_naming_the_file(tmp_path):
    manual = _copy(tmp_path)
    house, view = _first_train_view()
    bad = np.full((make_dummy_data.HEIGHT, make_dummy_data.WIDTH), 41, np.uint8)
    make_dummy_data.Image.fromarray(bad).save(manual / f"category_v2/{house}/{view}_category40.png")
    with pytest.raises(ValueError, match="category40.png: category id 41"):
        builder_lib.read_view(manual, house, view)
    make_dummy_data.Image.fromarray(np.zeros((3, 3), np.uint8)).save(
        manual / f"normal_v2/{house}/{view}_valid.png"
    )
    with pytest.raises(ValueError, match="_valid.png: shape"):
        builder_lib.read_view(manual, house, view)


def test_malformed_goodlist_names_file_and_line(tmp_path):
    manual = _copy(tmp_path)
    with open(manual / builder_lib.GOODLIST, "a") as f:
        f.write("not a view line\n")
    with pytest.raises(ValueError, match="data_goodlist_v2.txt: line 8"):
        builder_lib.read_goodlist(manual / builder_lib.GOODLIST)


# --- tools -----------------------------------------------------------------------------


def test_visual_check_and_prepare_cli(tmp_path, capsys):
    from . import prepare, visual_check

    out = tmp_path / "check.png"
    visual_check.main(["--manual_dir", str(DUMMY), "--count", "2", "--out", str(out)])
    assert "fit the project frame" in capsys.readouterr().out and out.stat().st_size > 0
    visual_check.main(
        ["--manual_dir", str(DUMMY), "--count", "2", "--normal_axes", "+0,-2,-1", "--out", str(out)]
    )
    assert "normal_axes='+0,+2,-1'" in capsys.readouterr().out
    config = prepare.config_for(20_000, with_category=False, strict=True)
    assert (config.name, config.max_examples, config.skip_bad_views) == (
        "subset_20000_no_category_strict",
        20_000,
        False,
    )


if __name__ == "__main__":
    tfds.testing.test_main()


def test_views_without_a_valid_normal_are_skipped_counted_and_fail_an_empty_split(tmp_path):
    """Issue 30: PBRS built silently from views whose normals are all zero."""
    import tensorflow as tf

    manual = _copy(tmp_path)
    zeros = tf.io.encode_png(np.zeros((make_dummy_data.HEIGHT, make_dummy_data.WIDTH, 3),
                                      np.uint16)).numpy()
    train = [(h, v) for h, v in make_dummy_data.goodlist()
             if conversions.split_of_house(h) == "train"]
    house, view = train[0]
    (manual / f"normal_v2/{house}/{view}_norm_camera.png").write_bytes(zeros)
    builder = builder_lib.Builder(config=builder_lib.PbrsConfig(name="zeros"),
                                  data_dir=tmp_path / "tfds")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual))
    assert builder.info.splits["train"].num_examples == SPLITS["train"] - 1
    assert builder.info.metadata["skipped_invalid_normals"] == {
        "train": 1, "validation": 0, "test": 0}
    for house, view in train:
        (manual / f"normal_v2/{house}/{view}_norm_camera.png").write_bytes(zeros)
    with pytest.raises(ValueError, match=r"suncg_pbrs: split 'train' has no valid normal "
                                         r"pixel at all: the normal maps of all 4 of its "
                                         r"examples under .*normal_v2 are all invalid"):
        _build(manual, tmp_path, name="all_zeros")
