"""The one place with backend-specific code.

Everything else in tada-keras is written against ``keras.ops`` (and trains with Keras's
own train step on every backend, domain adaptation included). What Keras 3 has no
backend-agnostic API for lives here, behind plain functions, and is tested on
TensorFlow, JAX and PyTorch with the same tests: gradients for tests
(``value_and_gradients``), determinism (``set_global_determinism``), TensorFlow's fused
batch-norm kernel (``fused_batch_norm``, used by ``tada_keras.layers.BatchNormalization``)
and data-parallel training (``--distribution``: ``distribution_scope``,
``cross_replica_sum``, ``synchronized_batchnorm``, ``shard_for_workers``, ...).
"""

from __future__ import annotations

import contextlib
import os
import random

import keras
import numpy as np


def backend_name() -> str:
    return keras.config.backend()


def value_and_gradients(fn, tensors):
    """Returns ``(fn(*tensors), [d fn / d t for t in tensors])`` for a scalar ``fn``.

    ``tensors`` are numpy arrays or backend tensors; gradients come back as numpy.
    """
    name = backend_name()
    if name == "tensorflow":
        import tensorflow as tf

        ts = [tf.convert_to_tensor(t) for t in tensors]
        with tf.GradientTape() as tape:
            for t in ts:
                tape.watch(t)
            value = fn(*ts)
        grads = tape.gradient(value, ts)
        return (np.asarray(value),
                [np.zeros(t.shape, t.dtype.as_numpy_dtype) if g is None else g.numpy()
                 for t, g in zip(ts, grads)])
    if name == "jax":
        import jax

        value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(tensors))))(
            *[jax.numpy.asarray(t) for t in tensors])
        return np.asarray(value), [np.asarray(g) for g in grads]
    if name == "torch":
        import torch

        ts = [torch.tensor(np.asarray(keras.ops.convert_to_numpy(t)), requires_grad=True)
              for t in tensors]
        value = fn(*ts)
        grads = torch.autograd.grad(value, ts, allow_unused=True)
        return (value.detach().cpu().numpy(),
                [np.zeros(tuple(t.shape), np.float32) if g is None else g.cpu().numpy()
                 for t, g in zip(ts, grads)])
    raise NotImplementedError(f"value_and_gradients: backend {name!r} is not supported")


def set_intra_op_threads(threads: int | None) -> None:
    """Threads of one op (None: the backend's default, all cores). A different count
    changes only the order of floating-point sums: the noise-floor perturbation of
    docs/study_grade.md. Must run before the backend starts computing."""
    if not threads:
        return
    name = backend_name()
    if name == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError as err:
            raise ValueError(f"--intra_op_threads={threads}: TensorFlow has already "
                             f"started ({err})") from None
    elif name == "torch":
        import torch

        torch.set_num_threads(threads)
    else:
        raise ValueError(f"--intra_op_threads={threads}: not supported on the {name} "
                         "backend (XLA picks its own threads); leave it unset")


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``), or None where unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def accelerator_visible() -> bool:
    """Whether the backend sees a GPU or TPU."""
    name = backend_name()
    if name == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU") or
                    tf.config.list_physical_devices("TPU"))
    if name == "jax":
        import jax

        return any(d.platform != "cpu" for d in jax.devices())
    if name == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def peak_accelerator_memory_mb() -> float | None:
    """Peak memory the backend allocated on its first GPU/TPU so far (None on a CPU)."""
    if not accelerator_visible():
        return None
    name = backend_name()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20
    if name == "jax":
        import jax

        stats = next(d for d in jax.devices() if d.platform != "cpu").memory_stats() or {}
        peak = stats.get("peak_bytes_in_use")
        return None if peak is None else peak / 2 ** 20
    import torch

    return torch.cuda.max_memory_allocated() / 2 ** 20


def bf16_warning(dtype_policy: str) -> str | None:
    """One warning line when ``mixed_bfloat16`` will run slower than float32 here: on a CPU
    without bf16 instructions (emulated) or with AVX512-BF16 but no AMX (half the fp32
    matmul rate), with the slowdown measured on such a CPU; None otherwise."""
    if dtype_policy != "mixed_bfloat16" or accelerator_visible():
        return None
    flags = cpu_flags()
    if flags is None or "amx_bf16" in flags:
        return None
    if "avx512_bf16" in flags:
        return ("warning: --dtype_policy=mixed_bfloat16 on a CPU with AVX512-BF16 but no "
                "AMX: bf16 matrix products run at half the float32 rate here (Keras-TF "
                "float32 was 1.62-1.76x faster than bf16 on such a 2-core Xeon, "
                "benchmarks/README.md); --dtype_policy=float32 is faster on this machine")
    return ("warning: --dtype_policy=mixed_bfloat16 on a CPU without bf16 instructions (no "
            "avx512_bf16 or amx_bf16 in /proc/cpuinfo): bf16 is emulated and very slow (on "
            "a 2-core AVX2-only AMD EPYC the Keras-TF ResNet50 bf16 step did not finish 7 "
            "steps in 900 s, float32 ran 1.6 img/s; issue 33); use --dtype_policy=float32")


def set_global_determinism(seed: int, deterministic_ops: bool = False) -> None:
    """Seeds Python, numpy and Keras; optionally makes TF ops deterministic."""
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if not deterministic_ops:
        return
    name = backend_name()
    if name == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif name == "torch":
        import torch

        torch.use_deterministic_algorithms(True)
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")


def fused_batch_norm(x, scale, offset, mean, variance, epsilon, training):
    """TensorFlow's fused batch normalisation of NHWC ``x`` over its last axis.

    ``scale``, ``offset``, ``mean`` and ``variance`` are float32 (``x`` may be bfloat16 or
    float16; the kernel computes in float32 and returns ``x``'s dtype). Returns ``(y,
    batch_mean, batch_variance)``: with ``training`` the batch's statistics (the
    population variance, as ``keras.ops.moments`` gives) and ``y`` normalised with them,
    else ``y`` normalised with ``mean``/``variance`` and those returned unchanged.
    The caller (``tada_keras.layers.BatchNormalization``) checks that the kernel applies.
    """
    import tensorflow as tf

    def as_float32(value):
        return tf.cast(tf.convert_to_tensor(value), tf.float32)

    scale, offset = as_float32(scale), as_float32(offset)
    if not training:
        mean, variance = as_float32(mean), as_float32(variance)
        y = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=scale, offset=offset, mean=mean, variance=variance,
            epsilon=epsilon, data_format="NHWC", is_training=False)[0]
        return y, mean, variance
    empty = tf.constant([], tf.float32)
    y, batch_mean, batch_variance = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=scale, offset=offset, mean=empty, variance=empty, epsilon=epsilon,
        exponential_avg_factor=1.0, data_format="NHWC", is_training=True)[:3]
    # The kernel's batch variance is Bessel-corrected (n / (n - 1)); Keras's moving
    # statistics are updated with the population variance.
    count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
    population = tf.where(count > 1.0, batch_variance * ((count - 1.0) / count),
                          tf.zeros_like(batch_variance))
    return y, batch_mean, population


# --- Data-parallel training (tf.distribute / keras.distribution) -----------------------
# Data-parallel training: the one place that knows about tf.distribute / keras.distribution.
#
# ``--distribution`` (``RunConfig.distribution``):
#
# * ``none``: one device (default).
# * ``mirrored``: every local device of one machine. TensorFlow: ``tf.distribute.
#   MirroredStrategy``; JAX: ``keras.distribution.DataParallel`` over all local devices.
# * ``multiworker``: several machines. TensorFlow: ``MultiWorkerMirroredStrategy`` (cluster
#   from ``TF_CONFIG``); JAX: ``keras.distribution.initialize()`` (cluster from
#   ``KERAS_DISTRIBUTION_*``) then ``DataParallel`` over every process's devices.
#
# The PyTorch backend has no Keras data-parallel path; it raises.
#
# Every replica count gives the update a single device computes from the same global batch:
#
# * the TADA losses are pooled masked means (``pooled_mean``); a replica holds only part of
#   the batch (with the default source-then-target layout, one replica may hold only source
#   images), so its denominator is summed over the replicas (``cross_replica_sum``) and each
#   replica returns its share of the global loss. Keras sums replica gradients (TensorFlow)
#   or computes on global arrays (JAX), so the sum of the shares is the single-device loss;
# * BatchNorm statistics are those of the global batch: synchronised across replicas on
#   TensorFlow (``synchronized_batchnorm``) and global by construction on JAX. Per-replica
#   statistics would give each domain its own BatchNorm when a replica holds one domain,
#   a different method from the paper's.
DISTRIBUTIONS = ("none", "mirrored", "multiworker")


def validate_distribution(name: str, backend: str | None = None) -> None:
    """Raises ValueError naming ``--distribution`` if ``name`` cannot run on ``backend``."""
    backend = backend or keras.config.backend()
    if name not in DISTRIBUTIONS:
        raise ValueError(f"--distribution={name!r}: expected one of {list(DISTRIBUTIONS)}")
    if name != "none" and backend not in ("tensorflow", "jax"):
        raise ValueError(f"--distribution={name}: data parallelism needs the TensorFlow "
                         f"or JAX backend (KERAS_BACKEND), not {backend!r}")


def _strategy(name: str):
    import tensorflow as tf

    if name == "mirrored":
        cpus = int(os.environ.get("TADA_CPU_DEVICES", "0"))
        if cpus > 1 and not tf.config.list_physical_devices("GPU"):
            # Testing without accelerators: split the CPU (before TF's runtime starts),
            # as XLA_FLAGS=--xla_force_host_platform_device_count does for JAX.
            tf.config.set_logical_device_configuration(
                tf.config.list_physical_devices("CPU")[0],
                [tf.config.LogicalDeviceConfiguration()] * cpus)
        # All local accelerators, else all logical CPU devices.
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.MultiWorkerMirroredStrategy()


@contextlib.contextmanager
def distribution_scope(name: str = "none"):
    """Build, compile, train and evaluate the model inside this scope.

    Yields the number of replicas. The TensorFlow strategy (multiworker: create it before
    any other TensorFlow op of the program) or the JAX distribution is active inside only.
    """
    validate_distribution(name)
    if name == "none":
        yield 1
        return
    if keras.config.backend() == "tensorflow":
        strategy = _strategy(name)
        with strategy.scope():
            yield strategy.num_replicas_in_sync
        return
    from keras import distribution

    if name == "multiworker":
        distribution.initialize()
    parallel = distribution.DataParallel(devices=distribution.list_devices())
    previous = distribution.distribution()
    distribution.set_distribution(parallel)
    try:
        yield len(distribution.list_devices())
    finally:
        distribution.set_distribution(previous)


def num_replicas() -> int:
    """Replicas that each compute part of a batch in the current TensorFlow strategy.

    1 on JAX: its data-parallel step computes on global arrays, like one device.
    """
    if keras.config.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def cross_replica_sum(value):
    """Sum of ``value`` over the replicas of a TensorFlow strategy step; else ``value``.

    Used for loss denominators (mask counts): no gradient flows through it.
    """
    value = keras.ops.stop_gradient(value)
    if keras.config.backend() != "tensorflow":
        return value
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


@contextlib.contextmanager
def synchronized_batchnorm(model):
    """Inside, the model's BatchNorm layers use global batch statistics under a
    TensorFlow strategy with several replicas (no effect otherwise).

    Wrap ``fit`` (where the train step is traced), not the model's lifetime: the flag is
    serialised and other backends reject it, so saved models never carry it.
    """
    if num_replicas() == 1:
        yield
        return
    layers = [layer for layer in _all_layers(model)
              if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized]
    for layer in layers:
        layer.synchronized = True
    try:
        yield
    finally:
        for layer in layers:
            layer.synchronized = False


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def shard_for_workers(dataset):
    """Lets every worker build the same global batches and keep its part of each.

    Workers read the same shuffled data (same seed), so the global batch is the one a
    single device sees. TensorFlow: element-wise (DATA) auto-sharding, since the TFDS
    splits have too few files for file sharding. JAX with several processes: each keeps
    its contiguous slice of every global batch (Keras assembles the global array from the
    processes' slices in order). One process / one replica: unchanged.
    """
    import tensorflow as tf

    if keras.config.backend() == "tensorflow":
        if num_replicas() == 1:
            return dataset
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.DATA
        # Keras builds the model under a strategy from a replica-averaged batch, and
        # there is no bool average: masks travel as uint8 (every task casts them to bool).
        return dataset.map(
            lambda *batch: tf.nest.map_structure(
                lambda t: tf.cast(t, tf.uint8) if t.dtype == tf.bool else t, batch),
            num_parallel_calls=tf.data.AUTOTUNE).with_options(options)
    if keras.config.backend() != "jax":
        return dataset
    import jax

    count, index = jax.process_count(), jax.process_index()
    if count == 1:
        return dataset

    def keep_slice(*batch):
        def part(tensor):
            size = tf.shape(tensor)[0] // count
            return tensor[index * size:(index + 1) * size]

        return tf.nest.map_structure(part, batch)

    return dataset.map(keep_slice)


def worker_id() -> str:
    """This process's name in the cluster, e.g. ``worker-1`` (``process-1`` on JAX)."""
    if keras.config.backend() == "jax":
        import jax

        return f"process-{jax.process_index()}"
    import json

    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {})
    return f"{task.get('type', 'chief')}-{task.get('index', 0)}"


def is_chief() -> bool:
    """True on the worker that writes outputs (always, except non-chief TF workers)."""
    if keras.config.backend() == "jax":
        import jax

        return jax.process_index() == 0
    import json

    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    return task.get("type", "chief") == "chief" or (
        task.get("type") == "worker" and task.get("index", 0) == 0
        and "chief" not in config.get("cluster", {}))
