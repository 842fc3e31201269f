"""DomainAdversarial: the discriminators of one run and the adversarial terms they add.

DANN (Ganin & Lempitsky) and Tsai et al. (AdaptSegNet) share everything here but the
network's loss (see ``losses``): the discriminator of each level is trained on detached
(DANN: gradient-reversed) inputs with the true domain labels, and the network is pushed
to make the domains indistinguishable at that level.

Levels are named as in the paper's Table 5: ``layer-3`` and ``layer-4`` are the last two
ResNet stages (C4, C5), ``up-1`` .. ``up-3`` the FPN decoder stages, ``out`` the main
task's output space (unit normals; softmax for a segmentation main task).
"""

from __future__ import annotations

import keras
from keras import ops

from tada_keras import conventions as C
from tada_keras.adaptation.discriminators import PatchDiscriminator
from tada_keras.adaptation.losses import (
    adversarial_weight,
    discriminator_loss,
    domain_accuracy,
    generator_loss,
)
from tada_keras.layers import GradientReversal
from tada_keras.models.tada_graph import FEATURE_LEVELS
from tada_keras.tasks.base import resize_to

DA_METHODS = ("dann", "tsai")
OUTPUT_LEVEL = "out"
LEVELS = FEATURE_LEVELS + (OUTPUT_LEVEL,)
# Logged per step (raw) and per epoch (means); see ``DomainAdversarial.update_metrics``.
MONITOR_KEYS = ("disc_loss", "adv_loss", "disc_acc_source", "disc_acc_target", "da_lambda")
# ``--da_levels=auto``. DANN: layer-4, the only level of the paper's Table 5 (faces) that
# did not degrade the result; Tsai: the output space, AdaptSegNet's single-level setting.
DEFAULT_LEVELS = {"dann": ("layer-4",), "tsai": (OUTPUT_LEVEL,)}


def parse_levels(text, method: str) -> tuple[str, ...]:
    """``"layer-4,out"`` -> ("layer-4", "out"); ``"auto"`` -> the method's default."""
    if isinstance(text, (list, tuple)):
        names = [str(t).strip() for t in text]
    else:
        text = (text or "auto").strip()
        if text == "auto":
            return DEFAULT_LEVELS[method]
        names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in LEVELS]
    if unknown or not names:
        raise ValueError(f"--da_levels={text!r}: unknown level(s) {unknown}; expected a "
                         f"comma-separated subset of {list(LEVELS)} (or 'auto')")
    return tuple(dict.fromkeys(names))  # drop repeats, keep the order


class LastValue(keras.metrics.Metric):
    """The value of the last ``update_state`` (a metric, so its state is threaded through
    every backend's compiled train step like the other trackers')."""

    def __init__(self, name="last_value", dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self.value = self.add_variable(shape=(), initializer="zeros", dtype=dtype,
                                       name="value")

    def update_state(self, value):
        self.value.assign(ops.cast(value, self.dtype))

    def result(self):
        return ops.convert_to_tensor(self.value)


@keras.saving.register_keras_serializable(package="tada_keras")
class DomainAdversarial(keras.layers.Layer):
    """One ``PatchDiscriminator`` per level plus the schedule of the adversarial weight λ.

    ``objective`` returns the scalar to add to the task loss before differentiating once
    with respect to *all* trainable variables (network and discriminators): stop-gradients
    (Tsai) or the gradient reversal layer (DANN) route each gradient to the right player,
    and ``AdversarialOptimizer`` applies the network's and the discriminators' gradients
    with their own optimizers. λ = ``weight`` × schedule, 0 for the first
    ``warmup_steps`` steps, computed in the step from the ``step`` counter variable (saved
    with the weights, so a resumed run continues the schedule).

    Args:
        method: ``"dann"`` or ``"tsai"``.
        level_channels: {level: channels} of the discriminated features, in order.
        output_task: the main task's name, recorded in the layer's config (the objective
            uses the configured ``Task`` the model passes to it).
        weight: maximum λ.
        schedule: ``"constant"`` or ``"ramp"`` (2/(1+exp(-γp))-1 after the warm-up).
        gamma: γ of the ramp.
        warmup_steps: steps before the network's adversarial loss is switched on (the
            discriminators train from the first step).
        total_steps: steps of the whole run (the ramp's horizon).
        disc_layers / disc_filters / disc_batchnorm / disc_noise: ``PatchDiscriminator``
            settings.
        label_noise: noise on the discriminator's real/fake labels.
        mask_outside: zero the discriminators' inputs outside the main task's
            ``valid_region`` (the paper zeroes everything outside the face region for faces).
        seed: seed of the label noise.

    Example:
    ```python
    da = DomainAdversarial("tsai", {"out": 3}, weight=1e-3)
    model.attach_adaptation(da)   # a TadaModel; then compile with AdversarialOptimizer
    ```

    Reference:
        Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015;
        Tsai et al., "Learning to Adapt Structured Output Space for Semantic
        Segmentation", CVPR 2018.
    """

    def __init__(self, method: str = "dann", level_channels: dict | None = None,
                 output_task: str | None = None, weight: float = 1.0,
                 schedule: str = "constant", gamma: float = 10.0, warmup_steps: int = 0,
                 total_steps: int = 1, disc_layers: int = 5, disc_filters: int = 64,
                 disc_batchnorm: bool = False, disc_noise: float = 0.0,
                 label_noise: float = 0.0, mask_outside: bool = False,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if method not in DA_METHODS:
            raise ValueError(f"method must be one of {list(DA_METHODS)}, got {method!r}")
        level_channels = dict(level_channels or {OUTPUT_LEVEL: 3})
        parse_levels(list(level_channels), method)
        # === Config ===
        self.method = method
        self.level_channels = {k: int(v) for k, v in level_channels.items()}
        self.levels = tuple(self.level_channels)
        self.output_task = output_task
        self.weight = float(weight)
        self.schedule = schedule
        self.gamma = float(gamma)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.disc_layers = int(disc_layers)
        self.disc_filters = int(disc_filters)
        self.disc_batchnorm = bool(disc_batchnorm)
        self.disc_noise = float(disc_noise)
        self.label_noise = float(label_noise)
        self.mask_outside = bool(mask_outside)
        self.seed = seed
        # === Layers ===
        self.discriminators = {
            level: PatchDiscriminator(
                channels, num_layers=self.disc_layers, filters=self.disc_filters,
                batchnorm=self.disc_batchnorm, noise_stddev=self.disc_noise,
                name="discriminator_" + level.replace("-", ""))
            for level, channels in self.level_channels.items()}
        self.reversal = GradientReversal(0.0, name="gradient_reversal")
        self.seed_generator = keras.random.SeedGenerator(seed, name="label_noise_seed")
        # === State ===
        self.step = self.add_weight(shape=(), dtype="int32", initializer="zeros",
                                    trainable=False, name="step")
        self.trackers = {k: keras.metrics.Mean(name=k) for k in MONITOR_KEYS}
        # This step's raw values, for the per-step batch logs (``TadaModel`` puts them
        # there and keeps them out of the epoch logs).
        self.latest = {k: LastValue(name=f"{k}_latest") for k in MONITOR_KEYS}

    def objective(self, features: dict, outputs: dict, y: dict, main_task,
                  training: bool = True):
        """Adversarial terms of one training step; advances the step counter.

        Args:
            features: {level: (B, h, w, C)} tapped features (``TadaModel.feature_model``).
            outputs: the network's outputs dict (for the ``out`` level).
            y: the batch labels (``"domain"``; the main task's validity mask if
                ``mask_outside``).
            main_task: the model's configured main ``Task``: the ``out`` level sees its
                ``output_space``, ``mask_outside`` uses its ``valid_region``.
        Returns:
            dict with ``objective`` (add to the task loss, then differentiate),
            ``network_loss`` (value of λ · Σ adversarial losses, what the network pays),
            and the per-level means in ``MONITOR_KEYS``.
        """
        domain = ops.reshape(ops.cast(y[C.DOMAIN], "int32"), (-1,))
        is_target = ops.cast(domain == C.DOMAIN_TARGET, "float32")
        step = ops.convert_to_tensor(self.step) + 1
        if training:
            self.step.assign(step)
        lam = ops.cast(adversarial_weight(step, self.weight, self.schedule, self.gamma,
                                          self.warmup_steps, self.total_steps), "float32")
        if self.method == "dann":
            self.reversal.lam.assign(lam)
        mask = None
        if self.mask_outside:
            mask = ops.cast(main_task.valid_region(y), "float32")[..., None]
        objective = ops.convert_to_tensor(0.0, "float32")
        disc, adv, acc_s, acc_t = [], [], [], []
        for level in self.levels:
            x = (main_task.output_space(outputs) if level == OUTPUT_LEVEL
                 else ops.cast(features[level], "float32"))
            if mask is not None:
                x = x * resize_to(mask, x.shape[1], x.shape[2], "nearest")
            d = self.discriminators[level]
            if self.method == "dann":
                # One pass: D descends on its loss, the reversal makes the network ascend.
                logits = d(self.reversal(x), training=training)
                d_loss = discriminator_loss(logits, is_target, self.label_noise,
                                            self.seed_generator)
                a_loss = -d_loss
                objective = objective + d_loss
            else:
                logits = d(ops.stop_gradient(x), training=training)
                d_loss = discriminator_loss(logits, is_target, self.label_noise,
                                            self.seed_generator)
                # The network's pass uses D with its weights held fixed; D's state
                # updates (BN statistics, noise seeds) of this pass are dropped.
                frozen = [ops.stop_gradient(v) for v in d.trainable_variables]
                state = [ops.convert_to_tensor(v) for v in d.non_trainable_variables]
                fooled, _ = d.stateless_call(frozen, state, x, training=training)
                a_loss = generator_loss(fooled, is_target)
                objective = objective + d_loss + lam * a_loss
            s, t = domain_accuracy(logits, is_target)
            disc.append(d_loss)
            adv.append(a_loss)
            acc_s.append(s)
            acc_t.append(t)
        n = float(len(self.levels))
        return {
            "objective": objective,
            "network_loss": lam * sum(adv),
            "disc_loss": sum(disc) / n,
            "adv_loss": sum(adv) / n,
            "disc_acc_source": sum(acc_s) / n,
            "disc_acc_target": sum(acc_t) / n,
            "da_lambda": lam,
        }

    def update_metrics(self, terms: dict) -> None:
        """Updates the epoch-mean trackers and this step's raw values."""
        for key in MONITOR_KEYS:
            self.trackers[key].update_state(terms[key])
            self.latest[key].update_state(terms[key])

    def latest_values(self) -> dict:
        """{key: this step's raw value} (``MONITOR_KEYS``)."""
        return {key: self.latest[key].result() for key in MONITOR_KEYS}

    def get_config(self):
        config = super().get_config()
        config.update({
            "method": self.method,
            "level_channels": self.level_channels,
            "output_task": self.output_task,
            "weight": self.weight,
            "schedule": self.schedule,
            "gamma": self.gamma,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "disc_layers": self.disc_layers,
            "disc_filters": self.disc_filters,
            "disc_batchnorm": self.disc_batchnorm,
            "disc_noise": self.disc_noise,
            "label_noise": self.label_noise,
            "mask_outside": self.mask_outside,
            "seed": self.seed,
        })
        return config
