"""Tests for the shared image reader and the per-split checks used by the face builders."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from . import image_io, registration, split_checks


def _encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(48 * 32 * 3, dtype=np.uint8).reshape(32, 48, 3)).save(buf, fmt)
    return buf.getvalue()


def test_read_image_decodes_and_converts(tmp_path):
    path = tmp_path / "ok.png"
    path.write_bytes(_encoded("PNG"))
    assert image_io.read_image(path, expected="x").shape == (32, 48, 3)
    assert image_io.read_image(path, expected="x", mode="L").shape == (32, 48)


@pytest.mark.parametrize("fmt, cut, reason", [
    ("PNG", 0.5, "image file is truncated"),
    ("JPEG", 0.5, "truncated"),
    ("PNG", 0.0, "not a recognised image format"),
    ("TEXT", 1.0, "not a recognised image format"),
])
def test_read_image_error_names_path_reason_and_expectation(tmp_path, fmt, cut, reason):
    data = b"not an image at all" if fmt == "TEXT" else _encoded(fmt)
    path = tmp_path / "sub dir" / "pose_3.png"
    path.parent.mkdir()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ValueError) as err:
        image_io.read_image(path, expected="an 8-bit RGB PNG")
    msg = str(err.value)
    assert msg.startswith(f"{path}: cannot decode this image file (")
    assert reason in msg.lower() and "expected an 8-bit RGB PNG" in msg
    assert "BytesIO" not in msg


def test_read_png_keeps_the_bit_depth_and_palette_indices(tmp_path):
    import tensorflow as tf

    rgb16 = np.arange(4 * 5 * 3, dtype=np.uint16).reshape(4, 5, 3) * 1000
    path16 = tmp_path / "rgb16.png"
    path16.write_bytes(tf.io.encode_png(rgb16).numpy())
    got = image_io.read_png(path16)
    assert got.dtype == np.uint16 and np.array_equal(got, rgb16)
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    assert np.array_equal(image_io.decode_png_bytes(tf.io.encode_png(gray[..., None]).numpy()),
                          gray)
    palette = Image.fromarray(gray, mode="L").convert("P")
    buf = io.BytesIO()
    palette.save(buf, "PNG")
    assert np.array_equal(image_io.decode_png_bytes(buf.getvalue()), np.asarray(palette))


def test_read_png_errors_name_the_file(tmp_path):
    good = _encoded("PNG")
    for name, data, message in [("truncated.png", good[: len(good) // 2], "truncated PNG"),
                                ("text.png", b"hello" * 10, "not a PNG file")]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match=f"{name}: {message}"):
            image_io.read_png(path)
    with pytest.raises(FileNotFoundError, match="missing.png: cannot read"):
        image_io.read_png(tmp_path / "missing.png")


@pytest.mark.parametrize("name", ["facewarehouse", "nyu_depth_v2_normals", "sfsnet_synthetic",
                                  "sim2real_manifest", "sim2real_rooms", "suncg_pbrs"])
def test_a_builder_imported_under_two_names_registers_once(name):
    import importlib

    import tensorflow_datasets as tfds

    module = f"{name}.{name}_dataset_builder"
    classes = {importlib.import_module(f"{package}.{module}").Builder
               for package in ("tada_datasets", "datasets")}
    assert len(classes) == 2  # two module names, two classes, one registration
    assert registration.already_registered(name) and tfds.builder_cls(name) in classes
    assert not registration.already_registered(f"{name}_never_defined")


def test_tally_skips_counts_once_and_names_a_few(caplog):
    tally = split_checks.InvalidNormalsTally("D", "train", "/data", "all zero", "Check X.")
    assert tally.keep("a.png", 10)
    for k in range(7):
        assert not tally.keep(f"bad_{k}.png", 0)
    assert not tally.keep("bad_0.png", 0)  # a second look at one file is not a second skip
    assert tally.finish() == 7
    (record,) = [r for r in caplog.records if "skipped" in r.getMessage()]
    msg = record.getMessage()
    assert "split 'train': skipped 7 of 8" in msg and "bad_4.png" in msg
    assert "bad_5.png" not in msg and "and 2 more" in msg


def test_tally_with_nothing_valid_raises_naming_split_and_directory():
    tally = split_checks.InvalidNormalsTally("D", "test", "/data/dir", "all zero", "Check X.")
    tally.keep("bad.png", 0)
    with pytest.raises(ValueError, match=r"D: split 'test' has no valid normal pixel at all: .*"
                                         r"1 of its examples under /data/dir are all zero "
                                         r"\(bad\.png\)\. Check X\."):
        tally.finish()
    # A split that saw no example has nothing to report.
    assert split_checks.InvalidNormalsTally("D", "v", "/d", "w").finish() == 0


def test_drop_empty_splits(caplog):
    kept = split_checks.drop_empty_splits(
        "D", {"train": [1], "validation": [], "test": [2]}, {"validation": "no subject"}, "x")
    assert kept == {"train": [1], "test": [2]}
    assert any("split 'validation' left out: no subject" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(ValueError, match="D: nothing here"):
        split_checks.drop_empty_splits("D", {"train": []}, {"train": "-"}, "nothing here")


def test_require_files_names_the_first_missing_path_and_the_instructions(tmp_path):
    from etils import epath

    from .manual_dir import require_files

    (tmp_path / "present.txt").write_text("x")
    require_files(epath.Path(tmp_path), ["present.txt"], "download it")  # no error
    with pytest.raises(FileNotFoundError) as err:
        require_files(epath.Path(tmp_path), ["present.txt", "a/missing.mat", "b.mat"],
                      "Download the toolbox into manual_dir.")
    text = str(err.value)
    assert str(tmp_path / "a" / "missing.mat") in text and "b.mat" not in text
    assert text.endswith("Download the toolbox into manual_dir.")


def test_only_the_unfinished_builds_of_the_finished_version_are_removed(tmp_path):
    from .incomplete_builds import remove_incomplete_builds

    config = tmp_path / "builder" / "config"
    for name in ("1.0.0", "incomplete.AB12CD_1.0.0", "incomplete.EF34GH_1.0.0",
                 "incomplete.IJ56KL_1.1.0"):
        (config / name).mkdir(parents=True)
        (config / name / "shard").write_bytes(b"x")
    removed = remove_incomplete_builds(config / "1.0.0")
    assert [os.path.basename(p) for p in removed] == ["incomplete.AB12CD_1.0.0",
                                                      "incomplete.EF34GH_1.0.0"]
    assert sorted(p.name for p in config.iterdir()) == ["1.0.0", "incomplete.IJ56KL_1.1.0"]
    assert (config / "1.0.0" / "shard").exists()
