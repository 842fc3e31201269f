"""``already_registered``: the guard that lets a builder module be imported twice.

A builder package can be imported under two names: ``tada_datasets.<name>`` when installed
(or through ``datasets/__init__.py``) and ``datasets.<name>`` when pytest imports the
checkout's ``datasets/`` by path. Each import defines the ``Builder`` class again, and TFDS
raises "Dataset with name <name> already registered." on the second registration, so a
builder passes ``skip_registration=already_registered("<name>")``: the second copy only
defines the class.
"""

from __future__ import annotations

import tensorflow_datasets as tfds


def already_registered(name: str) -> bool:
    """True when TFDS already lists a builder called ``name`` (TFDS's public registry
    listing, ``tfds.core.registered.list_imported_builders``)."""
    return name in tfds.core.registered.list_imported_builders()
