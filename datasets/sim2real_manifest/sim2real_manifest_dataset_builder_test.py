"""The sim2real_manifest builder: the tiny example end to end, what it converts, and one
clear error per bad manifest, with nothing that looks like a finished build left behind."""

from __future__ import annotations

import json
import pathlib
import shutil
from typing import ClassVar

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ..sim2real_rooms import generator as g
from . import make_example
from . import sim2real_manifest_dataset_builder as B

DUMMY = pathlib.Path(__file__).resolve().parent / "dummy_data"
SPLITS = {"source_train": 4, "source_val": 2, "target_train": 4, "target_val": 2,
          "target_test": 3}


class Sim2RealManifestBuilderTest(tfds.testing.DatasetBuilderTestCase):
    """Builds dummy_data/ (make_example's output) with TFDS's own builder checks."""

    DATASET_CLASS = B.Builder
    BUILDER_CONFIG_NAMES_TO_TEST: ClassVar[list] = [B.make_config(str(DUMMY))]
    SPLITS: ClassVar[dict[str, int]] = SPLITS
    SKIP_CHECKSUMS = True

    def _make_builder(self, config=None):
        # The harness's default builder has no config; this builder's config is the
        # manifest it reads.
        return super()._make_builder(config=config or self.BUILDER_CONFIG_NAMES_TO_TEST[0])


def _build(folder, data_dir):
    builder = B.Builder(manual_dir=str(folder), data_dir=str(data_dir))
    builder.download_and_prepare()
    return builder


def _angles(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1),
                                 np.sum(a * b, axis=-1)))


def test_dummy_data_is_make_example_output(tmp_path):
    out = make_example.main(tmp_path / "pair")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(DUMMY)) for p in DUMMY.rglob("*") if p.is_file())
    for name in ("manifest.csv", "dataset.json"):
        assert (out / name).read_text() == (DUMMY / name).read_text()


def test_example_converts_to_the_generator_ground_truth(tmp_path):
    """The example's files (16-bit and 8-bit normal PNGs with axes '+0,-1,-2', depth in mm,
    id PNGs, keypoints in pixels) read back as sim2real_rooms' own labels."""
    builder = _build(DUMMY, tmp_path)
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == SPLITS
    assert builder.info.features["segmentation"].names == list(g.CLASS_NAMES)
    assert builder.info.features["keypoints"].shape == (g.NUM_KEYPOINTS, 3)
    assert builder.info.metadata["split_labels"]["target_train"] == [
        "segmentation", "keypoints", "keypoints_visible"]
    spec = g.GenerationSpec(image_size=32, seed=0)
    worst = {}
    for split in SPLITS:
        for ex in tfds.as_numpy(builder.as_dataset(split=split)):
            stem = ex["id"].decode().rsplit("/", 1)[1].split(".")[0]
            truth = g.generate_example(spec, split, int(stem.split("_")[1]), True)
            np.testing.assert_array_equal(ex["segmentation"], truth["segmentation"])
            np.testing.assert_array_equal(ex["keypoints_visible"], truth["keypoints_visible"])
            np.testing.assert_allclose(ex["keypoints"], truth["keypoints"], atol=1e-4)
            if split == "target_train":  # no normals on these rows: stored invalid
                assert not ex["normals_mask"].any() and not ex["normals"].any()
                continue
            np.testing.assert_array_equal(ex["normals_mask"], truth["normals_mask"])
            err = _angles(ex["normals"], truth["normals"])[truth["normals_mask"]]
            worst[split] = max(worst.get(split, 0.0), float(err.max()))
            if split.startswith("source"):
                assert np.abs(ex["depth"] - truth["depth"]).max() <= 0.0005 + 1e-6
                np.testing.assert_array_equal(ex["image"], truth["image"])
            else:
                assert not ex["depth"].any()  # target rows have no depth
    assert worst["source_train"] < 0.05 and worst["target_test"] < 0.5, worst


def test_jsonl_manifest_builds_the_same_examples(tmp_path):
    folder = tmp_path / "pair"
    shutil.copytree(DUMMY, folder)
    import csv

    with open(folder / "manifest.csv") as f:
        rows = [{k: v for k, v in r.items() if v} for r in csv.DictReader(f)]
    (folder / "manifest.csv").unlink()
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    builder = _build(folder, tmp_path / "data")
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == SPLITS


def test_a_changed_manifest_is_a_new_dataset_never_the_old_build(tmp_path):
    folder = tmp_path / "pair"
    shutil.copytree(DUMMY, folder)
    first = _build(folder, tmp_path / "data")
    lines = (folder / "manifest.csv").read_text().splitlines(keepends=True)
    (folder / "manifest.csv").write_text("".join(lines[:-1]))  # drop a target_test row
    second = _build(folder, tmp_path / "data")
    assert second.builder_config.name != first.builder_config.name
    assert second.info.splits["target_test"].num_examples == 2
    assert B.Builder(manual_dir=str(folder)).builder_config.name == \
        second.builder_config.name  # same files, same dataset


def test_no_folder_or_a_named_config_is_one_clear_error():
    with pytest.raises(ValueError, match="needs the folder of your manifest: give it as "
                                         "manual_dir"):
        B.Builder()
    with pytest.raises(ValueError, match="has no named configs"):
        B.Builder(config="default", manual_dir=str(DUMMY))


# --- one error per bad manifest ---------------------------------------------------------------

def _replace_line(folder, line, old, new):
    path = folder / "manifest.csv"
    lines = path.read_text().splitlines(keepends=True)
    assert old in lines[line - 1], lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new)
    path.write_text("".join(lines))


def _truncate(folder, rel):
    data = (folder / rel).read_bytes()
    (folder / rel).write_bytes(data[: len(data) // 2])


def _small_label(folder, rel):
    from PIL import Image

    Image.fromarray(np.zeros((16, 32), np.uint8)).save(folder / rel)


def _describe(folder, **changes):
    path = folder / "dataset.json"
    description = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            description.pop(key)
        else:
            description[key] = value
    path.write_text(json.dumps(description))


# (what to break, the message's expected text after "<manifest>, line N, column 'c'").
BAD = {
    "missing file": (lambda f: (f / "source/normals/train_001.png").unlink(),
                     r"line 3, column 'normals' \(.*source/normals/train_001\.png\): file "
                     r"not found \(paths are relative to the manifest's folder"),
    "wrong shape": (lambda f: _small_label(f, "target/segmentation/val_001.png"),
                    r"line 13, column 'segmentation' \(.*target/segmentation/val_001\.png\): "
                    r"16x32 pixels, but the image is 32x32"),
    "unknown domain": (lambda f: _replace_line(f, 8, "target,", "real,"),
                       r"line 8, column 'domain': 'real' is not a domain; expected one of "
                       r"source, target"),
    "unknown split": (lambda f: _replace_line(f, 6, ",val,", ",validation,"),
                      r"line 6, column 'split': 'validation' is not a split; expected one of "
                      r"train, val, test"),
    "unreadable image": (lambda f: (f / "target/images/test_002.jpg").write_bytes(b"nope"),
                         r"line 16, column 'image' \(.*target/images/test_002\.jpg\): cannot "
                         r"read this image"),
    "label on some rows only": (
        lambda f: _replace_line(f, 4, "source/depth/train_002.png", ""),
        r"line 4, column 'depth': empty, but line 2 of the same split \(source_train\) has a "
        r"'depth' file; give one on every source_train row or on none"),
    "unknown column": (lambda f: _replace_line(f, 1, "normals_mask", "normal_mask"),
                       r"line 1: unknown column 'normal_mask'; the columns are"),
    "mask without its label": (
        lambda f: _replace_line(f, 2, "source/normals/train_000.png,,",
                                ",source/normals/train_000.png,"),
        r"line 2, column 'normals_mask': a mask needs its 'normals' file on the same row"),
    "duplicate image": (lambda f: _replace_line(f, 3, "images/train_001", "images/train_000"),
                        r"line 3, column 'image' \(.*source/images/train_000\.png\): image "
                        r"'source/images/train_000\.png' is already on line 2"),
    "wrong keypoint count": (lambda f: (f / "source/keypoints/val_000.json").write_text(
        json.dumps([[1, 2, 3, True]])),
        r"line 6, column 'keypoints' \(.*source/keypoints/val_000\.json\): expected a list "
        r"of 16 keypoints \(the count in dataset\.json\), got 1 entries"),
    "wrong extension": (lambda f: _replace_line(f, 2, "depth/train_000.png",
                                                "depth/train_000.tif"),
                        r"line 2, column 'depth' \(source/depth/train_000\.tif\): expected a "
                        r"\.png or \.npy or \.exr file"),
    "no class names": (lambda f: _describe(f, class_names=None),
                       r"dataset\.json: the manifest has segmentation files, so 'class_names'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_manifest_is_one_error_naming_row_column_and_file(tmp_path, case):
    folder = tmp_path / "pair"
    shutil.copytree(DUMMY, folder)
    breaker, expected = BAD[case]
    breaker(folder)
    with pytest.raises(ValueError) as err:
        _build(folder, tmp_path / "data")
    message = str(err.value)
    assert "\n" not in message, message
    if case != "no class names":
        assert message.startswith(f"{folder / 'manifest.csv'}, "), message
    import re

    assert re.search(expected, message), message
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").rglob(
        "dataset_info.json"))


@pytest.mark.parametrize("case", ["corrupt pixels", "class id too large"])
def test_bad_file_found_while_writing_leaves_nothing_that_looks_complete(tmp_path, case):
    """Files whose header is fine but whose content is not fail during writing: the error
    names the row and file, TFDS's unfinished folder is all that is left, and the fixed
    folder then builds."""
    folder = tmp_path / "pair"
    shutil.copytree(DUMMY, folder)
    rel = "target/segmentation/test_001.png"
    original = (folder / rel).read_bytes()
    if case == "corrupt pixels":
        _truncate(folder, rel)
        expected = r"line 15, column 'segmentation' \(.*test_001\.png\): .*(truncated|corrupt)"
    else:
        from PIL import Image

        ids = np.zeros((32, 32), np.uint8)
        ids[3, 4] = 200
        Image.fromarray(ids).save(folder / rel)
        expected = (r"line 15, column 'segmentation' \(.*test_001\.png\): class id 200 at "
                    r"pixel \(row 3, column 4\) is not below the 15 classes")
    data_dir = tmp_path / "data"
    with pytest.raises(ValueError, match=expected):
        _build(folder, data_dir)
    assert not list(data_dir.rglob("dataset_info.json"))
    (config_dir,) = data_dir.glob("sim2real_manifest/*")
    assert all(p.name.startswith("incomplete") for p in config_dir.iterdir())
    # What a killed build leaves (TFDS removes its folder only when the build raises);
    # the successful build removes it (issue 30), not another version's.
    killed = config_dir / "incomplete.K1LLED_1.0.0"
    (killed / "sim2real_manifest-target_test.tfrecord-00000-of-00001").parent.mkdir(
        parents=True)
    (killed / "sim2real_manifest-target_test.tfrecord-00000-of-00001").write_bytes(b"half")
    other = config_dir / "incomplete.OTHER1_2.0.0"
    other.mkdir()
    (folder / rel).write_bytes(original)
    assert _build(folder, data_dir).info.splits["target_test"].num_examples == 3
    assert sorted(p.name for p in config_dir.iterdir()) == ["1.0.0", other.name]


def test_a_manifest_saved_with_a_byte_order_mark_builds(tmp_path):
    """Issue 30: Excel's "CSV UTF-8" starts with a BOM, which was read as part of the first
    column's name (unknown column '\\ufeffdomain')."""
    folder = tmp_path / "pair"
    shutil.copytree(DUMMY, folder)
    for name in ("manifest.csv", "dataset.json"):
        text = (folder / name).read_text(encoding="utf-8")
        (folder / name).write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    builder = _build(folder, tmp_path / "data")
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == SPLITS
