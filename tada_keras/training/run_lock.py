"""One training at a time per ``--model_dir``: ``model_dir/run.lock``.

The lock is the operating system's (``fcntl.flock``, exclusive, non-blocking) on
``model_dir/run.lock``, whose text names the holder (process id, host, start time). The
kernel releases it when its process ends, however it ends (``kill -9`` included), so a
killed run never leaves a lock that blocks its resume; the file it leaves is taken over
with a message naming the process that left it. A second command on a held directory is
refused with one line naming the directory and the holder.

Why not an ``O_EXCL`` lock file with a PID liveness check: after a reboot or in a
container a dead run's PID is often reused (a container's first process is PID 1), and a
PID says nothing about a process on another host; the kernel's lock has neither problem.
On NFS, Linux maps ``flock`` onto NFS byte-range locks (NFSv4: the server's lock).

The lock file exists only while a command holds it (released: unlinked first, then
unlocked); a ``model_dir`` that the command created and left empty (its settings were
refused before anything was written) is removed again, so bad input leaves nothing.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import time

LOCK_FILE = "run.lock"


class RunDirectoryInUse(ValueError):
    """``model_dir`` is held by another running command."""


def _holder_text() -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": datetime.datetime.now(datetime.timezone.utc)
                       .strftime("%Y-%m-%dT%H:%M:%SZ")}, sort_keys=True)


def describe(text: str) -> str:
    """``process 123 on host h (since …)`` of a lock file's text (or what is known)."""
    try:
        holder = json.loads(text)
        return f"process {holder['pid']} on host {holder['host']} (since {holder['since']})"
    except (ValueError, TypeError, KeyError):
        return "a process that has not written its id yet"


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode("utf-8", "replace").strip()


def _missing_ancestors(path: str) -> list[str]:
    """The folders ``os.makedirs(path)`` would create, outermost first."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.exists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing[::-1]


def _acquire(model_dir: str, path: str, log, flag: str) -> int:
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:  # the folder was removed by a refused command: again
            os.makedirs(model_dir, exist_ok=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = ""
            for _ in range(20):  # the holder writes its id right after locking
                text = _read(fd)
                if text:
                    break
                time.sleep(0.05)
            os.close(fd)
            raise RunDirectoryInUse(
                f"--{flag}={model_dir} is in use by another training: {describe(text)} "
                f"holds {path}; wait for it to end, or use another --{flag}") from None
        # Locked; but a holder that released between our open and our lock unlinked the
        # file we hold: lock the file that is there now instead.
        try:
            ours = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            ours = False
        if not ours:
            os.close(fd)
            continue
        left = _read(fd)
        if left:
            log(f"{path} was left by {describe(left)}, which ended without releasing it "
                "(killed?); taking it over")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, _holder_text().encode("utf-8"))
        os.fsync(fd)
        return fd
    raise RunDirectoryInUse(f"--{flag}={model_dir}: could not lock {path} (other commands "
                            "keep creating and removing it); try again")


@contextlib.contextmanager
def locked(model_dir: str, log=print, flag: str = "model_dir"):
    """Holds ``model_dir/run.lock`` inside the block (``model_dir`` is created if
    needed, and removed again if the block leaves it empty). Raises RunDirectoryInUse
    (a ValueError naming ``--flag`` and the holder) when another command holds it."""
    created = _missing_ancestors(model_dir)
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, LOCK_FILE)
    fd = None
    try:
        fd = _acquire(model_dir, path, log, flag)
        yield path
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)  # before unlocking: nobody locks a file on its way out
            os.close(fd)
        for folder in reversed(created):  # only empty ones: nothing was written there
            try:
                os.rmdir(folder)
            except OSError:
                break
