"""How a run's settings (``RunConfig``'s ``da*`` / ``disc_*`` fields) become the
discriminators, their optimizer and their checks.

Defaults and where they come from (see docs/domain_adaptation.md):

* ``da_weight``: DANN 1.0 (Ganin's λ ramps to 1; TLlib's ``trade_off`` is 1);
  Tsai 0.001 (AdaptSegNet's single-level ``lambda_adv_target2``).
* ``disc_learning_rate``: SGD 0.01 with momentum 0.9 (TLlib's DANN example; the paper
  says SGD for the discriminator but gives no rate); Adam 1e-4 with betas (0.9, 0.99)
  (AdaptSegNet's discriminator).
* ``da_levels=auto``: DANN ``layer-4`` (the paper's Table 5), Tsai ``out``.
"""

from __future__ import annotations

import keras

from tada_keras.adaptation.adversarial import (
    DA_METHODS,
    OUTPUT_LEVEL,
    DomainAdversarial,
    parse_levels,
)
from tada_keras.adaptation.optimizer import AdversarialOptimizer

DA_CHOICES = ("none",) + DA_METHODS
SCHEDULES = ("constant", "ramp")
DISC_OPTIMIZERS = ("sgd", "adam")
DEFAULT_WEIGHT = {"dann": 1.0, "tsai": 0.001}
DEFAULT_DISC_LEARNING_RATE = {"sgd": 1e-2, "adam": 1e-4}


def settings(cfg) -> dict:
    """The resolved adaptation settings of a run (defaults filled in), or {}."""
    if cfg.da == "none":
        return {}
    lr = cfg.disc_learning_rate
    return {
        "method": cfg.da,
        "levels": list(parse_levels(cfg.da_levels, cfg.da)),
        "weight": DEFAULT_WEIGHT[cfg.da] if cfg.da_weight is None else float(cfg.da_weight),
        "schedule": cfg.da_schedule,
        "gamma": cfg.da_gamma,
        "warmup_steps": cfg.da_warmup_steps,
        "disc_optimizer": cfg.disc_optimizer,
        "disc_learning_rate": DEFAULT_DISC_LEARNING_RATE[cfg.disc_optimizer]
        if lr is None else float(lr),
        "disc_layers": cfg.disc_layers,
        "disc_filters": cfg.disc_filters,
        "disc_batchnorm": cfg.disc_batchnorm,
        "disc_noise": cfg.disc_noise,
        "disc_label_noise": cfg.disc_label_noise,
        "da_face_mask": cfg.da_face_mask,
    }


def check_config(cfg, method) -> None:
    """Raises ValueError naming the flag; ``method`` is the run's ``Method``."""
    if cfg.da not in DA_CHOICES:
        raise ValueError(f"--da={cfg.da!r}: expected one of {list(DA_CHOICES)}")
    if cfg.da == "none":
        return
    parse_levels(cfg.da_levels, cfg.da)
    if cfg.da_face_mask and not _has_valid_region(cfg.main_task):
        raise ValueError(f"--da_face_mask needs a main task with a per-pixel validity "
                         f"mask (Task.valid_region: {', '.join(_with_valid_region())}); "
                         f"--main={cfg.main_task} has none")
    if cfg.batch_target == 0:
        raise ValueError(f"--da={cfg.da} needs target images in every batch, but "
                         "--batch_target=0 gives source-only batches; set --batch_target > 0")
    for phase in method.phases:
        if not (phase.weights.uses_target_labels or cfg.bn_exposure):
            raise ValueError(
                f"--da={cfg.da} needs target images in every batch, but --method="
                f"{method.name} with --bn_exposure=false feeds phase {phase.name!r} source "
                "images only; set --bn_exposure=true")
    checks = [
        ("da_weight", cfg.da_weight is None or cfg.da_weight >= 0, ">= 0"),
        ("da_schedule", cfg.da_schedule in SCHEDULES, f"one of {list(SCHEDULES)}"),
        ("da_gamma", cfg.da_gamma > 0, "> 0"),
        ("da_warmup_steps", 0 <= cfg.da_warmup_steps < cfg.steps,
         f"in [0, --steps={cfg.steps}) (after it the adversarial loss is on)"),
        ("disc_optimizer", cfg.disc_optimizer in DISC_OPTIMIZERS,
         f"one of {list(DISC_OPTIMIZERS)}"),
        ("disc_learning_rate", cfg.disc_learning_rate is None or cfg.disc_learning_rate > 0,
         "> 0"),
        ("disc_layers", cfg.disc_layers >= 1, ">= 1"),
        ("disc_filters", cfg.disc_filters >= 1, ">= 1"),
        ("disc_noise", cfg.disc_noise >= 0, ">= 0"),
        ("disc_label_noise", 0 <= cfg.disc_label_noise < 0.5, "in [0, 0.5)"),
        ("monitor_every", cfg.monitor_every >= 1, ">= 1"),
    ]
    for flag, ok, expected in checks:
        if not ok:
            raise ValueError(f"--{flag}={getattr(cfg, flag)!r}: expected {expected}")


def attach(model, cfg) -> DomainAdversarial:
    """Builds the run's discriminators and attaches them to ``model`` (a TadaModel)."""
    s = settings(cfg)
    taps = model.feature_model([lv for lv in s["levels"] if lv != OUTPUT_LEVEL]).output
    channels = {}
    for level in s["levels"]:
        tensor = (taps["outputs"][model.main_task] if level == OUTPUT_LEVEL
                  else taps["features"][level])
        channels[level] = int(tensor.shape[-1])
    adaptation = DomainAdversarial(
        method=s["method"], level_channels=channels, output_task=model.main_task,
        weight=s["weight"], schedule=s["schedule"], gamma=s["gamma"],
        warmup_steps=s["warmup_steps"], total_steps=cfg.steps,
        disc_layers=s["disc_layers"], disc_filters=s["disc_filters"],
        disc_batchnorm=s["disc_batchnorm"], disc_noise=s["disc_noise"],
        label_noise=s["disc_label_noise"], mask_outside=s["da_face_mask"],
        seed=cfg.seed, name="adaptation")
    model.attach_adaptation(adaptation)
    return adaptation


def discriminator_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate, beta_1=0.9, beta_2=0.99)
    raise ValueError(f"--disc_optimizer={name!r}: expected one of {list(DISC_OPTIMIZERS)}")


def make_optimizer(cfg, model, network: keras.optimizers.Optimizer) -> AdversarialOptimizer:
    """``network`` for the TADA network, a new discriminator optimizer for the rest."""
    s = settings(cfg)
    return AdversarialOptimizer(
        network, discriminator_optimizer(s["disc_optimizer"], s["disc_learning_rate"]),
        model.adaptation.trainable_variables)


MONITOR_CSV = "discriminator_monitor.csv"


def monitor(cfg, phase: str, first_step: int, log=print):
    """The run's ``DiscriminatorMonitor`` for one phase (CSV, TensorBoard, console)."""
    import os

    from tada_keras.adaptation.monitor import DiscriminatorMonitor

    return DiscriminatorMonitor(
        os.path.join(cfg.model_dir, MONITOR_CSV),
        log_dir=os.path.join(cfg.model_dir, "logs", "discriminator"),
        every=cfg.monitor_every, phase=phase, first_step=first_step,
        steps_per_epoch=cfg.steps_per_epoch, log=log)


def finish(model, cfg, log=print) -> dict:
    """After training: detaches the discriminators from ``model`` (the saved network is
    the TADA network alone), draws the monitor figure, returns the metrics.json entry."""
    import os

    from tada_keras.adaptation import monitor as M

    model.detach_adaptation()
    csv_path = os.path.join(cfg.model_dir, MONITOR_CSV)
    summary = dict(settings(cfg), **M.summarize(csv_path, cfg.da_warmup_steps))
    try:
        M.plot_monitor(csv_path, os.path.join(cfg.model_dir, "figures",
                                              "discriminator_monitor.png"),
                       cfg.da_warmup_steps, f"{cfg.method} + {cfg.da}")
    except Exception as err:  # a figure must never cost a finished run
        log(f"warning: discriminator figure failed: {err}")
    fraction = summary["fraction_below_55"]
    log(f"discriminator: {summary['adversarial_logged_steps']} logged steps after warm-up, "
        f"fraction with balanced accuracy < 55 %: "
        f"{'n/a' if fraction is None else f'{fraction:.2f}'}")
    return summary


def _has_valid_region(name: str) -> bool:
    from tada_keras.tasks import get_task
    from tada_keras.tasks.base import Task

    return type(get_task(name)).valid_region is not Task.valid_region


def _with_valid_region() -> list[str]:
    from tada_keras.tasks import tasks_for_role

    return [n for n in tasks_for_role("main") if _has_valid_region(n)]
