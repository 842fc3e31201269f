"""TadaModel: the TADA network plus the one loss computation shared by every method."""

from __future__ import annotations

import contextlib
import types

import keras
from keras import ops

from tada_keras import backend
from tada_keras import conventions as C
from tada_keras.methods import LOSS_GROUPS, LossWeights
from tada_keras.models import build_tada_graph
from tada_keras.tasks import get_task


@contextlib.contextmanager
def dtype_policy_scope(policy):
    """Keras's global dtype policy set to ``policy`` inside the block (None: unchanged),
    restored afterwards, so that nothing else in the process changes."""
    if policy is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(keras.dtype_policies.get(policy))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


# Key of the tapped features in the training outputs of a model with an adaptation.
FEATURES = "_adaptation_features"
# The self-training loss group (the teacher's pseudo-labels; training/teacher.py).
PSEUDO_GROUP = "target_main_pseudo"


@keras.saving.register_keras_serializable(package="tada_keras")
class TadaModel(keras.Model):
    """Shared encoder f and task heads g_m, g_a (paper §3, §4.4) with the TADA loss.

    One batch holds source and target examples. ``y`` is a dict with ``"domain"`` (0 =
    source, 1 = target, per example), the labels of each task (``tada_keras.conventions``
    keys) with their masks, and optional per-example presence flags ``"<task>_present"``.
    Each active loss group (see ``tada_keras.methods``) is a pooled masked mean over the
    examples of its domain whose labels are present; the total is their weighted sum.
    Methods differ only in the weights (``set_loss_weights``), never in code paths.

    Args:
        main_task: registered task name of the main task (e.g. ``"normals"``).
        anchor_task: registered task name of the anchor task, or ``None``.
        main_config / anchor_config: keyword arguments of the tasks.
        backbone: ``"resnet50"`` (paper), ``"resnet18"`` or ``"tiny"``.
        backbone_weights: ``None``, ``"imagenet"`` or a local weights file.
        decoder_channels: FPN decoder width.
        freeze_after: ``"up-1"``, ``"up-2"`` (paper) or ``"up-3"``: where the head starts.
        input_shape: (H, W, 3) with H, W divisible by 32, or None for any such size.
        dtype: the layers' dtype policy (e.g. ``"mixed_bfloat16"``; default: Keras's
            global policy). It is part of the config, so a reloaded model computes in the
            policy it was trained with.

    Example:
    ```python
    model = tada_keras.build_model(main_task="normals", anchor_task="segmentation",
                                   anchor_config={"num_classes": 41}, backbone="tiny")
    model.set_loss_weights(tada_keras.get_method("mtl_both").phases[0].weights)
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    model.fit(train_ds)  # batches of (image, labels dict with "domain")
    ```
    """

    def __init__(self, main_task="normals", anchor_task="segmentation", main_config=None,
                 anchor_config=None, backbone="resnet50", backbone_weights=None,
                 decoder_channels=256, freeze_after="up-2", input_shape=(None, None, 3),
                 dtype=None, **kwargs):
        # === Layers ===
        main = get_task(main_task, **(main_config or {}))
        anchor = get_task(anchor_task, **(anchor_config or {})) if anchor_task else None
        tasks = [main] + ([anchor] if anchor else [])
        # === Functional Model ===
        # The graph's layers (keras.applications' included) take the global policy.
        with dtype_policy_scope(dtype):
            inputs, outputs = build_tada_graph(tasks, backbone, backbone_weights,
                                               decoder_channels, freeze_after,
                                               tuple(input_shape))
            super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # === Config ===
        self.main_task = main_task
        self.anchor_task = anchor_task
        self.main_config = main.get_config()
        self.anchor_config = anchor.get_config() if anchor else None
        self.backbone = backbone
        self.backbone_weights = backbone_weights
        self.decoder_channels = decoder_channels
        self.freeze_after = freeze_after
        self.model_input_shape = tuple(input_shape)
        self.main = main
        self.anchor = anchor
        self.loss_weights_map = LossWeights(source_main=1.0).as_dict()
        self.group_trackers = {g: keras.metrics.Mean(name=g) for g in LOSS_GROUPS}
        # Unsupervised DA (tada_keras.adaptation): discriminators attached for training.
        self.adaptation = None
        # Self-training (tada_keras.training.teacher): the mean teacher, attached for the
        # phases whose loss weights use pseudo-labels, and its settings.
        self.teacher = None
        self.self_training = None
        # Not a list/dict/Layer: Keras saving must not walk the cached feature model.
        self._feature_cache = types.SimpleNamespace(levels=None, model=None)

    @property
    def metrics(self):
        # Log only the loss groups the current phase trains (others would read 0).
        inactive = {id(t) for g, t in self.group_trackers.items()
                    if not self.loss_weights_map.get(g)}
        return [m for m in super().metrics if id(m) not in inactive]

    @property
    def head(self) -> keras.Model:
        return self.get_layer("head")

    @property
    def encoder(self) -> keras.Model:
        return self.get_layer("encoder")

    def _task(self, group):
        return self.main if group.endswith("_main") else self.anchor

    def set_loss_weights(self, weights) -> None:
        """Sets the per-group weights (a ``LossWeights`` or a dict); recompile afterwards."""
        weights = weights.as_dict() if isinstance(weights, LossWeights) else dict(weights)
        unknown = set(weights) - set(LOSS_GROUPS)
        if unknown:
            raise ValueError(f"Unknown loss groups {sorted(unknown)}; expected {LOSS_GROUPS}")
        if self.anchor is None and (weights.get("source_anchor") or
                                    weights.get("target_anchor")):
            raise ValueError("Anchor loss weights set, but the model has no anchor task.")
        self.loss_weights_map = {g: float(weights.get(g, 0.0)) for g in LOSS_GROUPS}
        # Weights are compile-time constants of the traced step: force a retrace.
        self.train_function = self.test_function = None

    def group_losses(self, y, y_pred, groups=LOSS_GROUPS, diagnostics=None):
        """Returns {group: scalar loss} for the groups whose labels are in ``y``
        (``target_main_pseudo``: when a teacher is attached and ``y`` holds its weak view;
        its kept fraction goes to ``diagnostics["pseudo_kept"]`` if a dict is given)."""
        domain = ops.reshape(ops.cast(y[C.DOMAIN], "int32"), (-1,))
        losses = {}
        for group in groups:
            if group == PSEUDO_GROUP:
                if self.teacher is not None and C.PSEUDO_WEAK in y:
                    from tada_keras.training.teacher import pseudo_loss

                    teacher, teacher2 = self.teacher.predict_views(y)
                    losses[group], kept = pseudo_loss(self.teacher.settings, self.main,
                                                      self.anchor, y, y_pred, teacher,
                                                      teacher2)
                    if diagnostics is not None:
                        diagnostics["pseudo_kept"] = kept
                continue
            domain_name = group.split("_")[0]
            task = self._task(group)
            if task is None or not task.has_labels(y):
                continue
            task.check_labels(y, y_pred)
            selected = ops.cast(domain == (0 if domain_name == "source" else 1), "float32")
            present = y.get(f"{task.name}_present")
            if present is not None:
                selected = selected * ops.reshape(ops.cast(present, "float32"), (-1,))
            total = 0.0
            for loss, weight, coefficient in task.loss_terms(y, y_pred):
                total = total + coefficient * pooled_mean(loss, weight, selected)
            losses[group] = total
        return losses

    def weighted_loss(self, y, y_pred, diagnostics=None):
        """Pure form of ``compute_loss``: returns (total, {group: loss}), no side effects
        (the pseudo-label group's weight is μ times the teacher's ramp-up r(t))."""
        if not isinstance(y, dict) or C.DOMAIN not in y:
            raise ValueError("TadaModel expects labels as a dict with a 'domain' entry "
                             "(0 = source, 1 = target per example); see tada_keras.data.")
        active = [g for g in LOSS_GROUPS if self.loss_weights_map[g] != 0.0]
        losses = self.group_losses(y, y_pred, active, diagnostics)
        missing = [g for g in active if g not in losses]
        if PSEUDO_GROUP in missing:
            raise ValueError(f"Loss group {PSEUDO_GROUP!r} is active but "
                             + ("no teacher is attached (attach_teacher, or "
                                "phases.configure_phase)" if self.teacher is None else
                                f"the batch has no teacher view (labels[{C.PSEUDO_WEAK!r}]"
                                ", see tada_keras.data.PseudoViews)"))
        if missing:
            keys = sorted({k for g in missing for k in self._task(g).label_keys})
            raise ValueError(f"Loss groups {missing} are active but the batch has no labels "
                             f"for them (expected keys {keys}).")
        total = ops.convert_to_tensor(0.0, "float32")
        for group, value in losses.items():
            weight = self.loss_weights_map[group]
            if group == PSEUDO_GROUP:
                weight = weight * self.teacher.ramp()
            total = total + weight * value
        return total, losses

    # --- Self-training (tada_keras.training.teacher) ------------------------------------

    def attach_teacher(self, settings=None, rampup_steps: int = 0, phase: str = "") -> None:
        """Attaches a mean teacher started from this model's current weights (its
        variables join the model's non-trainable weights, checkpoints and
        ``save_weights`` files). ``settings``: a ``training.teacher.SelfTraining``
        (default: ``self.self_training`` or the defaults). Compile afterwards."""
        from tada_keras.training.teacher import MeanTeacher, SelfTraining

        settings = settings or self.self_training or SelfTraining()
        if self.teacher is not None:
            self.detach_teacher()
        self.teacher = MeanTeacher(self, settings, rampup_steps, phase)
        self.train_function = self.test_function = None

    def detach_teacher(self) -> None:
        """Removes the teacher (before exporting the network, or for a phase without
        pseudo-labels)."""
        if self.teacher is None:
            return
        self._tracker.untrack(self.teacher)
        self.teacher = None
        self.train_function = self.test_function = None

    # --- Unsupervised domain adaptation (tada_keras.adaptation) -------------------------

    def attach_adaptation(self, adaptation) -> None:
        """Attaches a ``DomainAdversarial`` layer: its discriminators become part of the
        model's weights (checkpoints, ``save_weights``) and ``fit`` trains them in the
        same step as the network (``compute_loss``). Compile afterwards with an
        ``AdversarialOptimizer``."""
        if self.adaptation is not None:
            self.detach_adaptation()
        self.adaptation = adaptation
        self.train_function = None

    def detach_adaptation(self) -> None:
        """Removes the discriminators (e.g. before saving the final network)."""
        if self.adaptation is None:
            return
        # Functional models allow attaching layers after build; detaching has no public
        # API, so untrack it the way Keras untracks a deleted variable.
        self._tracker.untrack(self.adaptation)
        self.adaptation = None
        self.train_function = None

    def feature_model(self, levels) -> keras.Model:
        """``image -> {"outputs", "features"}`` sharing this model's layers (cached)."""
        from tada_keras.models import build_feature_model

        levels = tuple(levels)
        cache = self._feature_cache
        if cache.levels != levels:
            cache.model = build_feature_model(self.encoder, self.head, levels)
            cache.levels = levels
        return cache.model

    def _outputs_with_features(self, inputs, training):
        from tada_keras.adaptation.adversarial import OUTPUT_LEVEL

        levels = [lv for lv in self.adaptation.levels if lv != OUTPUT_LEVEL]
        out = self.feature_model(levels)(inputs, training=training)
        return {**out["outputs"], FEATURES: out["features"]}

    def call(self, inputs, training=None, mask=None, **kwargs):
        """The task outputs; while training with an attached adaptation, also the tapped
        features (under ``FEATURES``) that ``compute_loss`` hands to the discriminators.
        Keras's own train step does the rest on every backend."""
        if self.adaptation is not None and training:
            return self._outputs_with_features(inputs, training)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def adversarial_objective(self, x, y, training=True):
        """``(objective, terms)`` of one forward pass with the attached adaptation (what
        the train step differentiates; see ``compute_loss``)."""
        return self._adversarial_loss(y, self._outputs_with_features(x, training), training)

    def _adversarial_loss(self, y, y_pred, training, diagnostics=None):
        """``objective``: the scalar whose gradient is the network's update direction for
        the network's variables and the discriminators' for theirs (gradient reversal /
        stop-gradients route it); ``terms``: the network's loss value (task + λ ·
        adversarial), the loss groups and the adaptation's monitor values."""
        outputs = {k: v for k, v in y_pred.items() if k != FEATURES}
        task, groups = self.weighted_loss(y, outputs, diagnostics)
        terms = self.adaptation.objective(y_pred[FEATURES], outputs, y, self.main, training)
        for extra in self.losses:  # regularisers, if any
            task = task + ops.cast(extra, "float32")
        return task + terms["objective"], dict(terms, groups=groups,
                                               loss=task + terms["network_loss"])

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        diagnostics = {}
        if training and self.teacher is not None:
            # The EMA step from the student after the previous optimizer step (start of
            # this step, DAFormer's order), then the teacher predicts for this step.
            self.teacher.advance(self)
        if isinstance(y_pred, dict) and FEATURES in y_pred:
            objective, terms = self._adversarial_loss(y, y_pred, training, diagnostics)
            for group, value in terms["groups"].items():
                self.group_trackers[group].update_state(value)
            self._log_diagnostics(diagnostics)
            self.adaptation.update_metrics(terms)
            # The logged loss is what the network pays (task + λ · adversarial); the
            # gradient is the objective's (the added constant has none).
            return objective + ops.stop_gradient(terms["loss"] - objective)
        total, losses = self.weighted_loss(y, y_pred, diagnostics)
        # Under a TensorFlow strategy each replica holds its share of a group's loss
        # (see pooled_mean); the trackers average over replicas, so log share x replicas.
        replicas = backend.num_replicas()
        for group, value in losses.items():
            self.group_trackers[group].update_state(value * replicas)
        self._log_diagnostics(diagnostics)
        for extra in self.losses:  # regularisers, if any (every replica adds its share)
            total = total + ops.cast(extra, "float32") / replicas
        return total

    def _log_diagnostics(self, diagnostics):
        if "pseudo_kept" in diagnostics and self.teacher is not None:
            self.teacher.kept.update_state(diagnostics["pseudo_kept"])

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        logs = super().compute_metrics(x, y, y_pred, sample_weight)
        if isinstance(y_pred, dict) and FEATURES in y_pred:
            # Batch logs carry this step's raw adversarial values (the discriminator
            # monitor reads them); Keras logs the trackers' epoch means at epoch end.
            logs.update(self.adaptation.latest_values())
        return logs

    def get_metrics_result(self):
        logs = super().get_metrics_result()
        if self.adaptation is not None:
            for metric in self.adaptation.latest.values():
                logs.pop(metric.name, None)
        return logs

    def get_config(self):
        config = super().get_config()  # name, trainable, dtype (the layers' policy)
        config.update({
            "main_task": self.main_task,
            "anchor_task": self.anchor_task,
            "main_config": self.main_config,
            "anchor_config": self.anchor_config,
            "backbone": self.backbone,
            "backbone_weights": self.backbone_weights,
            "decoder_channels": self.decoder_channels,
            "freeze_after": self.freeze_after,
            "input_shape": self.model_input_shape,
        })
        return config

    @classmethod
    def from_config(cls, config):
        # Saved weights replace the backbone's: never download or read them again.
        config = dict(config, backbone_weights=None)
        return cls(**config)


def pooled_mean(loss, weight, selected):
    """sum(loss * weight * selected) / max(sum(weight * selected), 1), float32.

    ``loss`` and ``weight`` have shape (B, ...), ``selected`` (B,). Elements with zero
    weight contribute exactly zero (their loss values are replaced, so NaNs cannot leak).
    In a data-parallel TensorFlow step the denominator is the sum over all replicas, so
    each replica returns its share and the shares add up to the global batch's mean.
    """
    loss = ops.cast(loss, "float32")
    shape = (-1,) + (1,) * (len(loss.shape) - 1)
    w = ops.cast(weight, "float32") * ops.reshape(selected, shape)
    loss = ops.where(w > 0, loss, ops.zeros_like(loss))
    return ops.sum(loss * w) / ops.maximum(backend.cross_replica_sum(ops.sum(w)), 1.0)


def build_model(main_task="normals", anchor_task="segmentation", **kwargs) -> TadaModel:
    """Builds the TADA network (see ``TadaModel`` for the arguments)."""
    return TadaModel(main_task=main_task, anchor_task=anchor_task, **kwargs)
