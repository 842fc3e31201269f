"""Data parallelism (--distribution): two CPU devices train like one on the same global batch.

The device count must be fixed before the backend starts, so each backend runs
``tests/distribution_probe.py`` in a subprocess: HeadFreeze phase 1, then phase 2 with the
head frozen and a fresh optimizer, once on one device and once data-parallel over two
logical CPU devices, from the same weights and batches. The batches put 3 source + 1
target examples on one replica and 1 + 3 on the other, so per-replica loss means or
per-replica BatchNorm statistics would change the numbers.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tada_keras import backend as tada_backend
from tada_keras.run import RunConfig, validate

HERE = os.path.dirname(os.path.abspath(__file__))


def _probe(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    if backend == "jax":
        # Two host devices on a 2-core machine: once (CI, 2026-12-05) one replica did not
        # reach the all-reduce within XLA's 40 s rendezvous limit and XLA aborted. Keep
        # each replica's ops single-threaded (no intra-op tasks queued behind a replica
        # that waits in the all-reduce) and allow a slow machine 300 s.
        env["XLA_FLAGS"] = ("--xla_force_host_platform_device_count=2"
                            " --xla_cpu_multi_thread_eigen=false"
                            " --xla_cpu_collective_call_terminate_timeout_seconds=300")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "distribution_probe.py"),
                           "none", "mirrored"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_two_devices_follow_the_single_device_trajectory(backend):
    out = _probe(backend)
    single, parallel = out["none"], out["mirrored"]
    assert single["replicas"] == 1 and parallel["replicas"] == 2
    for phase in ("phase1", "phase2"):
        a, b = single["history"][phase], parallel["history"][phase]
        assert len(a) == len(b) == 3
        for step_a, step_b in zip(a, b):
            for key in ("loss", "source_main"):
                assert step_b[key] == pytest.approx(step_a[key], rel=2e-4, abs=1e-5), (
                    phase, key, step_a, step_b)
        # The anchor losses of phase 2 (source and target) too.
        assert {"source_anchor", "target_anchor"} <= set(a[-1]) if phase == "phase2" else True
    # Phase 2 froze the head on both; phase 1 trained it.
    for run in (single, parallel):
        assert run["phase1_head_change"] > 0 and run["phase2_head_change"] == 0.0
        assert run["optimizer_steps"] == 3  # the fresh phase-2 optimizer's count
    for path, w in single["weights"].items():
        np.testing.assert_allclose(parallel["weights"][path], w, rtol=1e-3, atol=1e-4,
                                   err_msg=path)


def test_bad_distribution_flags_are_clear_errors():
    with pytest.raises(ValueError, match=r"--distribution='ring'.*none.*mirrored"):
        validate(RunConfig(model_dir="x", distribution="ring"))
    with pytest.raises(ValueError, match=r"--distribution=mirrored.*TensorFlow or JAX"):
        tada_backend.validate_distribution("mirrored", backend="torch")
    with pytest.raises(ValueError, match=r"--distribution=mirrored with --da"):
        validate(RunConfig(model_dir="x", distribution="mirrored", da="dann"))
