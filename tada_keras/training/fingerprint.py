"""Fingerprints that prove two runs are paired: the initial weights, the first training
batches, the datasets, the software. ``run.py`` writes them into ``model_dir/
fingerprints.json`` before the first step; the harness copies them into the run record
(``experiments/records.py``) and its paired report counts the pairs that share them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess

import numpy as np

# the repository of this source tree (its commit is a run record's)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIBRARIES = ("keras", "tensorflow", "tensorflow-datasets", "numpy", "jax", "jaxlib", "torch")


def _update(digest, value) -> None:
    value = np.ascontiguousarray(np.asarray(value))
    digest.update(f"{value.dtype.str}{value.shape}".encode())
    digest.update(value.tobytes())


def weights_digest(model) -> str:
    """SHA-256 of every weight of ``model`` (path, dtype, shape and bytes, in order)."""
    import keras

    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(variable.path.encode())
        _update(digest, keras.ops.convert_to_numpy(variable))
    return digest.hexdigest()


def batch_digest(x, y, domain_key: str = "domain") -> dict:
    """Per domain present in the batch (``y[domain_key]``: 0 source, 1 target): SHA-256 of
    its images and of each of its label arrays (``{"source": {"image": …, key: …}}``).
    Methods read different labels, so pairs compare the keys they share."""
    domain = np.asarray(y[domain_key]).reshape(-1)
    out = {}
    for name, value in (("source", 0), ("target", 1)):
        rows = domain == value
        if not rows.any():
            continue
        entry = {}
        for key, array in (("image", x), *sorted(y.items())):
            array = np.asarray(array)
            if key == domain_key or array.ndim == 0 or array.shape[0] != domain.shape[0]:
                continue
            digest = hashlib.sha256()
            _update(digest, array[rows])
            entry[key] = digest.hexdigest()
        out[name] = entry
    return out


def library_versions() -> dict:
    """Installed versions of the libraries that compute a run's numbers."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def dataset_identity(info) -> dict:
    """Name, config, version and example count per split of a TFDS ``info``."""
    return {"name": info.name, "config": getattr(info, "config_name", None) or None,
            "version": str(info.version),
            "splits": {name: int(split.num_examples) for name, split in info.splits.items()}}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "system": platform.platform(),
            "python": platform.python_version()}


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
