"""Issue 30, item 9: the six "`FeatureConnector.dtype` is deprecated" warnings of a
newcomer's ``make demo`` come from TFDS's own ``Tensor.decode_example``, never from our
code; exactly those are filtered (tada_keras/data/tfds_warnings.py)."""

import logging
import os
import traceback

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging as absl_logging
from tensorflow_datasets.core.features import feature as feature_lib

from tada_keras.data import tfds_warnings


@pytest.fixture
def absl_records():
    """Records reaching absl's logger's handlers, with log_first_n's counters reset (so a
    warning logged earlier in this process can show again)."""
    absl_logging._log_counter_per_token.clear()
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Collect(logging.WARNING)
    logger = logging.getLogger("absl")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _zlib_tensor():
    return tfds.features.Tensor(shape=(2, 3), dtype=np.float32,
                                encoding=tfds.features.Encoding.ZLIB)


def test_decoding_a_zlib_tensor_warns_in_tfds_and_only_that_is_filtered(absl_records):
    tfds_warnings.install()
    feature = _zlib_tensor()
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    encoded = tf.constant(feature.encode_example(value))
    np.testing.assert_array_equal(feature.decode_example(encoded).numpy(), value)
    assert not [m for m in absl_records if m.startswith(tfds_warnings.MESSAGE)]

    # The same decode without the filter: TFDS warns (the cause is inside TFDS) ...
    logging.getLogger("absl").removeFilter(tfds_warnings._FILTER)
    try:
        _zlib_tensor().decode_example(encoded)
    finally:
        tfds_warnings.install()
    assert [m for m in absl_records if m.startswith(tfds_warnings.MESSAGE)]
    absl_records.clear()
    # ... and code outside TFDS's decoder reading .dtype still gets the warning.
    assert _zlib_tensor().dtype == tf.float32
    assert [m for m in absl_records if m.startswith(tfds_warnings.MESSAGE)]


def test_our_pipeline_never_reads_feature_dtype(tmp_path, monkeypatch):
    import tada_datasets  # noqa: F401
    from tada_keras import conventions as C
    from tada_keras.data import DataSpec, eval_dataset, load_split, mixed_train_dataset

    callers = []

    def record(class_name):
        stack = traceback.extract_stack()[:-1]
        callers.append([(os.path.basename(f.filename), f.name) for f in stack[-4:]])

    monkeypatch.setattr(feature_lib, "log_tf_warning", record)
    data_dir = str(tmp_path)
    tfds.builder("sim2real_rooms/tiny", data_dir=data_dir).download_and_prepare()
    spec = DataSpec(main_task="normals", anchor_task="segmentation")
    source = load_split("sim2real_rooms/tiny", "source_train", data_dir, shuffle=True)
    target = load_split("sim2real_rooms/tiny", "target_train", data_dir, shuffle=True)
    next(iter(mixed_train_dataset(source, target, spec, 2, 2, use_target_main=False,
                                  use_anchor=True, use_target_anchor=True)))
    test = load_split("sim2real_rooms/tiny", "target_test", data_dir)
    next(iter(eval_dataset(test, spec, C.DOMAIN_TARGET, 2)))
    assert callers, "expected TFDS's decoder to read a bytes-encoded Tensor's dtype"
    for stack in callers:
        assert ("tensor_feature.py", "decode_example") in stack, stack
