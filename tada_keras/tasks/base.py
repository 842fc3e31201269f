"""The contract every task (main or anchor) implements."""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
from keras import ops


def float32_output(x, name: str):
    """Casts a task's output to float32 with a parameterless layer named ``<name>_float32``.

    The output convolution itself runs in the layer policy's compute dtype, so under
    ``mixed_bfloat16`` it uses the CPU's bf16 units like every other convolution; only its
    result is cast (the usual mixed-precision recipe: float32 at the very end). Under
    float32 this layer is the identity.
    """
    return keras.layers.Activation("linear", dtype="float32", name=f"{name}_float32")(x)


@dataclasses.dataclass(frozen=True)
class MetricColumn:
    """One column of a results table: a key of the task's evaluation dict."""

    key: str
    title: str
    higher_is_better: bool
    decimals: int


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Where a training example's image came from, for labels that are not maps (points):
    ``offset`` = (top, left, original height, original width) of a random crop (tensors),
    None when the image was not cropped; ``image`` is the (cropped) image."""

    image: Any
    offset: tuple | None = None


class Task:
    """A task (main or anchor) and everything specific to it, in one place.

    * the network: ``build_outputs`` (output layers) and ``loss_terms`` (masked losses);
    * the data: ``config_from_info`` (its settings from a dataset's TFDS info),
      ``features`` (the dataset features it needs), ``read_dense`` / ``make_labels``
      (TFDS example -> label dict, in tf.data);
    * evaluation: ``evaluator`` (pooled metrics at ground-truth resolution), ``columns``
      and ``primary`` (result tables), ``postprocess`` (raw output -> prediction);
    * figures: ``figure_rows`` (qualitative panels);
    * domain adaptation: ``output_space`` (what an output-space discriminator sees);
    * the anchor PCA figure: ``feature_locations`` / ``location_names``.

    Subclasses set ``name`` (the registry key), ``label_keys`` (keys of the label dict they
    read), ``roles`` (``"main"`` and/or ``"anchor"``: the choices of ``--main`` and
    ``--anchor``) and implement at least ``build_outputs``, ``loss_terms``, ``read_dense`` /
    ``make_labels``; a main task also ``evaluator``, ``columns``, ``postprocess`` and
    ``figure_rows``.

    A loss term is ``(elementwise_loss, weight, coefficient)`` with the first two of shape
    (B, ...). The trainer reduces each term as a pooled weighted mean over all elements of
    the examples selected for a (task, domain) group, so masked-out elements never count.
    """

    name: str = ""
    label_keys: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    # Dataset features the task reads (default: its first label key).
    features: tuple[str, ...] = ()
    # Result-table columns (a main task's evaluation dict) and the headline key of them.
    columns: tuple[MetricColumn, ...] = ()
    primary: str = ""
    unit: str = ""
    # Order of the metrics in console summaries (default: ``columns``' order).
    summary_keys: tuple[str, ...] = ()
    # One sentence on the units of ``columns`` for table captions.
    caption_note: str = ""

    @property
    def metrics_title(self) -> str:
        """What a summary calls this task's metrics (the demo's table caption)."""
        return f"pooled {self.name} metrics ({self.caption_note})"
    # True if build_outputs reads the 2nd up-sampling stage's output (``mid_features``).
    uses_mid_features: bool = False
    # Whether --augment=photometric_flip may mirror this task's examples (its dense
    # labels are mirrored with the image; ``flip_dense`` fixes what mirroring changes).
    flippable: bool = True
    # An anchor task's evaluation key that --select=target_anchor picks checkpoints by
    # (its evaluator's result key) and whether higher is better.
    anchor_metric: str = ""
    anchor_higher_is_better: bool = True

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

    # --- data (tf.data, TensorFlow ops) ------------------------------------------------
    @classmethod
    def config_from_info(cls, info) -> dict:
        """The task's constructor arguments that a dataset's TFDS info decides."""
        return {}

    def required_features(self) -> tuple[str, ...]:
        return self.features or self.label_keys[:1]

    def read_dense(self, example) -> dict:
        """Label maps of a TFDS example as float32 (H, W, C) tensors; the pipeline resizes
        and crops them (nearest) with the image. Raises ValueError if one is missing."""
        return {}

    def flip_dense(self, dense: dict) -> dict:
        """``dense`` (this task's ``read_dense`` output) of a horizontally mirrored image,
        after every array was mirrored: the default changes nothing more."""
        return dense

    def make_labels(self, example, dense: dict, geometry: Geometry) -> dict:
        """The task's entries of the label dict, from the resized/cropped ``dense`` maps
        (and, for point labels, the example and the crop ``geometry``)."""
        raise NotImplementedError

    # --- evaluation and figures (numpy) ------------------------------------------------
    def evaluator(self):
        """An object with ``update(outputs, labels)`` (a batch: model outputs at 1/2 input
        size, labels at ground-truth resolution) and ``result() -> dict``; None if the
        task has no evaluation."""
        return None

    def headline(self, stats: dict) -> str:
        """A one-line summary of an evaluation dict (harness progress lines)."""
        keys = self.summary_keys or tuple(c.key for c in self.columns)
        return " ".join(f"{k} {stats[k]:.3f}" for k in keys[:3] if k in stats)

    def postprocess(self, outputs: dict, size=None) -> np.ndarray:
        """Raw model outputs (numpy, a batch) -> the task's prediction (e.g. unit normals)."""
        raise NotImplementedError(f"task {self.name!r} has no prediction")

    def graph_postprocess(self, outputs: dict, resize=None):
        """``postprocess`` in the graph (Keras ops) for an exported network
        (``tada_keras.export``); ``resize``: None, or a function that resizes a (B, h, w, C)
        tensor bilinearly to the input's size."""
        raise NotImplementedError(f"task {self.name!r} cannot be exported")

    def resize_prediction(self, prediction, size) -> np.ndarray:
        """A batch of this task's predictions resized to ``size`` = (H, W) as
        ``postprocess`` resizes (predictions of an exported network)."""
        raise NotImplementedError(f"task {self.name!r} has no prediction")

    def as_outputs(self, prediction) -> dict:
        """A batch of predictions as the raw outputs ``evaluator`` reads (inverse of
        ``postprocess``)."""
        raise NotImplementedError(f"task {self.name!r} has no prediction")

    def save_prediction(self, stem: str, prediction) -> list[str]:
        """Writes one image's prediction as ``<stem>_<task>.npy`` (+ viewable files);
        returns the paths."""
        path = f"{stem}_{self.name}.npy"
        np.save(path, np.asarray(prediction, np.float32))
        return [path]

    def figure_rows(self, prediction, labels: dict) -> list[dict]:
        """Panels of one example for the qualitative figure: dicts with ``title``,
        ``image`` (RGB uint8, or a float map with ``cmap`` / ``vmin`` / ``vmax``) and
        optionally ``colorbar`` (a label). ``prediction``: this task's postprocessed
        prediction of the example; ``labels``: its labels at ground-truth resolution."""
        return []

    # --- self-training (tada_keras.training.teacher; docs/self_training.md) ------------
    def pseudo_reference(self, outputs: dict):
        """Main task: a (B, h, w) float32 tensor of zeros at the resolution of its dense
        output (the pseudo-labels' and masks' resolution)."""
        raise ValueError(f"task {self.name!r} has no pseudo-labels (self-training needs a "
                         "dense main task)")

    def pseudo_labels(self, outputs: dict, keep) -> dict:
        """Main task: the label dict (this task's own keys) that a teacher's ``outputs``
        give, pixels where ``keep`` (B, h, w) is 0 or the prediction is not finite made
        invalid, so ``loss_terms`` gives them weight 0."""
        raise ValueError(f"task {self.name!r} has no pseudo-labels")

    def view_agreement(self, outputs_a: dict, outputs_b: dict, settings):
        """Main task: (B, h, w) bool, where two predictions of one image agree within
        the task's tolerance (``settings``: ``training.teacher.SelfTraining``)."""
        raise ValueError(f"task {self.name!r} has no view-consistency mask")

    def anchor_agreement(self, y: dict, outputs: dict, settings):
        """Anchor task: (B, h, w) bool at the main output's resolution (that of
        ``outputs``' main prediction, read from its first dense output), where the
        teacher's anchor prediction in ``outputs`` agrees with the anchor label in ``y``."""
        raise ValueError(f"task {self.name!r} has no anchor-guided mask")

    def valid_region(self, y: dict):
        """(B, h, w) mask of the pixels where this task's labels are valid (what
        ``--da_face_mask`` keeps in the discriminators' inputs)."""
        raise ValueError(f"task {self.name!r} has no per-pixel validity mask")

    def output_space(self, outputs: dict):
        """The task's output as an output-space (Tsai et al.) discriminator sees it."""
        raise ValueError(f"No output space is defined for main task {self.name!r}")

    def feature_locations(self, features, labels: dict) -> dict:
        """Anchor PCA figure: location id -> feature vector of one image; ``features``:
        (h, w, D) encoder features, ``labels``: the image's labels."""
        return {}

    def location_names(self, info) -> dict:
        return {}


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
