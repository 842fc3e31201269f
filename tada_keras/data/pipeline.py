"""tf.data pipeline: decode TFDS examples into model batches and mix the domains.

A training batch holds ``batch_source`` source and ``batch_target`` target examples and a
label dict with every key of the model's tasks, a per-example ``domain`` flag and
per-example presence flags ``<task>_present``. Labels the method does not use, or that an
example does not have, are zeros with presence 0 and never reach a loss (the model's
masks decide; there is no per-method code path here).

Augmentation is the paper's: random colour shift only, plus random crops to ``crop_size``
when images are larger. ``DataSpec.augment`` adds, on source examples only (the synthetic
side, where domain randomisation belongs): ``photometric`` (Keras 3 preprocessing layers:
brightness, contrast, hue, grayscale, seeded) and ``photometric_flip`` (+ a horizontal
flip of image and dense labels, each task fixing what mirroring changes: the normals'
x component is negated).
All of it runs in tf.data (so on every backend).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import tensorflow as tf
import tensorflow_datasets as tfds

from tada_keras import conventions as C
from tada_keras.data import tfds_warnings

tfds_warnings.install()  # TFDS's own dtype deprecation warning, from its decoder only


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """What the model needs from a dataset example.

    Args:
        main_task / anchor_task: the model's configured ``Task`` instances (a run passes
            ``model.main`` / ``model.anchor``: labels are made by the tasks the model
            was built with); a registered name gives that task with its default config.
        crop_size: training crop (square); None trains on whole images.
        image_size: resize (square) applied before cropping / for evaluation; None keeps it.
        label_scale: training labels are resized (nearest) to this fraction of the input,
            the model's output resolution, so the loss needs no up-sampling.
    """

    main_task: Any = "normals"
    anchor_task: Any = "segmentation"
    crop_size: int | None = None
    image_size: int | None = None
    label_scale: float = 0.5
    augment: str = "none"

    def __post_init__(self):
        from tada_keras.tasks import get_task

        for field in ("main_task", "anchor_task"):
            value = getattr(self, field)
            if isinstance(value, str):
                object.__setattr__(self, field, get_task(value))


@dataclasses.dataclass(frozen=True)
class PseudoViews:
    """Self-training views of a target example (``tada_keras.training.teacher``).

    The batch image of a target example becomes the **strong** view (the student's
    input): the weak view, then ``photometric``'s four transforms with its ranges
    (brightness ±0.2, contrast ±0.3, hue ±0.05, grayscale with p = 0.1) drawn
    statelessly from the example's key (so the draws are paired across methods and
    a resumed run draws the same), then, with ``mask_ratio`` > 0, MIC-style patch
    masking: each ``patch_size`` × ``patch_size`` patch is set to 0 with probability
    ``mask_ratio``. The **weak** view (the usual crop and colour shift) goes to
    ``labels[PSEUDO_WEAK]`` for the teacher; with ``second_view`` a second colour shift
    of the same crop to ``labels[PSEUDO_WEAK2]``. Source examples carry their own image
    under both keys (no pseudo-label is computed for them). Pixels do not move, so every
    label stays aligned with every view.
    """

    second_view: bool = False
    mask_ratio: float = 0.0
    patch_size: int = 32


def photometric_layers(seed: int = 0) -> list:
    """The ``photometric`` augmentation: Keras 3 preprocessing layers on [0, 255] images
    (they run in tf.data whatever the Keras backend)."""
    import keras

    return [keras.layers.RandomBrightness(0.2, value_range=(0, 255), seed=seed),
            keras.layers.RandomContrast(0.3, value_range=(0, 255), seed=seed + 1),
            keras.layers.RandomHue(0.05, value_range=(0, 255), seed=seed + 2),
            keras.layers.RandomGrayscale(0.1, seed=seed + 3)]


def prepare_builder(name: str, data_dir: str | None = None, manual_dir: str | None = None):
    """Returns the TFDS builder ``name``, preparing it first if needed.

    ``manual_dir`` holds the manually downloaded files of datasets that need them.
    """
    import tada_datasets  # noqa: F401  (registers the project's builders)

    dataset_name, kwargs = tfds.core.naming.parse_builder_name_kwargs(name, data_dir=data_dir)
    cls = tfds.builder_cls(str(dataset_name))
    if manual_dir and getattr(cls, "CONFIG_FROM_MANUAL_DIR", False):
        # A builder whose config is read from the manual_dir (sim2real_manifest: the
        # manifest decides the features) needs it when constructed; constructed directly
        # so that its error about the user's files is not buried under tfds.builder's.
        builder = cls(manual_dir=manual_dir, **kwargs)
    else:
        builder = tfds.builder(name, data_dir=data_dir)
    config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    builder.download_and_prepare(download_config=config)
    return builder


def load_split(name: str, split: str, data_dir: str | None = None, shuffle: bool = False,
               seed: int = 0, manual_dir: str | None = None) -> tf.data.Dataset:
    """Loads ``name`` (``"builder/config"``) ``split`` as a tf.data of example dicts."""
    builder = prepare_builder(name, data_dir, manual_dir)
    if split not in builder.info.splits:
        raise ValueError(f"Dataset {name!r} has no split {split!r}; it has "
                         f"{sorted(builder.info.splits)}.")
    read_config = tfds.ReadConfig(shuffle_seed=seed) if shuffle else None
    return builder.as_dataset(split=split, shuffle_files=shuffle, read_config=read_config)


def _resize(image, size, method):
    return tf.image.resize(image, (size, size), method=method)


def prepare_example(example, spec: DataSpec, domain: int, use_main: bool, use_anchor: bool,
                    training: bool, seed=None, augment: list | None = None,
                    views: PseudoViews | None = None):
    """One TFDS example dict -> (image float32 [0, 255], labels dict).

    Each task decides what it reads (``Task.read_dense`` / ``make_labels``); this function
    only resizes, crops and colour-shifts, identically for every task. ``augment``: the
    photometric layers (``photometric_layers``) to apply, or None; with
    ``spec.augment == "photometric_flip"`` they come with a random horizontal flip.
    ``seed``: a shape-[2] integer tensor that makes the crop, flip and colour shift of this
    example a stateless function of it (``mixed_train_dataset`` passes (run seed and
    domain, example index), so two runs with one seed draw the same augmentation for the
    same example, whatever the parallelism); None draws from TensorFlow's stateful
    generator. The photometric layers always draw statefully (Keras's layers take no
    per-call seed tensor). ``views``: the self-training views (``PseudoViews``).
    """
    from tada_keras.tasks.base import Geometry

    image = tf.cast(example[C.IMAGE], tf.float32)
    tasks = {"main": spec.main_task, "anchor": spec.anchor_task}
    tasks = {role: task for role, task in tasks.items() if task is not None}
    own = {role: task.read_dense(example) for role, task in tasks.items()}

    if training and augment is not None and spec.augment == "photometric_flip":
        image, own = _random_flip(image, own, tasks, seed)
    dense = {k: v for d in own.values() for k, v in d.items()}
    if spec.image_size:
        image = _resize(image, spec.image_size, "bilinear")
        dense = {k: _resize(v, spec.image_size, "nearest") for k, v in dense.items()}
    if training and spec.crop_size:
        image, dense, offset = _random_crop(image, dense, spec.crop_size, seed)
    else:
        offset = None
    if training:
        unshifted = image
        image = _colour_shift(image, seed)
        for layer in augment or ():
            image = layer(image, training=True)
        # Static label sizes keep the traced training step shape-static (needed by
        # keras.ops.image.resize on every backend).
        static = image.shape[:2]
        if static.is_fully_defined():
            out = [int(round(d * spec.label_scale)) for d in static]
        else:
            out = tf.cast(tf.round(tf.cast(tf.shape(image)[:2], tf.float32)
                                   * spec.label_scale), tf.int32)
        dense = {k: tf.image.resize(v, out, method="nearest") for k, v in dense.items()}

    labels = {}
    if training and views is not None:
        image, labels = _pseudo_views(image, unshifted, domain, views, seed)
    flags = {"main": use_main, "anchor": use_anchor}
    geometry = Geometry(image, offset)
    for role, task in tasks.items():
        present = tf.constant(1.0 if flags[role] else 0.0)
        labels.update(task.make_labels(example, dense, geometry))
        if role == "anchor" and C.HAS_ANCHOR in example:
            present = present * tf.cast(example[C.HAS_ANCHOR], tf.float32)
        labels[f"{task.name}_present"] = present
    labels[C.DOMAIN] = tf.constant(domain, tf.int32)
    return image, labels


def _fold(seed, stream: int):
    return (None if seed is None
            else tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), stream))


def _pseudo_views(weak, unshifted, domain, views: PseudoViews, seed):
    """(batch image, {PSEUDO_WEAK: ..., PSEUDO_WEAK2: ...}); see ``PseudoViews``."""
    if domain != C.DOMAIN_TARGET:
        return weak, {C.PSEUDO_WEAK: weak, **({C.PSEUDO_WEAK2: weak} if views.second_view
                                              else {})}
    labels = {C.PSEUDO_WEAK: weak}
    if views.second_view:
        labels[C.PSEUDO_WEAK2] = _colour_shift(unshifted, _fold(seed, 101))
    return _strong_view(weak, views, _fold(seed, 102)), labels


def _strong_view(image, views: PseudoViews, seed):
    """The weak view with ``photometric``'s transforms (stateless draws) and patch masks."""
    image = image + _uniform((), -0.2 * 255.0, 0.2 * 255.0, tf.float32, seed, 0)
    image = tf.clip_by_value(image, 0.0, 255.0)
    mean = tf.reduce_mean(image, axis=(0, 1), keepdims=True)
    factor = _uniform((), 0.7, 1.3, tf.float32, seed, 1)
    image = tf.clip_by_value((image - mean) * factor + mean, 0.0, 255.0)
    image = tf.image.adjust_hue(image / 255.0, _uniform((), -0.05, 0.05, tf.float32, seed,
                                                        2)) * 255.0
    gray = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))
    image = tf.where(_uniform((), 0.0, 1.0, tf.float32, seed, 3) < 0.1, gray, image)
    image = tf.clip_by_value(image, 0.0, 255.0)
    if views.mask_ratio > 0:
        p = int(views.patch_size)
        shape = tf.shape(image)
        cells = (-(-shape[0] // p), -(-shape[1] // p))
        drop = _uniform(tf.stack([cells[0], cells[1], 1]), 0.0, 1.0, tf.float32, seed, 4)
        keep = tf.cast(drop >= views.mask_ratio, tf.float32)
        keep = tf.repeat(tf.repeat(keep, p, axis=0), p, axis=1)[:shape[0], :shape[1]]
        image = image * keep
    return image


def _random_crop(image, dense, size, seed):
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    with tf.control_dependencies([tf.debugging.assert_greater_equal(
            tf.minimum(h, w), size,
            message=f"--crop_size={size} is larger than an image; use --image_size")]):
        oy = _uniform((), 0, tf.maximum(h - size, 0) + 1, tf.int32, seed, 0)
    ox = _uniform((), 0, tf.maximum(w - size, 0) + 1, tf.int32, seed, 1)

    def crop(v):
        v = v[oy:oy + size, ox:ox + size]
        return tf.ensure_shape(v, [size, size, v.shape[-1]])

    return crop(image), {k: crop(v) for k, v in dense.items()}, (oy, ox, h, w)


def _random_flip(image, own, tasks, seed):
    """Mirrors the image and every task's dense labels with probability 1/2."""
    flip = _uniform((), 0, 2, tf.int32, seed, 2) > 0

    def mirrored(v):
        return tf.cond(flip, lambda: tf.reverse(v, axis=[1]), lambda: v)

    out = {}
    for role, dense in own.items():
        flipped = tasks[role].flip_dense({k: tf.reverse(v, axis=[1]) for k, v in dense.items()})
        out[role] = {k: tf.cond(flip, lambda a=flipped[k]: a, lambda b=dense[k]: b)
                     for k in dense}
    return mirrored(image), out


def _colour_shift(image, seed):
    """Random per-channel gain and offset plus brightness (the paper's colour shift)."""
    gain = _uniform((1, 1, 3), 0.9, 1.1, tf.float32, seed, 3)
    offset = _uniform((1, 1, 3), -10.0, 10.0, tf.float32, seed, 4)
    return tf.clip_by_value(image * gain + offset, 0.0, 255.0)


def _uniform(shape, minval, maxval, dtype, seed, stream: int):
    """A uniform draw: stateless from ``seed`` (a shape-[2] tensor; ``stream`` keeps the
    draws of one example apart), or stateful when ``seed`` is None."""
    if seed is None:
        return tf.random.uniform(shape, minval, maxval, dtype)
    key = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), stream)
    return tf.random.stateless_uniform(shape, key, minval, maxval, dtype)


def mixed_train_dataset(source: tf.data.Dataset, target: tf.data.Dataset | None,
                        spec: DataSpec, batch_source: int, batch_target: int,
                        use_target_main: bool, use_anchor: bool, use_target_anchor: bool,
                        seed: int = 0, shuffle_buffer: int = 512,
                        views: PseudoViews | None = None) -> tf.data.Dataset:
    """Infinite dataset of mixed batches (source first, then target examples).

    ``target=None`` (methods that see no target image) gives source-only batches.
    ``views``: self-training views (``PseudoViews``), None for other methods.
    """
    augment = photometric_layers(seed) if spec.augment != "none" else None

    def prep(domain, use_main, anchor, layers=None):
        # The index-th example of this domain's stream gets the same augmentation in every
        # run with this seed (paired methods, deterministic under parallel map).
        def fn(index, ex):
            key = tf.stack([tf.constant(2 * seed + domain, tf.int64), index])
            return prepare_example(ex, spec, domain, use_main, anchor, training=True,
                                   seed=key, augment=layers, views=views)

        return fn

    src = (source.repeat().shuffle(shuffle_buffer, seed=seed).enumerate()
           .map(prep(C.DOMAIN_SOURCE, True, use_anchor, augment),
                num_parallel_calls=tf.data.AUTOTUNE)
           .batch(batch_source, drop_remainder=True))
    if target is None or batch_target == 0:
        return src.prefetch(tf.data.AUTOTUNE)
    tgt = (target.repeat().shuffle(shuffle_buffer, seed=seed + 1).enumerate()
           .map(prep(C.DOMAIN_TARGET, use_target_main, use_target_anchor),
                num_parallel_calls=tf.data.AUTOTUNE)
           .batch(batch_target, drop_remainder=True))

    def concat(a, b):
        return tf.nest.map_structure(lambda u, v: tf.concat([u, v], axis=0), a, b)

    return tf.data.Dataset.zip(src, tgt).map(concat).prefetch(tf.data.AUTOTUNE)


def eval_dataset(ds: tf.data.Dataset, spec: DataSpec, domain: int, batch_size: int,
                 input_size: int | None = None,
                 input_scale: float | None = None) -> tf.data.Dataset:
    """Batches of (model input, full-resolution labels) for evaluation.

    Images are resized to ``input_size`` (square) or by ``input_scale`` (the paper feeds
    NYUv2 at 50 %) while labels keep their original resolution: predictions are resized
    to them by the metrics.
    """
    def prep(ex):
        image, labels = prepare_example(ex, dataclasses.replace(spec, image_size=None,
                                                                crop_size=None),
                                        domain, True, True, training=False)
        if input_size:
            image = _resize(image, input_size, "bilinear")
        elif input_scale:
            size = tf.cast(tf.round(tf.cast(tf.shape(image)[:2], tf.float32) * input_scale),
                           tf.int32)
            image = tf.image.resize(image, size, method="bilinear")
        return image, labels

    return ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(2)
