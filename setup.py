"""Package layout only (metadata and dependencies are in pyproject.toml).

* The top-level `datasets/` folder (TFDS builders) is installed as `tada_datasets`, so that
  `import tada_datasets` never collides with Hugging Face's `datasets` package.
* The top-level `configs/` folder (flagfiles) is installed as `tada_keras/configs/`, so
  `tada-train --flagfile=demo.flags` finds it outside the repository
  (`tada_keras/flagfiles.py`).
* The wheel leaves out the builders' tests (`*_test.py`), their `dummy_data/` fixtures and
  the scripts that write those fixtures: they are for the repository's test suite.
"""

import fnmatch

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

DEV_ONLY = ("*_test.py", "make_dummy_data.py")


class BuildPyWithoutTests(build_py):
    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [(pkg, mod, path) for pkg, mod, path in modules
                if not any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) for p in DEV_ONLY)]


setup(
    packages=find_packages(include=["tada_keras", "tada_keras.*"])
    + ["tada_keras.configs", "tada_datasets"]
    + [f"tada_datasets.{p}" for p in find_packages("datasets")],
    package_dir={"tada_datasets": "datasets", "tada_keras.configs": "configs"},
    cmdclass={"build_py": BuildPyWithoutTests},
)
