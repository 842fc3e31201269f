"""tada_keras.atomic: the old file or the complete new one, never a half."""

import json
import os

import pytest

from tada_keras.atomic import atomic_path, write_json, write_text


def test_success_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")
    write_json(str(path), {"b": 1, "a": 2})
    assert json.loads(path.read_text()) == {"a": 2, "b": 1}
    assert path.read_text().index('"a"') < path.read_text().index('"b"')  # sorted keys
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_a_failing_writer_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "table.md"
    write_text(str(path), "complete table\n")
    with pytest.raises(RuntimeError):
        with atomic_path(str(path)) as tmp:
            with open(tmp, "w") as f:
                f.write("half a ta")
            raise RuntimeError("disk full")
    assert path.read_text() == "complete table\n"
    assert os.listdir(tmp_path) == ["table.md"]


def test_temporary_keeps_the_ending_writers_dispatch_on(tmp_path):
    with atomic_path(str(tmp_path / "final.weights.h5"), ".weights.h5") as tmp:
        assert tmp.endswith(".weights.h5") and os.path.dirname(tmp) == str(tmp_path)
        open(tmp, "w").close()
    with atomic_path(str(tmp_path / "figure.png")) as tmp:
        assert tmp.endswith(".png")
        open(tmp, "w").close()
    assert sorted(os.listdir(tmp_path)) == ["figure.png", "final.weights.h5"]


def test_files_get_the_permissions_open_would_give(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    write_text(str(tmp_path / "metrics.json"), "{}")
    assert (os.stat(tmp_path / "metrics.json").st_mode & 0o777) == (0o666 & ~mask)
