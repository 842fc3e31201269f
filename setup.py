"""Package layout only (metadata is in pyproject.toml).

The top-level `datasets/` folder (TFDS builders) is installed as `tada_datasets`, so
that `import tada_datasets` never collides with Hugging Face's `datasets` package.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["tada_keras", "tada_keras.*"])
    + ["tada_datasets"]
    + [f"tada_datasets.{p}" for p in find_packages("datasets")],
    package_dir={"tada_datasets": "datasets"},
)
