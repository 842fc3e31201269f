"""One training per --model_dir (issue 30): the lock of ``training/run_lock.py``."""

import json
import os
import socket
import subprocess
import sys

import pytest

from tada_keras.training import run_lock


def test_a_held_directory_is_refused_naming_it_and_the_holder(tmp_path):
    model_dir = str(tmp_path / "run")
    with run_lock.locked(model_dir) as path:
        assert path == os.path.join(model_dir, "run.lock")
        with open(path) as f:
            holder = json.load(f)
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        # flock locks belong to an open file: a second acquire in this process conflicts
        # exactly as another process's would.
        with pytest.raises(run_lock.RunDirectoryInUse) as err:
            with run_lock.locked(model_dir):
                pass
        message = str(err.value)
        assert message.startswith(f"--model_dir={model_dir} is in use by another training")
        assert f"process {os.getpid()} on host {socket.gethostname()}" in message
        assert os.path.exists(path)  # the refused command left the holder's lock alone
    # Released: the lock file is gone, and so is the folder it created for nothing.
    assert not os.path.exists(model_dir)
    with run_lock.locked(model_dir):  # and the directory can be locked again
        pass


def test_a_refused_run_leaves_no_directory_behind(tmp_path):
    model_dir = tmp_path / "a" / "b" / "run"
    with pytest.raises(ValueError, match="bad setting"):
        with run_lock.locked(str(model_dir)):
            raise ValueError("bad setting")
    assert not (tmp_path / "a").exists()
    with run_lock.locked(str(model_dir)):
        (model_dir / "config.json").write_text("{}")
    assert sorted(os.listdir(model_dir)) == ["config.json"]  # written work stays


def test_the_lock_of_a_killed_process_is_taken_over_with_a_message(tmp_path):
    model_dir = tmp_path / "run"
    # A process that takes the lock and is killed (SIGKILL: no cleanup at all).
    code = ("import os, signal, sys; from tada_keras.training import run_lock; "
            "ctx = run_lock.locked(sys.argv[1]); ctx.__enter__(); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", code, str(model_dir)], timeout=120)
    assert proc.returncode == -9
    with open(model_dir / "run.lock") as f:
        dead = json.load(f)["pid"]
    messages = []
    with run_lock.locked(str(model_dir), log=messages.append):
        with open(model_dir / "run.lock") as f:
            assert json.load(f)["pid"] == os.getpid()
    assert len(messages) == 1 and f"left by process {dead} on host" in messages[0]
    assert "taking it over" in messages[0]
