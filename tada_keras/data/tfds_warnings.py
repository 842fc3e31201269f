"""The one TFDS warning that TFDS causes itself, filtered precisely.

tensorflow-datasets 4.9's ``Tensor.decode_example`` (``features/tensor_feature.py``) reads
its own deprecated ``dtype`` property (``if self.dtype == tf.uint64``) whenever it decodes a
tensor stored as bytes or ZLIB, which is how the builders store masks and depth maps. Each
such feature then logs "`FeatureConnector.dtype` is deprecated. Please change your code
to use ... `np_dtype` ... `tf_dtype`" once per process: advice to change code that is
TFDS's (no code of this project reads ``FeatureConnector.dtype``; tests/test_tfds_warnings.py
checks both). ``install`` drops exactly that message, and only when TFDS's
``Tensor.decode_example`` is on the stack; the same warning from any other caller (e.g.
code of yours) still shows.
"""

from __future__ import annotations

import logging
import os
import sys

MESSAGE = "`FeatureConnector.dtype` is deprecated."
_CALLER = ("decode_example", os.path.join("tensorflow_datasets", "core", "features",
                                          "tensor_feature.py"))


class TfdsTensorDtypeFilter(logging.Filter):
    """Drops TFDS's own ``FeatureConnector.dtype`` deprecation warning of
    ``Tensor.decode_example`` (see the module doc); passes every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(MESSAGE):
            return True
        frame = sys._getframe(1)
        while frame is not None:
            code = frame.f_code
            if code.co_name == _CALLER[0] and code.co_filename.endswith(_CALLER[1]):
                return False
            frame = frame.f_back
        return True


_FILTER = TfdsTensorDtypeFilter()


def install() -> None:
    """Adds the filter to absl's logger (which TFDS logs through); idempotent."""
    logger = logging.getLogger("absl")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
