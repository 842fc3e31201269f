"""The declared dependencies (pyproject.toml, the single source) match what the code imports.

* Every third-party module the package imports (``tada_keras/``, ``datasets/`` without its
  tests) comes from a declared dependency, and at module level only from a core one, so
  ``import tada_keras`` works without any extra.
* Every core dependency is imported by the package; every extra's package is imported by
  the package, the tests, the benchmarks or the docs scripts, unless ``NOT_IMPORTED`` says
  why it is needed anyway.
* What the tests, benchmarks and docs scripts import is declared (core or an extra).
* ``requirements.txt`` (the lock) pins every declared package.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import os
import re
import sys

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST_PARTY = {"tada_keras", "tada_datasets", "datasets"}
# Declared, never imported, and why.
NOT_IMPORTED = {
    "apache-beam": "the `tfds build` command line imports it to start",
    "dill": "tfds.testing (the builders' DatasetBuilderTestCase) imports it",
    "ruff": "the linter, a command",
    "tada-keras": "the dev extra's reference to the other extras",
    "importlib-resources": "tensorflow-datasets imports it to build a dataset (undeclared there)",
    "tensorboard": "tf.summary.scalar and tf.summary.image (the run's logs/) import it",
    "tf2onnx": "Keras's Model.export(format='onnx') imports it (tada-export --format=onnx)",
    "onnx": "tf2onnx writes the .onnx file with it (tada-export --format=onnx)",
}
# Import name -> distribution for packages that may not be installed here (the face
# annotator's own environment); installed ones are looked up in their metadata.
NOT_INSTALLED = {"mediapipe": "mediapipe", "face_alignment": "face-alignment",
                 "apache_beam": "apache-beam",
                 # A compiled module only, with no top_level.txt: Python 3.11's
                 # packages_distributions() infers top-level names from .py files only.
                 "OpenEXR": "openexr"}


# Packages of a tool that runs in its own environment (declared in its requirements file).
OWN_ENVIRONMENT = "datasets/face_landmarks/requirements-mediapipe.txt"


def _own_environment() -> set[str]:
    with open(os.path.join(ROOT, OWN_ENVIRONMENT)) as f:
        return {_requirement_name(line) for line in f if line.strip() and line[0] != "#"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str:
    return _norm(re.match(r"[A-Za-z0-9_.-]+", spec).group(0))


def _project():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def _python_files(folder, tests: bool | None):
    """``tests``: True only test files, False none, None all."""
    for dirpath, dirnames, files in os.walk(os.path.join(ROOT, folder)):
        dirnames[:] = [d for d in dirnames if d not in ("__pycache__", "dummy_data")]
        for name in files:
            if not name.endswith(".py"):
                continue
            is_test = name.endswith("_test.py") or name.startswith("test_") or \
                name == "conftest.py"
            if tests is None or tests == is_test:
                yield os.path.join(dirpath, name)


def _local_modules() -> set[str]:
    """Module names of the repository's own files (scripts import their neighbours)."""
    names = set()
    for folder in ("tada_keras", "datasets", "tests", "benchmarks", "docs"):
        for path in _python_files(folder, None):
            names.add(os.path.splitext(os.path.basename(path))[0])
            names.add(os.path.basename(os.path.dirname(path)))  # packages: datasets/<name>/
    return names


def _named_import(node) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("importorskip", "import_module", "find_spec")
            and bool(node.args) and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str))


def _imports(path):
    """(top-level module, at module level?) of every absolute import in a file."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    top_level = {id(node) for node in tree.body}
    # Module-level also counts imports inside module-level if/try blocks.
    for node in tree.body:
        if isinstance(node, (ast.If, ast.Try)):
            top_level |= {id(n) for n in ast.walk(node)}
    local = _local_modules()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        elif _named_import(node):  # pytest.importorskip("x"), importlib's find_spec("x")
            names = [node.args[0].value]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top in FIRST_PARTY or top in local:
                continue
            yield top, id(node) in top_level


@functools.cache
def _installed() -> dict:
    return importlib.metadata.packages_distributions()


def _distribution(module: str) -> str:
    dists = _installed().get(module)
    if dists:
        return _norm(dists[0])
    if module in NOT_INSTALLED:
        return NOT_INSTALLED[module]
    raise AssertionError(f"no installed distribution provides the module {module!r}")


def _scan(files):
    """{distribution: {file: module-level?}}"""
    out = {}
    for path in files:
        for module, module_level in _imports(path):
            where = out.setdefault(_distribution(module), {})
            rel = os.path.relpath(path, ROOT)
            where[rel] = where.get(rel, False) or module_level
    return out


def test_package_imports_only_declared_dependencies_and_extras_lazily():
    project = _project()
    core = {_requirement_name(s) for s in project["dependencies"]}
    extras = {_requirement_name(s) for specs in project["optional-dependencies"].values()
              for s in specs}
    package = _scan([*_python_files("tada_keras", None), *_python_files("datasets", False)])
    undeclared = {d: sorted(w) for d, w in package.items()
                  if d not in core | extras | _own_environment()}
    assert not undeclared, f"imported by the package but not declared: {undeclared}"
    eager = {d: sorted(f for f, top in w.items() if top) for d, w in package.items()
             if d not in core}  # (the annotator's mediapipe is imported lazily too)
    eager = {d: f for d, f in eager.items() if f}
    assert not eager, f"an extra's package imported at module level: {eager}"
    unused = core - set(package) - set(NOT_IMPORTED)
    assert not unused, f"core dependencies the package never imports: {sorted(unused)}"


def test_every_extra_is_used_and_dev_code_imports_only_declared_packages():
    project = _project()
    declared = {_requirement_name(s) for s in project["dependencies"]}
    for specs in project["optional-dependencies"].values():
        declared |= {_requirement_name(s) for s in specs}
    everything = _scan([*_python_files("tada_keras", None), *_python_files("datasets", None),
                        *_python_files("tests", None), *_python_files("benchmarks", None),
                        *_python_files("docs", None)])
    undeclared = {d: sorted(w) for d, w in everything.items()
                  if d not in declared | _own_environment()}
    assert not undeclared, f"imported but not declared in any extra: {undeclared}"
    unused = declared - set(everything) - set(NOT_IMPORTED)
    assert not unused, f"declared but imported nowhere: {sorted(unused)}"


def test_the_lock_pins_every_declared_package():
    project = _project()
    declared = {_requirement_name(s) for s in project["dependencies"]}
    for extra, specs in project["optional-dependencies"].items():
        if extra in ("faces", "build"):  # not installed by `make`: not in the lock
            continue
        declared |= {_requirement_name(s) for s in specs}
    declared.discard("tada-keras")
    pins = {}
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line:
                name, _, version = line.partition("==")
                assert version, f"requirements.txt: {line!r} is not pinned with =="
                pins[_norm(name)] = version
    missing = declared - set(pins)
    assert not missing, f"requirements.txt does not pin {sorted(missing)}"
    assert "tada-keras" not in pins and "keras-cv" not in pins
