"""Trains a fixed tiny TADA model with HeadFreeze (phase 1, then phase 2 with the head
frozen and a new optimizer) on one device and data-parallel; prints both as JSON.

Run by tests/test_distribution.py in a subprocess (the device count must be set before
the backend starts): TensorFlow splits its CPU into 2 logical devices here, JAX gets
XLA_FLAGS=--xla_force_host_platform_device_count=2 from the test.

    KERAS_BACKEND=tensorflow python tests/distribution_probe.py mirrored
"""

import json
import os
import sys

import numpy as np

STEPS = 3  # per phase
BATCH = 8  # global batch
# Source and target mixed unevenly over the two replicas' halves of the batch
# (3 + 1 and 1 + 3): per-replica means or BatchNorm statistics would be visible.
DOMAINS = np.array([0, 0, 0, 1, 0, 1, 1, 1], "int32")


def configure_devices():
    if os.environ["KERAS_BACKEND"] == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


def dataset(phase_index):
    import tensorflow as tf

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from conftest import make_batch

    xs, ys = [], []
    for step in range(STEPS):
        x, y = make_batch(seed=100 * phase_index + step, batch=BATCH, size=32)
        y["domain"] = DOMAINS
        xs.append(x)
        ys.append(y)
    x = np.concatenate(xs)
    y = {k: np.concatenate([b[k] for b in ys]) for k in ys[0]}
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


def train(distribution):
    import keras

    import tada_keras
    from tada_keras import backend
    from tada_keras.training.phases import configure_phase

    class StepLogs(keras.callbacks.Callback):
        """Logs after every step (Keras reports running means over the epoch)."""

        def __init__(self):
            super().__init__()
            self.logs = []

        def on_train_batch_end(self, batch, logs=None):
            self.logs.append({k: float(v) for k, v in logs.items()})

    with backend.distribution_scope(distribution) as replicas:
        model = tada_keras.build_model(backbone="tiny", decoder_channels=8,
                                       anchor_config={"num_classes": 5})
        rng = np.random.default_rng(0)
        model.set_weights([rng.normal(scale=0.2, size=w.shape).astype("float32")
                           if "moving_variance" not in w.path else np.ones(w.shape, "float32")
                           for w in model.weights])
        out = {"replicas": replicas, "history": {}}
        for index, phase in enumerate(tada_keras.get_method("headfreeze").phases):
            configure_phase(model, phase, keras.optimizers.Adam(1e-2), jit_compile=False)
            head_before = model.head.get_weights()
            step_logs = StepLogs()
            with backend.synchronized_batchnorm(model):
                model.fit(backend.shard_for_workers(dataset(index)), epochs=1,
                          steps_per_epoch=STEPS, verbose=0, shuffle=False,
                          callbacks=[step_logs])
            out["history"][phase.name] = step_logs.logs
            out[f"{phase.name}_head_change"] = max(
                float(np.abs(a - b).max()) for a, b in zip(head_before,
                                                           model.head.get_weights()))
        out["weights"] = {w.path: np.asarray(keras.ops.convert_to_numpy(w)).ravel()[:64]
                          .tolist() for w in model.weights}
        out["optimizer_steps"] = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    return out


def main():
    configure_devices()
    print(json.dumps({name: train(name) for name in sys.argv[1:]}))


if __name__ == "__main__":
    main()
