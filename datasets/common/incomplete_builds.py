"""TFDS's unfinished build folders that a killed build leaves beside the data.

TFDS writes a build into ``<config dir>/incomplete.XXXXXX_<version>/`` and renames it to
``<version>/`` when it is complete; it removes the folder itself when the build raises,
but a killed build (``kill -9``, a lost machine) leaves it behind, and the next, successful
build writes a new one, so the old one stayed forever. The builders of this project
remove such leftovers of their version once a build has succeeded (TFDS cannot finish two
builds of one version at once: the later one's rename onto the finished folder fails).
"""

from __future__ import annotations

from absl import logging
from etils import epath

INCOMPLETE_PREFIX = "incomplete."


def remove_incomplete_builds(data_dir) -> list[str]:
    """Removes the ``incomplete.*_<version>`` folders beside the finished ``data_dir``
    (``<config dir>/<version>``); returns their paths."""
    finished = epath.Path(data_dir)
    removed = []
    for folder in sorted(finished.parent.glob(f"{INCOMPLETE_PREFIX}*_{finished.name}")):
        if folder.is_dir():
            folder.rmtree(missing_ok=True)
            removed.append(str(folder))
            logging.warning("removed %s, an unfinished build of %s left by an interrupted "
                            "build", folder, finished)
    return removed


class RemovesIncompleteBuilds:
    """Mixin of a ``tfds.core.DatasetBuilder``: after ``download_and_prepare`` succeeds,
    the unfinished build folders of its version are removed (see the module doc)."""

    def download_and_prepare(self, *args, **kwargs):
        result = super().download_and_prepare(*args, **kwargs)
        remove_incomplete_builds(self.data_dir)
        return result
