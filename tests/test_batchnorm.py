"""tada_keras.layers.BatchNormalization: Keras's layer, computed by TensorFlow's fused
kernel where that kernel computes the same thing (issue 18).

On TensorFlow the fused path is compared with ``keras.layers.BatchNormalization`` given
the same weights and inputs: outputs, gradients (input, gamma, beta) and the moving
statistics after a training call, in float32 and mixed_bfloat16, in training and
inference mode. On every backend the layer must equal Keras's.
"""

import os

import keras
import numpy as np
import pytest

from tada_keras.backend import value_and_gradients
from tada_keras.layers import BatchNormalization, fuse_batchnorm

TF = keras.config.backend() == "tensorflow"
tf_only = pytest.mark.skipif(not TF, reason="the fused kernel is TensorFlow's")


@pytest.fixture
def policy():
    """Sets a global dtype policy for one test, restores float32 after."""
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy("float32")


def _np(tensor):
    return keras.ops.convert_to_numpy(tensor)


def _pair(shape, seed=0, **kwargs):
    """Keras's layer and ours, built for ``shape`` with the same random weights."""
    keras_bn = keras.layers.BatchNormalization(**kwargs)
    ours = BatchNormalization(**kwargs)
    rng = np.random.default_rng(seed)
    for layer in (keras_bn, ours):
        layer.build(shape)
    weights = []
    for w in keras_bn.get_weights():
        # gamma, beta, moving mean: any sign; moving variance: positive.
        weights.append(rng.normal(size=w.shape).astype("float32"))
    weights[-1] = np.abs(weights[-1]) + 0.5
    keras_bn.set_weights(weights)
    ours.set_weights(weights)
    return keras_bn, ours


def _run_tf(layer, x, upstream, training):
    """Output, [d/dx, d/dgamma, d/dbeta] of sum(output * upstream), and the weights after."""
    import tensorflow as tf

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = tf.cast(layer(xt, training=training), tf.float32)
        loss = tf.reduce_sum(y * upstream)
    grads = tape.gradient(loss, [xt] + [v.value for v in layer.trainable_variables])
    return y.numpy(), [g.numpy() for g in grads], [w.copy() for w in layer.get_weights()]


@tf_only
@pytest.mark.parametrize("dtype_policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("epsilon", [1e-3, 1.001e-5])
def test_fused_equals_keras_outputs_gradients_and_moving_statistics(
        policy, dtype_policy, training, epsilon):
    policy(dtype_policy)
    # 2 x 2 x 2 positions per channel: the kernel's Bessel-corrected variance would be
    # 8/7 of Keras's in the moving statistics, far outside the tolerance.
    shape = (2, 2, 2, 5)
    rng = np.random.default_rng(1)
    x = (rng.normal(size=shape) * 3 + 1).astype("float32")
    upstream = rng.normal(size=shape).astype("float32")
    keras_bn, ours = _pair(shape, momentum=0.9, epsilon=epsilon)
    ours.fused = True  # a call that cannot be fused raises instead of falling back
    initial = [w.copy() for w in ours.get_weights()]
    y_k, g_k, w_k = _run_tf(keras_bn, x, upstream, training)
    y_o, g_o, w_o = _run_tf(ours, x, upstream, training)
    tol = ({"rtol": 2e-2, "atol": 2e-2} if dtype_policy == "mixed_bfloat16"
           else {"rtol": 1e-5, "atol": 1e-5})
    np.testing.assert_allclose(y_o, y_k, **tol)
    for mine, theirs in zip(g_o, g_k):
        np.testing.assert_allclose(mine, theirs, **tol)
    # Weights (incl. the moving statistics) are float32 in both policies.
    for mine, theirs in zip(w_o, w_k):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    # Training moves the moving statistics; inference leaves them as they were.
    for after, before in zip(w_o[2:], initial[2:]):
        assert np.allclose(after, before) != training
    if dtype_policy == "mixed_bfloat16":
        assert ours(x, training=training).dtype == "bfloat16"


@tf_only
@pytest.mark.parametrize("center,scale", [(False, True), (True, False), (False, False)])
def test_fused_without_gamma_or_beta(center, scale):
    shape = (3, 4, 4, 6)
    x = np.random.default_rng(2).normal(size=shape).astype("float32")
    keras_bn, ours = _pair(shape, center=center, scale=scale)
    ours.fused = True
    for training in (True, False):
        np.testing.assert_allclose(ours(x, training=training), keras_bn(x, training=training),
                                   rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.moving_variance.numpy(), keras_bn.moving_variance.numpy(),
                               rtol=1e-5)


@tf_only
def test_frozen_layer_runs_in_inference_mode_and_keeps_its_statistics():
    """HeadFreeze's frozen head: trainable=False means inference mode even when training."""
    shape = (4, 3, 3, 4)
    x = np.random.default_rng(3).normal(size=shape).astype("float32") * 5
    keras_bn, ours = _pair(shape)
    for layer in (keras_bn, ours):
        layer.trainable = False
    before = [w.copy() for w in ours.get_weights()]
    ours.fused = True
    np.testing.assert_allclose(ours(x, training=True), keras_bn(x, training=True),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours(x, training=True), ours(x, training=False), rtol=0,
                               atol=0)
    for b, a in zip(before, ours.get_weights()):
        assert np.array_equal(a, b)


@tf_only
def test_the_fused_kernel_is_what_runs():
    import tensorflow as tf

    layer = BatchNormalization()
    layer.build((2, 4, 4, 3))

    def ops_of(training, env=None):
        old = os.environ.get("TADA_FUSED_BATCHNORM")
        if env is not None:
            os.environ["TADA_FUSED_BATCHNORM"] = env
        try:
            fn = tf.function(lambda t: layer(t, training=training))
            graph = fn.get_concrete_function(tf.TensorSpec((2, 4, 4, 3))).graph
        finally:
            if env is not None:
                if old is None:
                    os.environ.pop("TADA_FUSED_BATCHNORM")
                else:
                    os.environ["TADA_FUSED_BATCHNORM"] = old
        return {op.type for op in graph.get_operations()}

    assert "FusedBatchNormV3" in ops_of(training=True)
    assert "FusedBatchNormV3" in ops_of(training=False)
    unfused = ops_of(training=True, env="0")
    assert "FusedBatchNormV3" not in unfused and "Mean" in unfused


@tf_only
@pytest.mark.parametrize("case", ["mask", "renorm", "synchronized", "rank2", "epsilon"])
def test_unfusable_calls_fall_back_to_keras_or_raise_when_fused_is_required(case):
    rng = np.random.default_rng(4)
    shape = (2, 8) if case == "rank2" else (2, 3, 3, 4)
    x = rng.normal(size=shape).astype("float32")
    kwargs = {"renorm": {"renorm": True}, "synchronized": {"synchronized": True},
              "epsilon": {"epsilon": 1e-6}}.get(case, {})
    mask = (rng.random(shape[:-1]) > 0.3) if case == "mask" else None
    keras_bn, ours = _pair(shape, **kwargs)
    np.testing.assert_allclose(ours(x, training=True, mask=mask),
                               keras_bn(x, training=True, mask=mask), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.moving_variance.numpy(), keras_bn.moving_variance.numpy(),
                               rtol=1e-5)
    ours.fused = True
    with pytest.raises(ValueError, match="fused=True, but the fused kernel cannot apply"):
        ours(x, training=True, mask=mask)


def test_equals_keras_layer_on_every_backend():
    """Other backends (and TensorFlow) give what keras.layers.BatchNormalization gives."""
    shape = (2, 3, 3, 4)
    rng = np.random.default_rng(5)
    x = rng.normal(size=shape).astype("float32")
    upstream = keras.ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
    keras_bn, ours = _pair(shape, momentum=0.8)
    for training in (True, False):
        def loss(layer, training=training):
            # Stateless under the gradient transformation (a JAX trace must not assign
            # the moving statistics); the update is checked eagerly below.
            trainable = [v.value for v in layer.trainable_variables]
            frozen = [v.value for v in layer.non_trainable_variables]
            return lambda t: keras.ops.sum(
                layer.stateless_call(trainable, frozen, t, training=training)[0] * upstream)

        (v_k, (g_k,)), (v_o, (g_o,)) = (value_and_gradients(loss(layer), [x])
                                        for layer in (keras_bn, ours))
        np.testing.assert_allclose(v_o, v_k, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(g_o, g_k, rtol=1e-5, atol=1e-5)
        if training:  # one eager training call: the moving statistics' update
            for layer in (keras_bn, ours):
                layer(x, training=True)
    for mine, theirs in zip(ours.get_weights(), keras_bn.get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


def test_config_round_trip_and_validation():
    layer = BatchNormalization(fused=False, momentum=0.7, epsilon=1e-4, name="bn")
    config = layer.get_config()
    assert config["fused"] is False and config["momentum"] == 0.7
    again = BatchNormalization.from_config(config)
    assert again.fused is False and again.epsilon == 1e-4 and again.name == "bn"
    with pytest.raises(ValueError, match="fused must be None, True or False"):
        BatchNormalization(fused="yes")


def _small_model(bn):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = bn(name="conv_bn")(x)
    return keras.Model(inputs, keras.layers.ReLU(name="relu")(x))


def test_fuse_batchnorm_swaps_layers_keeping_names_weights_and_outputs(tmp_path):
    keras.utils.set_random_seed(0)
    original = _small_model(keras.layers.BatchNormalization)
    x = np.random.default_rng(6).normal(size=(2, 8, 8, 3)).astype("float32")
    original.get_layer("conv_bn").set_weights(
        [np.full(4, v, "float32") for v in (1.5, 0.2, 0.3, 2.0)])
    swapped = fuse_batchnorm(original)
    bn = swapped.get_layer("conv_bn")
    assert type(bn) is BatchNormalization
    assert [layer.name for layer in swapped.layers] == [layer.name for layer in original.layers]
    for a, b in zip(swapped.get_weights(), original.get_weights()):
        assert np.array_equal(a, b)
    np.testing.assert_allclose(_np(swapped(x, training=False)), _np(original(x, training=False)),
                               rtol=1e-5, atol=1e-5)
    # A checkpoint of the Keras-BN model loads into the fused one (same variable paths).
    path = str(tmp_path / "m.weights.h5")
    original.save_weights(path)
    keras.utils.set_random_seed(1)
    fresh = _small_model(BatchNormalization)
    fresh.load_weights(path)
    for a, b in zip(fresh.get_weights(), original.get_weights()):
        assert np.array_equal(a, b)


def test_saved_model_reloads_with_the_fused_layer(tmp_path):
    model = _small_model(BatchNormalization)
    x = np.random.default_rng(7).normal(size=(2, 8, 8, 3)).astype("float32")
    model(x, training=True)  # moves the statistics
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.get_layer("conv_bn")) is BatchNormalization
    np.testing.assert_allclose(_np(loaded(x, training=False)), _np(model(x, training=False)),
                               rtol=1e-6, atol=1e-6)


def test_every_batchnorm_of_the_tada_network_is_the_fused_layer(tiny_model):
    from tada_keras.models.backbones import build_backbone

    model = tiny_model(backbone="tiny")

    def layers(m):
        for layer in m.layers:
            yield layer
            if isinstance(layer, keras.Model):
                yield from layers(layer)

    norms = [lr for lr in layers(model) if isinstance(lr, keras.layers.BatchNormalization)]
    assert norms and all(type(lr) is BatchNormalization for lr in norms)
    # resnet50 is keras.applications' model with its batch norms swapped (fuse_batchnorm).
    for name in ("efficientnet_lite0", "resnet18", "resnet50"):
        backbone = build_backbone(name, None, (None, None, 3))
        norms = [lr for lr in backbone.layers if isinstance(lr, keras.layers.BatchNormalization)]
        assert norms and all(type(lr) is BatchNormalization for lr in norms), name
