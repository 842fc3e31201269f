"""--flagfile resolution: as absl, then next to the including file, then the shipped configs."""

import os
import subprocess
import sys

import pytest

from tada_keras import flagfiles

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_shipped_configs_are_the_repository_configs_and_found_by_name(tmp_path, monkeypatch):
    assert os.path.samefile(flagfiles.shipped_dir(), os.path.join(ROOT, "configs"))
    assert {"demo.flags", "tiny.flags", "faces.flags"} <= set(flagfiles.shipped_names())
    monkeypatch.chdir(tmp_path)  # outside the repository
    tiny = os.path.join(ROOT, "configs", "tiny.flags")
    for name in ("tiny.flags", "configs/tiny.flags", "tiny"):
        assert os.path.samefile(flagfiles.resolve(name), tiny), name
    # A nested reference (faces_frontal -> configs/faces.flags) resolves from anywhere.
    args = flagfiles.expand(["--flagfile=faces_frontal", "--steps=3"])
    assert "--source_dataset=sfsnet_synthetic/frontal" in args
    assert "--target_dataset=facewarehouse" in " ".join(args)
    assert args[-1] == "--steps=3" and not any(a.startswith("--flagfile") for a in args)


def test_expand_keeps_order_and_resolves_next_to_the_including_file(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.flags").write_text("# comment\n\n// other\n--steps=1\n")
    (tmp_path / "sub" / "outer.flags").write_text("--steps=0\n--flagfile=inner.flags\n"
                                                  "  --method=baseline  \n")
    monkeypatch.chdir(tmp_path)
    assert flagfiles.expand(["--seed=2", "--flagfile", "sub/outer.flags", "--steps=9"]) == [
        "--seed=2", "--steps=0", "--steps=1", "--method=baseline", "--steps=9"]


def test_missing_and_cyclic_flagfiles_are_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(flagfiles.FlagfileError, match=r"--flagfile=nope.flags: no such file"
                       r".*shipped configs: .*demo.flags"):
        flagfiles.expand(["--flagfile=nope.flags"])
    (tmp_path / "a.flags").write_text("--flagfile=b.flags\n")
    (tmp_path / "b.flags").write_text("--flagfile=a.flags\n")
    with pytest.raises(flagfiles.FlagfileError, match="includes itself"):
        flagfiles.expand(["--flagfile=a.flags"])


def test_cli_reports_a_missing_flagfile_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tada_keras.train", "--flagfile=nope.flags"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 2
    assert "error: --flagfile=nope.flags: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_lists_the_commands_own_flags_and_exits_0(tmp_path):
    for module, flag in (("tada_keras.predict", "--images"), ("tada_keras.train", "--method"),
                         ("tada_keras.export", "--format")):
        proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"  {flag}:" in proc.stdout and "shipped configs: demo.flags" in proc.stdout
