"""Tests for the SfSNet synthetic builder: configs on dummy_data, normal decoding, bad inputs."""

import json
import shutil
from typing import ClassVar

import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath

from . import sfsnet_synthetic_dataset_builder as sfs

DUMMY = epath.Path(sfs.__file__).parent / "dummy_data"


class SfsnetAllTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = sfs.Builder
    BUILDER_CONFIG_NAMES_TO_TEST: ClassVar = ["all"]
    # 5 identities split 3/1/1, 2 complete renders each; 000002_*_3_2 lacks its normal map.
    SPLITS: ClassVar = {"train": 6, "validation": 2, "test": 2}
    SKIP_CHECKSUMS = True


class SfsnetFrontalTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = sfs.Builder
    BUILDER_CONFIG_NAMES_TO_TEST: ClassVar = ["frontal"]
    # The fixture's target histogram holds exactly the near-frontal renders' poses.
    SPLITS: ClassVar = {"train": 3, "validation": 1, "test": 1}
    SKIP_CHECKSUMS = True


def _sphere_normals(size=101):
    """Project-frame normals of a sphere filling the image (orthographic), and its mask."""
    c = (np.arange(size) + 0.5) / size * 2 - 1
    x, y_down = np.meshgrid(c, c)
    y = -y_down
    r2 = x**2 + y**2
    mask = r2 < 1
    n = np.stack([x, y, np.sqrt(np.clip(1 - r2, 0, None))], -1)
    return np.where(mask[..., None], n, 0.0), mask


def test_decode_sfsnet_normals_sphere_within_half_degree():
    n, mask = _sphere_normals()
    # Encode the SfSNet way: R = image-down (-y), G = image-right (x), B = toward camera (z).
    png = np.round((np.stack([-n[..., 1], n[..., 0], n[..., 2]], -1) + 1) * 127.5)
    png = np.where(mask[..., None], png, 0).astype(np.uint8)
    decoded, valid = sfs.decode_sfsnet_normals(png)
    assert (valid == mask).all()
    cos = np.clip((decoded * n).sum(-1)[mask], -1, 1)
    assert np.degrees(np.arccos(cos)).max() < 0.5
    # The right edge points right, the top points up, the centre toward the camera.
    h = n.shape[0] // 2
    assert decoded[h, -3, 0] > 0.9 and decoded[2, h, 1] > 0.9 and decoded[h, h, 2] > 0.99


def test_decode_sfsnet_normals_axes():
    png = np.array([[[255, 128, 128], [128, 255, 128], [128, 128, 255]]], np.uint8)
    decoded, _ = sfs.decode_sfsnet_normals(png)
    np.testing.assert_allclose(decoded[0], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=0.01)


def _builder(tmp_path, manual):
    builder = sfs.Builder(config="all", data_dir=str(tmp_path / "data"))
    return builder, tfds.download.DownloadConfig(manual_dir=str(manual))


def test_missing_manual_dir_names_path_and_instructions(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "unrelated.txt").write_text("x")
    builder, cfg = _builder(tmp_path, manual)
    with pytest.raises(FileNotFoundError, match="DATA_pose_15") as err:
        builder.download_and_prepare(download_config=cfg)
    assert "senguptaumd/SfSNet" in str(err.value)


def test_incomplete_sets_are_counted():
    builder = sfs.Builder(config="all")
    complete, incomplete = builder._list_render_sets(DUMMY / sfs.ROOT_DIRNAME)
    assert len(complete) == 10
    assert [(k, missing) for k, _, missing in incomplete] == [
        (("0001", "000002", "3", "2"), ["normal"])]


def test_bad_inputs_name_the_file(tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(DUMMY, manual)
    folder = manual / sfs.ROOT_DIRNAME / "0001"
    builder = sfs.Builder(config="all")
    complete, _ = builder._list_render_sets(epath.Path(manual) / sfs.ROOT_DIRNAME)
    key, paths, _ = complete[0]
    # A mask of the wrong size.
    mask = folder / paths["mask"].name
    tfds.core.lazy_imports.PIL_Image.new("L", (5, 5)).save(mask)
    with pytest.raises(ValueError, match=paths["mask"].name):
        builder._load(key, paths, epath.Path(manual), {})
    # Lighting with the wrong number of coefficients.
    shutil.copy(DUMMY / sfs.ROOT_DIRNAME / "0001" / paths["mask"].name, mask)
    (folder / paths["light"].name).write_text("0.1\t0.2\n")
    with pytest.raises(ValueError, match=paths["light"].name):
        builder._load(key, paths, epath.Path(manual), {})


def test_examples_carry_anchor_labels_and_face_region():
    builder = sfs.Builder(config="all")
    complete, _ = builder._list_render_sets(DUMMY / sfs.ROOT_DIRNAME)
    lm_file = sfs.landmarks_file
    landmarks = lm_file.read_landmarks(DUMMY / lm_file.LANDMARKS_FILENAME)
    by_id = {k: (k, p) for k, p, _ in complete}
    ex = builder._load(*by_id[("0001", "000001", "1", "1")], DUMMY, landmarks)
    assert ex["keypoints"].shape == (68, 3) and ex["keypoints_visible"].sum() > 60
    mask = ex["normals_mask"]
    # The face region (hull of the landmarks) is smaller than the rendered mask.
    no_lm = builder._load(*by_id[("0001", "000001", "1", "1")], DUMMY, {})
    assert mask.sum() < no_lm["normals_mask"].sum() and not (mask & ~no_lm["normals_mask"]).any()
    np.testing.assert_allclose(np.linalg.norm(ex["normals"][mask], axis=-1), 1, atol=1e-5)
    assert (ex["normals"][~mask] == 0).all() and (ex["normals"][mask][:, 2] > 0).mean() > 0.99


# --- Corrupt files, invalid normals, empty splits (full builds on a copy of dummy_data) ------


def _copy_dummy(tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(DUMMY, manual)
    return epath.Path(manual)


def _build(tmp_path, manual, config="all"):
    builder = sfs.Builder(config=config, data_dir=str(tmp_path / "data"))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    return builder


def _renders_by_split(manual):
    """Split name -> the complete render sets' path dicts, as the builder assigns them."""
    complete, _ = sfs.Builder(config="all")._list_render_sets(manual / sfs.ROOT_DIRNAME)
    split_of = sfs.splits.split_groups(key[1] for key, _, _ in complete)
    out = {"train": [], "validation": [], "test": []}
    for key, paths, _ in complete:
        out[split_of[key[1]]].append(paths)
    return out


def _write_png(path, arr):
    tfds.core.lazy_imports.PIL_Image.fromarray(arr).save(str(path), format="PNG")


@pytest.mark.parametrize("modality", ["face", "normal"])
def test_truncated_png_names_the_file(tmp_path, modality):
    manual = _copy_dummy(tmp_path)
    path = _renders_by_split(manual)["train"][0][modality]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot decode this image file") as err:
        _build(tmp_path, manual)
    msg = str(err.value)
    assert str(path) in msg and sfs._EXPECTED[modality] in msg and "BytesIO" not in msg


def test_all_zero_normal_map_is_skipped_and_counted(tmp_path, caplog):
    manual = _copy_dummy(tmp_path)
    path = _renders_by_split(manual)["train"][0]["normal"]
    _write_png(path, np.zeros((48, 48, 3), np.uint8))
    builder = _build(tmp_path, manual)
    # Every other example is still built; the skipped one is counted and named.
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
        "train": 5, "validation": 2, "test": 2}
    assert builder.info.metadata["skipped_invalid_normals"] == {
        "train": 1, "validation": 0, "test": 0}
    assert any("skipped 1 of 6" in r.getMessage() and path.name in r.getMessage()
               for r in caplog.records)


def test_split_without_any_valid_normal_fails_naming_split_and_dir(tmp_path):
    manual = _copy_dummy(tmp_path)
    for paths in _renders_by_split(manual)["validation"]:
        _write_png(paths["normal"], np.zeros((48, 48, 3), np.uint8))
    with pytest.raises(ValueError, match="split 'validation' has no valid normal pixel") as err:
        _build(tmp_path, manual)
    assert str(manual / sfs.ROOT_DIRNAME) in str(err.value)


def test_split_without_identities_is_left_out(tmp_path, caplog):
    manual = _copy_dummy(tmp_path)
    # Three identities: the 70/15/15 cut gives train 2, validation 0, test 1.
    shutil.rmtree(manual / sfs.ROOT_DIRNAME / "0002")
    builder = _build(tmp_path, manual)
    assert sorted(builder.info.splits) == ["test", "train"]
    assert any("split 'validation' left out" in r.getMessage() and "validation 0" in
               r.getMessage() for r in caplog.records)
    assert len(list(builder.as_dataset(split="train"))) > 0


def test_frontal_selection_keeping_nothing_is_explained(tmp_path):
    manual = _copy_dummy(tmp_path)
    hist_path = manual / sfs.head_pose.TARGET_HISTOGRAM_FILENAME
    hist = sfs.head_pose.PoseHistogram()
    hist.add(-85.0, -55.0)  # A pose no render of the fixture has.
    hist_path.write_text(json.dumps(hist.to_dict()))
    with pytest.raises(ValueError, match="frontal pose selection kept no render") as err:
        _build(tmp_path, manual, config="frontal")
    assert str(hist_path) in str(err.value)


if __name__ == "__main__":
    tfds.testing.test_main()
