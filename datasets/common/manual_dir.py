"""Checks of a builder's manually downloaded files (TFDS ``manual_dir``)."""

from __future__ import annotations


def require_files(root, relative_paths, instructions: str) -> None:
    """Raises FileNotFoundError naming the first missing path under ``root`` (an
    ``epath.Path``), followed by the builder's download ``instructions``."""
    for rel in relative_paths:
        path = root / rel
        if not path.exists():
            raise FileNotFoundError(
                f"Missing or incomplete manual_dir: {path} not found.\n{instructions}")
