"""GradientReversal on every backend."""

import keras
import numpy as np

from tada_keras.backend import value_and_gradients
from tada_keras.layers import GradientReversal
from tada_keras.layers.gradient_reversal import dann_lambda


def test_forward_is_exact_identity():
    x = np.random.default_rng(0).normal(size=(3, 5)).astype("float32")
    y = keras.ops.convert_to_numpy(GradientReversal(0.7)(x))
    assert np.array_equal(x, y)


def test_gradient_is_minus_lambda_times_upstream():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 3)).astype("float32")
    upstream = rng.normal(size=(4, 3)).astype("float32")
    layer = GradientReversal(0.5)

    def f(t):
        return keras.ops.sum(keras.ops.multiply(layer(t), keras.ops.convert_to_tensor(upstream)))

    _, (grad,) = value_and_gradients(f, [x])
    np.testing.assert_allclose(grad, -0.5 * upstream, rtol=1e-6)
    layer.lam.assign(2.0)
    _, (grad,) = value_and_gradients(f, [x])
    np.testing.assert_allclose(grad, -2.0 * upstream, rtol=1e-6)


def test_lambda_change_takes_effect_inside_a_compiled_step():
    """The kernel before the GRL moves by +lr*lam*x per step; lam changes between fits."""
    inputs = keras.Input((1,))
    pre = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", name="pre")
    grl = GradientReversal(1.0)
    model = keras.Model(inputs, grl(pre(inputs)))
    jit = keras.config.backend() != "torch"  # torch.compile is not used in this suite
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=jit,
                  loss=lambda y_true, y_pred: keras.ops.mean(y_pred))
    x, y = np.ones((1, 1), "float32"), np.zeros((1, 1), "float32")
    model.fit(x, y, epochs=1, verbose=0)
    k1 = float(keras.ops.convert_to_numpy(pre.kernel)[0, 0])
    grl.lam.assign(3.0)
    model.fit(x, y, epochs=1, verbose=0)
    k2 = float(keras.ops.convert_to_numpy(pre.kernel)[0, 0])
    np.testing.assert_allclose(k1, 1.0 + 0.1 * 1.0, rtol=1e-6)
    np.testing.assert_allclose(k2 - k1, 0.1 * 3.0, rtol=1e-5)


def test_serialization_round_trip():
    layer = GradientReversal(0.25, name="grl")
    clone = GradientReversal.from_config(layer.get_config())
    assert clone.initial_lam == 0.25 and clone.name == "grl"


def test_dann_schedule():
    assert dann_lambda(0.0) == 0.0
    assert abs(dann_lambda(1.0) - (2 / (1 + np.exp(-10)) - 1)) < 1e-12
    assert abs(dann_lambda(0.05) - 0.24491866) < 1e-6
