"""TensorFlow, JAX and PyTorch train the same model to the same numbers."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backend_probe.py")


def _probe(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, PROBE], env=env, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"{backend}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_three_backends_agree_after_three_training_steps():
    results = {b: _probe(b) for b in ("tensorflow", "jax", "torch")}
    ref = results["tensorflow"]
    assert ref["losses"][2] < ref["losses"][0]
    for backend in ("jax", "torch"):
        np.testing.assert_allclose(results[backend]["losses"], ref["losses"], rtol=2e-3,
                                   err_msg=backend)
        np.testing.assert_allclose(results[backend]["kernel"], ref["kernel"], rtol=1e-2,
                                   atol=1e-4, err_msg=backend)
