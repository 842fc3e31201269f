"""The contract every task (main or anchor) implements."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def float32_output(x, name: str):
    """Casts a task's output to float32 with a parameterless layer named ``<name>_float32``.

    The output convolution itself runs in the layer policy's compute dtype, so under
    ``mixed_bfloat16`` it uses the CPU's bf16 units like every other convolution; only its
    result is cast (the usual mixed-precision recipe: float32 at the very end). Under
    float32 this layer is the identity.
    """
    return keras.layers.Activation("linear", dtype="float32", name=f"{name}_float32")(x)


class Task:
    """A dense prediction task: its output layers, its masked loss terms and its metrics.

    Subclasses set ``name`` (the registry key), ``label_keys`` (keys of the label dict they
    read) and implement ``build_outputs`` and ``loss_terms``.

    A loss term is ``(elementwise_loss, weight, coefficient)`` with the first two of shape
    (B, ...). The trainer reduces each term as a pooled weighted mean over all elements of
    the examples selected for a (task, domain) group, so masked-out elements never count.
    """

    name: str = ""
    label_keys: tuple[str, ...] = ()
    # True if build_outputs reads the 2nd up-sampling stage's output (``mid_features``).
    uses_mid_features: bool = False

    def __init__(self, **config: Any):
        self.config = dict(config)

    def build_outputs(self, fine_features, mid_features) -> dict:
        """Creates the task's output tensors.

        Args:
            fine_features: decoder output after the 3rd up-sampling stage (1/4 input size).
            mid_features: decoder output after the 2nd up-sampling stage (1/8 input size),
                for non-spatial branches.
        Returns:
            dict of output name -> tensor; spatial outputs at 1/2 of the input size.
        """
        raise NotImplementedError

    def loss_terms(self, y: dict, y_pred: dict) -> list[tuple]:
        raise NotImplementedError

    def check_labels(self, y: dict, y_pred: dict) -> None:
        """Raises ValueError naming the label key if a label has the wrong (static) shape."""

    def has_labels(self, y: dict) -> bool:
        return all(k in y for k in self.label_keys)

    def get_config(self) -> dict:
        return dict(self.config)


def resize_to(tensor, height, width, interpolation="bilinear"):
    """Resizes (B, h, w, C) to (B, height, width, C) unless it already has that size."""
    static = tuple(tensor.shape)
    if (isinstance(height, int) and isinstance(width, int)
            and static[1] == height and static[2] == width):
        return tensor
    # Sizes only known at run time (random crops in a traced step): resizing to the same
    # size is an exact no-op for bilinear and nearest interpolation.
    return ops.image.resize(
        tensor, (height, width), interpolation=interpolation, data_format="channels_last"
    )


def finite_mask(tensor, axis=None):
    """True where every value (along ``axis``) is finite."""
    finite = ops.isfinite(tensor)
    if axis is not None:
        finite = ops.all(finite, axis=axis)
    return finite


def check_rank(y, key, rank, last=None, expected=""):
    """Static shape check of ``y[key]`` with an error that names the key."""
    shape = tuple(y[key].shape)
    if len(shape) != rank or (last is not None and shape[-1] != last):
        raise ValueError(f"labels[{key!r}]: expected shape {expected}, got {shape}")
