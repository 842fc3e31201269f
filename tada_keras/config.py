"""The settings of one run: ``RunConfig`` (from which the absl flags are generated,
``tada_keras/flags.py``), its validation and the comparison of two runs' settings.

Nothing here trains or reads data: ``validate`` checks what the flags alone can refute;
``run.check_data`` checks what only the datasets can.
"""

from __future__ import annotations

import dataclasses
import os

from tada_keras.methods import METHOD_NAMES, get_method
from tada_keras.training import backend

# Layer policies of --dtype_policy. mixed_float16 (GPU) would need loss scaling around the
# DA optimizer and is not offered until it is tested.
DTYPE_POLICIES = ("float32", "mixed_bfloat16")


@dataclasses.dataclass
class RunConfig:
    model_dir: str = ""
    method: str = "headfreeze"
    main_task: str = "normals"
    anchor_task: str = "segmentation"
    source_dataset: str = "sim2real_rooms/default"
    source_train_split: str = "source_train"
    source_val_split: str = "source_val"
    target_dataset: str = "sim2real_rooms/default"
    target_train_split: str = "target_train"
    target_val_split: str = "target_val"
    target_test_split: str = "target_test"
    data_dir: str | None = None
    source_manual_dir: str | None = None
    target_manual_dir: str | None = None
    backbone: str = "resnet18"
    backbone_weights: str | None = None
    decoder_channels: int = 128
    freeze_after: str = "up-2"
    image_size: int | None = None
    crop_size: int | None = None
    eval_input_size: int | None = None
    eval_scale: float | None = None
    batch_source: int = 8
    batch_target: int = 8
    steps: int = 1000
    phase1_fraction: float = 0.5
    phase1_steps: int | None = None
    steps_per_epoch: int = 100
    learning_rate: float = 1e-3
    anchor_weight: float = 1.0
    balance_losses: bool = False
    bn_exposure: bool = True
    init_from: str | None = None
    seed: int = 0
    deterministic: bool = False
    jit_compile: str = "auto"
    dtype_policy: str = "float32"
    distribution: str = "none"  # data parallelism (tada_keras.training.backend)
    eval_batch_size: int = 8
    num_figures: int = 4
    # Unsupervised domain adaptation (tada_keras.adaptation; docs/domain_adaptation.md).
    da: str = "none"
    da_levels: str = "auto"
    da_weight: float | None = None
    da_schedule: str = "constant"
    da_gamma: float = 10.0
    da_warmup_steps: int = 0
    da_face_mask: bool = False
    disc_optimizer: str = "sgd"
    disc_learning_rate: float | None = None
    disc_layers: int = 5
    disc_filters: int = 64
    disc_batchnorm: bool = False
    disc_noise: float = 0.0
    disc_label_noise: float = 0.0
    monitor_every: int = 10

    def resolved_method(self):
        """The method of this run, resolved once: its phases with their loss weights
        (λ = ``anchor_weight``) and their share of ``steps`` (``phase_steps``). Written
        into ``config.json`` as ``resolved_method``; the harness, reports and figures read
        it from there (``tada_keras.methods.method_of_config``)."""
        method = get_method(self.method, self.anchor_weight)
        return method.with_steps(self.phase_steps(method))

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
    if os.path.exists(cfg.model_dir) and not os.path.isdir(cfg.model_dir):
        raise ValueError(f"--model_dir={cfg.model_dir} is a file, not a directory")
    ancestor = os.path.abspath(cfg.model_dir)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.access(ancestor, os.W_OK):
        raise ValueError(f"--model_dir={cfg.model_dir}: {ancestor} is not writable")
    if cfg.method not in METHOD_NAMES:
        raise ValueError(f"--method={cfg.method!r}: expected one of {list(METHOD_NAMES)}")
    mains = tasks_for_role("main")
    if cfg.main_task not in mains:
        raise ValueError(f"--main={cfg.main_task!r}: expected one of {mains}")
    anchors = [t for t in tasks_for_role("anchor") if t != cfg.main_task]
    if cfg.anchor_task not in anchors:
        raise ValueError(f"--anchor={cfg.anchor_task!r}: expected one of {anchors}")
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
    method = get_method(cfg.method, cfg.anchor_weight)
    needs_target = any(p.weights.uses_target_labels for p in method.phases)
    if needs_target and cfg.batch_target == 0:
        raise ValueError(f"--batch_target=0 conflicts with --method={cfg.method}, which "
                         "trains on target anchor labels")
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
