#!/usr/bin/env bash
# `make wheel-check`: the built wheel in a brand-new venv with its dependencies installed
# by pip (networked; the lock as constraints), then the console scripts from outside the
# repository: --help, a few training steps with the shipped tiny.flags, predict on a folder,
# export to LiteRT and predict from the file.
# (tests/test_wheel.py does the same offline, borrowing the dependencies of .venv.)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip wheel -q --no-deps -w "$work/dist" .
rm -rf build
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade pip
"$work/venv/bin/pip" install -q -c requirements.txt "$(ls "$work"/dist/*.whl)"
cd "$work"
bin="$work/venv/bin"
"$bin/tada-demo" --help > /dev/null
"$bin/tada-train" --flagfile=tiny.flags --data_dir=tfds --model_dir=run --method=baseline \
  --steps=2
mkdir photos
"$bin/python" -c "from PIL import Image; import numpy as np; \
[Image.fromarray((np.random.default_rng(i).random((48, 64, 3)) * 255).astype('uint8')).save(f'photos/{i}.png') for i in range(2)]"
"$bin/tada-predict" --model_dir=run --images=photos/ --out=pred
ls pred/0_normals.npy pred/1_side_by_side.png > /dev/null
"$bin/tada-export" --model_dir=run --format=litert --out=model.tflite
"$bin/tada-predict" --model=model.tflite --images=photos/ --out=pred_litert
ls pred_litert/0_normals.npy > /dev/null
echo "wheel-check: ok ($(ls dist))"
