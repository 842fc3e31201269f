"""Atomic file writes: a reader sees the old file or the complete new one, never a half.

Every output that another step trusts (checkpoints' ``state.json``, ``DONE``, final
weights, ``model.keras``, ``metrics.json``, result records, tables, figures, the converted
weights cache) is written through ``atomic_path``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


@contextlib.contextmanager
def atomic_path(path: str, suffix: str | None = None):
    """Yields a temporary path in ``path``'s directory; when the block succeeds it replaces
    ``path`` (``os.replace``, atomic on POSIX), otherwise it is removed.

    ``suffix``: the temporary file's ending, for writers that dispatch on it (default: the
    extension of ``path``; Keras needs ``".weights.h5"`` / ``".keras"`` in full).
    """
    directory = os.path.dirname(path) or "."
    name = os.path.basename(path)
    ending = suffix if suffix is not None else os.path.splitext(name)[1]
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=f".tmp{ending}")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give what open() would
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_json(path: str, data, **dump_kwargs) -> None:
    """``json.dump`` (default ``indent=2, sort_keys=True``) to ``path``, atomically."""
    options = {"indent": 2, "sort_keys": True, **dump_kwargs}
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(data, f, **options)


def check_writable(path: str, flag: str, kind: str = "directory") -> None:
    """Raises ValueError naming ``--flag=path`` unless the command can write there:
    ``kind="directory"``: ``path`` is (or can be created as) a folder we can write in;
    ``kind="file"``: ``path`` can be written as a file (its folder created if needed).
    Checked before the work, by creating and removing an empty folder in the nearest
    existing one (what the command will do: permissions, read-only mounts, ``/proc``,
    a full disk all show up, whoever runs it)."""
    if kind == "file":
        if os.path.isdir(path):
            raise ValueError(f"--{flag}={path} is a directory; expected a file path")
        folder = os.path.dirname(os.path.abspath(path))
    else:
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"--{flag}={path} is a file, not a directory")
        folder = os.path.abspath(path)
    existing = folder
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"--{flag}={path}: {existing} is a file, not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".tada-write-check-"))
    except OSError as err:
        raise ValueError(f"--{flag}={path}: cannot write in {existing} "
                         f"({err.strerror or err})") from None


def replace_marked_block(path: str, begin: str, end: str, text: str) -> None:
    """Replaces what stands between the markers ``begin`` and ``end`` in the text file
    ``path`` (the README blocks that docs/*.py scripts generate) with ``text``, atomically.
    Raises ValueError naming the file when a marker is missing."""
    with open(path) as f:
        content = f.read()
    if begin not in content or end not in content:
        raise ValueError(f"{path} has no {begin} ... {end} markers")
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(head + begin + "\n" + text + "\n" + end + tail)
