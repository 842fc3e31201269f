"""An experiment of ``conv_probe.py``: ``Conv2DTranspose`` as ``strides²`` stride-1 convs.

``keras.layers.Conv2DTranspose`` with ``padding="same"`` is, output phase by output
phase, an ordinary convolution of the input with a slice of the kernel (Shi et al. 2016,
"Is the deconvolution layer the same as a convolutional layer?"): output pixel
``(s*m + a, s*n + b)`` only ever meets kernel taps ``(a + p - s*i, b + p - s*j)``. This
layer keeps Conv2DTranspose's weights and config and computes the same function that
way: one VALID stride-1 convolution per phase, interleaved into the output, with the
transposed convolution's FLOPs.

Why it was tried: XLA:CPU (JAX) compiles the *kernel gradient* of the strided transposed
convolution of the 41-class segmentation output to a loop ~37x slower than TensorFlow's
oneDNN kernel, which makes Keras-JAX's HeadFreeze phase 1 twice its phase 2. Measured
(benchmarks/conv_probe.md): the sub-pixel form cuts that gradient ~5x on JAX but makes the
input gradients slower on JAX and everything slower on TensorFlow, so the model keeps
``keras.layers.Conv2DTranspose``; this stays a benchmark, tested for exactness in
tests/test_subpixel.py.
"""

from __future__ import annotations

import keras
from keras import ops


def phase_taps(kernel_size: int, stride: int) -> tuple[int, list[tuple[int, list[int]]]]:
    """For a "same" transposed convolution: the input padding and, per output phase
    ``a`` in ``range(stride)``, ``(window start in the padded input, first index in the
    flipped kernel, number of taps)``; the phase's taps are every ``stride``-th index of
    the flipped kernel from there.

    Output ``o = stride*m + a`` receives ``x[i] * w[t]`` for ``o = stride*i + t - left``
    with ``left = max(kernel_size - stride, 0) // 2`` (TensorFlow's "same" convention,
    which Keras follows on every backend). The window row ``u`` of phase ``a`` is input
    ``m + start + u - pad`` and meets kernel tap ``-stride * (start - pad + u) + a + left``.
    """
    if kernel_size < stride:
        raise ValueError(f"kernel_size={kernel_size} < strides={stride}: some output phases "
                         "would see no kernel tap")
    left = max(kernel_size - stride, 0) // 2
    offsets = []
    for a in range(stride):
        deltas = sorted(-(t - a - left) // stride for t in range(kernel_size)
                        if (t - a - left) % stride == 0)
        offsets.append((deltas[0], len(deltas), a))
    pad = max(0, max(max(-lo, lo + n - 1) for lo, n, _ in offsets))
    phases = []
    for lo, n, a in offsets:
        # Taps -stride*(lo + u) + a + left, u = 0..n-1: a decreasing arithmetic sequence,
        # i.e. an increasing one of step `stride` in the flipped kernel (index k-1-t).
        first = kernel_size - 1 + stride * lo - a - left
        phases.append((lo + pad, first, n))
    return pad, phases


class SubpixelConv2DTranspose(keras.layers.Conv2DTranspose):
    """``keras.layers.Conv2DTranspose(filters, kernel_size, strides, padding="same")``
    computed as sub-pixel convolutions (see the module docstring). Square kernels and
    strides, channels_last, no dilation, no output padding."""

    def __init__(self, filters, kernel_size, strides=1, padding="same", **kwargs):
        super().__init__(filters, kernel_size, strides=strides, padding=padding, **kwargs)
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        if kh != kw or sh != sw:
            raise ValueError(f"{self.name}: square kernel_size and strides expected, got "
                             f"{self.kernel_size} and {self.strides}")
        if self.padding != "same" or self.data_format != "channels_last":
            raise ValueError(f"{self.name}: padding='same' and channels_last expected, got "
                             f"padding={self.padding!r}, data_format={self.data_format!r}")
        if tuple(self.dilation_rate) != (1, 1) or self.output_padding is not None:
            raise ValueError(f"{self.name}: dilation_rate and output_padding are not "
                             "supported")
        self._pad, self._phases = phase_taps(kh, sh)

    def call(self, inputs):
        s, pad = self.strides[0], self._pad
        x = ops.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]]) if pad else inputs
        kernel = ops.cast(self.kernel, self.compute_dtype)
        # Strided slices of the flipped kernel (dense gradients, no gather) and a
        # (k, k, filters, in) -> (k, k, in, filters) transpose for ops.conv.
        flipped = ops.transpose(ops.flip(ops.flip(kernel, axis=0), axis=1), (0, 1, 3, 2))
        rows = []
        for start_a, first_a, taps_a in self._phases:
            cols = []
            for start_b, first_b, taps_b in self._phases:
                k = flipped[first_a:first_a + s * (taps_a - 1) + 1:s,
                            first_b:first_b + s * (taps_b - 1) + 1:s]
                end_a = 2 * pad - start_a - taps_a + 1
                end_b = 2 * pad - start_b - taps_b + 1
                window = x[:, start_a:(-end_a or None), start_b:(-end_b or None), :]
                cols.append(ops.conv(window, k, strides=1, padding="valid"))
            rows.append(ops.stack(cols, axis=3))  # (B, H, W, s, C): column phases
        y = ops.stack(rows, axis=2)  # (B, H, s, W, s, C)
        shape = ops.shape(inputs)
        y = ops.reshape(y, (-1, shape[1] * s, shape[2] * s, self.filters))
        if self.use_bias:
            y = y + ops.cast(self.bias, self.compute_dtype)
        return self.activation(y) if self.activation is not None else y
