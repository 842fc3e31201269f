"""Prints, as JSON, the loss and weights of a fixed tiny TADA model after 3 SGD steps.

Run by tests/test_backend_consistency.py under each KERAS_BACKEND.
"""

import json
import sys

import keras
import numpy as np

import tada_keras
from tada_keras.training.phases import configure_phase

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from conftest import make_batch


def main():
    model = tada_keras.build_model(backbone="tiny", decoder_channels=8,
                                   anchor_config={"num_classes": 5})
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(scale=0.1, size=w.shape).astype("float32")
                       if "moving_variance" not in w.path else np.ones(w.shape, "float32")
                       for w in model.weights])
    x, y = make_batch(seed=11)
    phase = tada_keras.get_method("mtl_both").phases[0]
    configure_phase(model, phase, keras.optimizers.SGD(0.05), jit_compile=False)
    losses = [float(model.train_on_batch(x, y, return_dict=True)["loss"]) for _ in range(3)]
    kernel = keras.ops.convert_to_numpy(model.head.get_layer("normals").kernel)
    print(json.dumps({"losses": losses, "kernel": kernel.ravel()[:50].tolist()}))


if __name__ == "__main__":
    main()
