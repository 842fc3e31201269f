"""benchmarks/subpixel.py (an experiment of benchmarks/conv_probe.py) computes exactly
Conv2DTranspose(padding="same") on every backend, so the probe compares like with like."""

import os
import sys

import keras
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
from subpixel import SubpixelConv2DTranspose

from tada_keras.backend import value_and_gradients


def _pair(filters, kernel, stride, channels, seed):
    ref = keras.layers.Conv2DTranspose(filters, kernel, strides=stride, padding="same")
    sub = SubpixelConv2DTranspose(filters, kernel, strides=stride)
    ref.build((None, None, None, channels))
    sub.build((None, None, None, channels))
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=w.shape).astype("float32") for w in ref.get_weights()]
    ref.set_weights(weights)
    sub.set_weights(weights)  # same variables, same shapes
    return ref, sub


@pytest.mark.parametrize("kernel,stride", [(4, 2), (3, 2), (2, 2), (5, 2), (3, 1), (6, 3),
                                           (5, 3)])
def test_equals_conv2d_transpose_same(kernel, stride):
    ref, sub = _pair(filters=3, kernel=kernel, stride=stride, channels=4, seed=kernel)
    x = np.random.default_rng(1).normal(size=(2, 5, 7, 4)).astype("float32")  # not square
    expected = keras.ops.convert_to_numpy(ref(x))
    got = keras.ops.convert_to_numpy(sub(x))
    assert got.shape == expected.shape == (2, 5 * stride, 7 * stride, 3)
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-5)


def test_input_gradients_equal_and_the_network_builds_with_unknown_sizes():
    ref, sub = _pair(filters=2, kernel=4, stride=2, channels=3, seed=5)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 6, 6, 3)).astype("float32")
    upstream = keras.ops.convert_to_tensor(rng.normal(size=(1, 12, 12, 2)).astype("float32"))
    grads = [value_and_gradients(lambda t, layer=layer: keras.ops.sum(layer(t) * upstream),
                                 [x])[1][0] for layer in (ref, sub)]
    np.testing.assert_allclose(grads[1], grads[0], atol=2e-5, rtol=1e-5)
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, SubpixelConv2DTranspose(2, 4, strides=2)(inputs))
    assert keras.ops.convert_to_numpy(model(x)).shape == (1, 12, 12, 2)


@pytest.mark.parametrize("kwargs,needle", [
    ({"kernel_size": 1, "strides": 2}, "kernel_size=1 < strides=2"),
    ({"kernel_size": (4, 3), "strides": 2}, "square"),
    ({"kernel_size": 4, "strides": 2, "padding": "valid"}, "padding='same'"),
])
def test_unsupported_arguments_are_one_clear_error(kwargs, needle):
    with pytest.raises(ValueError, match=needle.replace("(", "\\(")):
        SubpixelConv2DTranspose(2, **kwargs)
