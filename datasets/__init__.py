"""TFDS builders of tada-keras, installed as the package ``tada_datasets``.

``import tada_datasets`` registers every builder with TFDS, after which
``tfds.load("sim2real_rooms/default")`` (etc.) works. Builders whose optional
dependencies are missing are skipped with a warning.
"""

import importlib
import logging
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    if _info.ispkg:
        try:
            importlib.import_module(f"{__name__}.{_info.name}")
        except ImportError as _err:  # pragma: no cover - depends on the environment
            logging.warning("tada_datasets: builder %s not registered: %s", _info.name, _err)
