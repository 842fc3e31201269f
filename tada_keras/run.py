"""One training run: data, model, phases with checkpoint/resume, evaluation, outputs.

``tada_keras.train`` (CLI) and the experiment harness call ``train_run(RunConfig)``.
Layout of ``model_dir``::

    config.json                  the RunConfig (evaluate/predict rebuild the model from it)
    phase_<name>/backup/         last epoch checkpoint (weights + optimizer) while running
    phase_<name>/final.weights.h5, phase_<name>/DONE   written atomically when it ends
    model.keras                  the final model
    metrics.json                 target_test (+ source_val, anchor metrics, timings)
    logs/                        TensorBoard
    figures/*.png                qualitative results and training curves
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
import warnings

import keras
import numpy as np

from tada_keras import conventions as C
from tada_keras import metrics as M
from tada_keras.methods import METHOD_NAMES, LossWeights, get_method
from tada_keras.training import distribute
from tada_keras.training.backend import set_global_determinism
from tada_keras.training.callbacks import ResumableCheckpoint, StopOnNonFinite
from tada_keras.training.phases import balance_loss_weights, configure_phase

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
    distribution: str = "none"  # data parallelism (tada_keras.training.distribute)
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
    distribute.validate_distribution(cfg.distribution)
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


def _optimizer(cfg, model):
    network = keras.optimizers.Adam(cfg.learning_rate)
    if getattr(model, "adaptation", None) is None:
        return network
    from tada_keras.adaptation.config import make_optimizer

    return make_optimizer(cfg, model, network)  # + the discriminators' optimizer


def _jit(cfg):
    return {"auto": "auto", "true": True, "false": False}[cfg.jit_compile]


def _atomic_write_json(path, data):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _dataset_info(name, data_dir, manual_dir=None, flag="source_dataset"):
    """The dataset's TFDS info (prepared if needed); a bad name is a ValueError naming
    ``--<flag>``."""
    from tada_keras.data import prepare_builder

    try:
        return prepare_builder(name, data_dir, manual_dir).info
    except Exception as err:  # tfds: DatasetNotFoundError, ValueError (config), manual dir
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"--{flag}={name}: {first}") from None


def _task_class(task: str):
    from tada_keras.tasks import _REGISTRY, available_tasks

    available_tasks()
    return _REGISTRY[task]


def _task_features(task: str) -> set[str]:
    return set(_task_class(task)().required_features())


def check_data(cfg: RunConfig, method) -> None:
    """Every dataset, split and label feature the run will read exists (before anything is
    written). Raises ValueError naming the flag."""
    main, anchor = _task_features(cfg.main_task), _task_features(cfg.anchor_task)
    w = [p.weights for p in method.phases]
    needs = {"source": main | (anchor if any(x.uses_anchor for x in w) else set()),
             "target": set(main)}  # target test is scored on the main task
    if any(x.target_anchor > 0 for x in w):
        needs["target"] |= anchor
    sizes = {}
    for domain in ("source", "target"):
        name = getattr(cfg, f"{domain}_dataset")
        info = _dataset_info(name, cfg.data_dir, getattr(cfg, f"{domain}_manual_dir"),
                             f"{domain}_dataset")
        roles = ("train", "val") + (("test",) if domain == "target" else ())
        for role in roles:
            split = getattr(cfg, f"{domain}_{role}_split")
            if split not in info.splits:
                raise ValueError(f"--{domain}_{role}_split={split}: {name} has no such split; "
                                 f"it has {sorted(info.splits)}")
        sizes[domain] = tuple(info.features[C.IMAGE].shape[:2])
        missing = sorted(needs[domain] - set(info.features))
        if missing:
            raise ValueError(f"--{domain}_dataset={name} has no {', '.join(missing)} labels, "
                             f"which --method={cfg.method} with --main={cfg.main_task} "
                             f"and --anchor={cfg.anchor_task} needs (it has "
                             f"{sorted(info.features)})")
    known = {d: hw for d, hw in sizes.items() if None not in hw}
    if cfg.crop_size and not cfg.image_size:
        for domain, hw in known.items():
            if cfg.crop_size > min(hw):
                raise ValueError(f"--crop_size={cfg.crop_size} is larger than the "
                                 f"{hw[0]}x{hw[1]} images of --{domain}_dataset; use a "
                                 "smaller crop or --image_size")
    if cfg.image_size and cfg.crop_size and cfg.crop_size > cfg.image_size:
        raise ValueError(f"--crop_size={cfg.crop_size} is larger than --image_size="
                         f"{cfg.image_size}")
    if len(known) == 2 and len(set(known.values())) == 2 and not (cfg.image_size or
                                                                 cfg.crop_size):
        raise ValueError(f"source images are {known['source'][0]}x{known['source'][1]} and "
                         f"target images {known['target'][0]}x{known['target'][1]}: one batch "
                         "mixes both, so give --image_size (or --crop_size)")


def task_configs(cfg: RunConfig) -> tuple[dict, dict]:
    """The tasks' constructor arguments, read from the source dataset's TFDS info."""
    info = _dataset_info(cfg.source_dataset, cfg.data_dir, cfg.source_manual_dir)
    return (_task_class(cfg.main_task).config_from_info(info),
            _task_class(cfg.anchor_task).config_from_info(info))


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


def build_run_model(cfg: RunConfig):
    """The run's network, its layers built under ``--dtype_policy`` (the global Keras
    policy is restored afterwards, so nothing else in the process changes)."""
    from tada_keras.training import build_model as _build_model

    main_cfg, anchor_cfg = task_configs(cfg)
    from tada_keras.models import BackboneWeightsError

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(cfg.dtype_policy)
    try:
        return _build_model(main_task=cfg.main_task, anchor_task=cfg.anchor_task,
                           main_config=main_cfg, anchor_config=anchor_cfg,
                           backbone=cfg.backbone, backbone_weights=cfg.backbone_weights,
                           decoder_channels=cfg.decoder_channels,
                           freeze_after=cfg.freeze_after)
    except BackboneWeightsError as err:
        message = str(err)
        raise ValueError(f"--{message}" if message.startswith("backbone_weights") else
                         f"--backbone_weights={cfg.backbone_weights}: {message}") from None
    finally:
        keras.config.set_dtype_policy(previous)


def data_spec(cfg: RunConfig, model):
    from tada_keras.data import DataSpec

    del model  # the tasks read their labels themselves (Task.read_dense / make_labels)
    return DataSpec(main_task=cfg.main_task, anchor_task=cfg.anchor_task,
                    crop_size=cfg.crop_size, image_size=cfg.image_size)


def phase_dataset(cfg, spec, phase, skip_batches=0):
    from tada_keras.data import load_split, mixed_train_dataset

    w = phase.weights
    see_target = w.uses_target_labels or cfg.bn_exposure
    source = load_split(cfg.source_dataset, cfg.source_train_split, cfg.data_dir,
                        shuffle=True, seed=cfg.seed, manual_dir=cfg.source_manual_dir)
    target = (load_split(cfg.target_dataset, cfg.target_train_split, cfg.data_dir,
                         shuffle=True, seed=cfg.seed, manual_dir=cfg.target_manual_dir)
              if see_target and cfg.batch_target else None)
    ds = mixed_train_dataset(source, target, spec, cfg.batch_source, cfg.batch_target,
                             use_target_main=w.target_main > 0, use_anchor=w.uses_anchor,
                             use_target_anchor=w.target_anchor > 0, seed=cfg.seed)
    return distribute.shard_for_workers(ds.skip(skip_batches) if skip_batches else ds)


def train_run(cfg: RunConfig, log=print, verbose="auto") -> dict:
    """Trains (resuming where a previous run stopped), evaluates, writes outputs.

    With ``--distribution`` the model is built, compiled (every phase) and trained inside
    the data-parallel scope; non-chief workers write under ``model_dir/workers/<id>``.
    """
    validate(cfg)
    with distribute.distribution_scope(cfg.distribution) as replicas:
        batch = cfg.batch_source + cfg.batch_target
        if batch % replicas:
            raise ValueError(f"--batch_source + --batch_target = {batch} must be divisible "
                             f"by the {replicas} replicas of --distribution="
                             f"{cfg.distribution}")
        if not distribute.is_chief():
            cfg = dataclasses.replace(cfg, model_dir=os.path.join(
                cfg.model_dir, "workers", distribute.worker_id()))
        return _train_run(cfg, log, verbose)


def _train_run(cfg: RunConfig, log=print, verbose="auto") -> dict:
    """``train_run`` inside the distribution scope (``cfg`` already validated)."""
    config_path = os.path.join(cfg.model_dir, "config.json")
    if os.path.exists(config_path):
        with open(config_path) as f:
            try:
                saved = json.load(f)
            except ValueError:
                raise ValueError(f"{config_path} is not valid JSON (a damaged run directory);"
                                 " use a new --model_dir") from None
        # Settings added to RunConfig after that run started take their defaults.
        previous = {**dataclasses.asdict(RunConfig()), **saved}
        diff = settings_diff(previous, dataclasses.asdict(cfg))
        if diff:
            raise ValueError(f"--model_dir={cfg.model_dir} holds a run with other settings "
                             f"({', '.join(diff)}); use a new --model_dir")
    method = get_method(cfg.method, cfg.anchor_weight)
    # Everything the run reads is checked before its directory is written.
    check_data(cfg, method)
    set_global_determinism(cfg.seed, cfg.deterministic)
    model = build_run_model(cfg)
    if cfg.init_from:
        try:
            model.load_weights(cfg.init_from)
        except Exception as err:
            raise ValueError(f"--init_from={cfg.init_from}: cannot load it into this network "
                             f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                             "expected the final.weights.h5 of a run with the same "
                             "--backbone, --decoder_channels, --anchor and dataset") from None
    os.makedirs(cfg.model_dir, exist_ok=True)
    if not os.path.exists(config_path):
        _atomic_write_json(config_path, dataclasses.asdict(cfg))
    if cfg.da != "none":  # discriminators become part of the weights and checkpoints
        from tada_keras.adaptation import config as da_config

        da_config.attach(model, cfg)
    spec = data_spec(cfg, model)
    steps = cfg.phase_steps(method)
    timings = {}
    histories = {}
    for phase in method.phases:
        phase_dir = os.path.join(cfg.model_dir, f"phase_{phase.name}")
        done = os.path.join(phase_dir, "DONE")
        final = os.path.join(phase_dir, "final.weights.h5")
        if steps[phase.name] == 0:
            log(f"[{phase.name}] skipped (0 steps; starting from --init_from)")
            continue
        if os.path.exists(done):
            log(f"[{phase.name}] already complete, loading {final}")
            model.head.trainable = phase.head_trainable
            model.load_weights(final)
            with open(done) as f:
                histories[phase.name] = json.load(f).get("history", {})
            continue
        os.makedirs(phase_dir, exist_ok=True)
        checkpoint = ResumableCheckpoint(os.path.join(phase_dir, "backup"))
        state = checkpoint.latest()
        start_epoch = state["epoch"] if state else 0
        dataset = phase_dataset(cfg, spec, phase, start_epoch * cfg.steps_per_epoch)
        weights = phase.weights
        if cfg.balance_losses:  # measured once per phase, reused when resuming
            weights_path = os.path.join(phase_dir, "loss_weights.json")
            if os.path.exists(weights_path):
                with open(weights_path) as f:
                    weights = LossWeights(**json.load(f))
            else:
                x, y = next(iter(phase_dataset(cfg, spec, phase)))
                weights = balance_loss_weights(model, x, y, phase.weights)
                _atomic_write_json(weights_path, weights.as_dict())
        configure_phase(model, phase, _optimizer(cfg, model), weights, _jit(cfg))
        epochs = steps[phase.name] // cfg.steps_per_epoch
        start_epoch = checkpoint.restore(model)
        log(f"[{phase.name}] method={method.name} head_trainable={phase.head_trainable} "
            f"weights={ {k: round(v, 4) for k, v in weights.as_dict().items() if v} } "
            f"steps={steps[phase.name]} (resuming at epoch {start_epoch}/{epochs})"
            if start_epoch else
            f"[{phase.name}] method={method.name} head_trainable={phase.head_trainable} "
            f"weights={ {k: round(v, 4) for k, v in weights.as_dict().items() if v} } "
            f"steps={steps[phase.name]}")
        callbacks = [
            StopOnNonFinite(phase.name, hint=(
                f"Lower --learning_rate (now {cfg.learning_rate:g}) and use a new "
                "--model_dir.")),
            checkpoint,
            keras.callbacks.TensorBoard(os.path.join(cfg.model_dir, "logs", phase.name)),
            keras.callbacks.CSVLogger(os.path.join(phase_dir, "history.csv"), append=True),
        ]
        if cfg.da != "none":
            first = sum(steps[p.name] for p in method.phases[:method.phases.index(phase)])
            callbacks.append(da_config.monitor(cfg, phase.name, first, log))
        t0 = time.time()
        with distribute.synchronized_batchnorm(model), warnings.catch_warnings():
            if not weights.uses_anchor:
                # The anchor's output layer exists but no loss of this phase reaches it:
                # Keras's "Gradients do not exist for variables ['segmentation/...']" is
                # expected here, not a user error.
                warnings.filterwarnings("ignore", message="Gradients do not exist for "
                                        "variables", category=UserWarning)
            history = model.fit(dataset, epochs=epochs, steps_per_epoch=cfg.steps_per_epoch,
                                callbacks=callbacks, verbose=verbose,
                                shuffle=False, initial_epoch=start_epoch)
        timings[phase.name] = time.time() - t0
        tmp = final + ".tmp.weights.h5"
        model.save_weights(tmp)
        os.replace(tmp, final)
        histories[phase.name] = {k: [float(v) for v in vs] for k, vs in
                                 _read_history(phase_dir, history).items()}
        _atomic_write_json(done, {"history": histories[phase.name],
                                  "seconds": timings[phase.name],
                                  "optimizer_steps": int(keras.ops.convert_to_numpy(
                                      model.optimizer.iterations))})
        shutil.rmtree(checkpoint.directory, ignore_errors=True)

    results = evaluate_model(model, cfg, spec, log=log)
    results["timings_s"] = timings
    results["method"] = method.name
    results["main_task"] = cfg.main_task
    if cfg.da != "none":
        results["discriminator"] = da_config.finish(model, cfg, log)
        model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), jit_compile=_jit(cfg))
    tmp = os.path.join(cfg.model_dir, "model.tmp.keras")
    model.save(tmp)
    os.replace(tmp, os.path.join(cfg.model_dir, "model.keras"))
    try:
        from tada_keras import viz

        viz.write_run_figures(model, cfg, spec, histories,
                              os.path.join(cfg.model_dir, "figures"))
    except Exception as err:
        log(f"warning: figures failed: {err}")
    _atomic_write_json(os.path.join(cfg.model_dir, "metrics.json"), results)
    return results


def _read_history(phase_dir, history):
    import csv

    path = os.path.join(phase_dir, "history.csv")
    if os.path.exists(path):
        with open(path) as f:
            rows = list(csv.DictReader(f))
        if rows:
            return {k: [_float(r[k]) for r in rows] for k in rows[0] if k != "epoch"}
    return history.history


def _float(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def predict_main(model, images, size=None):
    """The main task's prediction of a batch of images of any size (its ``postprocess``:
    unit normals, depth in metres), at 1/2 input size or resized to ``size`` = (H, W)."""
    return model.main.postprocess(predict_padded(model, images), size)


def predict_normals(model, images):
    """Unit normals (B, h, w, 3) at 1/2 input size (``predict_main`` of a normals model)."""
    if model.main.name != "normals":
        raise ValueError(f"this run's main task is {model.main.name!r}, not normals")
    return predict_main(model, images)


def predict_padded(model, images):
    """Predicts on images of any size: zero-pads to a multiple of 32, crops the outputs."""
    images = np.asarray(images, np.float32)
    h, w = images.shape[1:3]
    ph, pw = -h % 32, -w % 32
    if ph or pw:
        images = np.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)))
    out = model.predict(images, verbose=0)
    oh, ow = (h + 1) // 2, (w + 1) // 2
    return {k: (np.asarray(v)[:, :oh, :ow] if np.ndim(v) == 4 else np.asarray(v))
            for k, v in out.items()}


def eval_split(cfg: RunConfig, which: str):
    """(dataset name, split, manual_dir, domain) of 'target_test', 'source_val', ..."""
    domain, role = which.split("_")
    name = cfg.target_dataset if domain == "target" else cfg.source_dataset
    manual = cfg.target_manual_dir if domain == "target" else cfg.source_manual_dir
    split = getattr(cfg, f"{domain}_{role}_split")
    return name, split, manual, (C.DOMAIN_TARGET if domain == "target" else C.DOMAIN_SOURCE)


def evaluate_model(model, cfg: RunConfig, spec, log=print) -> dict:
    """Pooled main-task stats on target test and source val (+ anchor mIoU), computed at
    the ground truth's original resolution."""
    from tada_keras.data import eval_dataset, load_split

    results = {}
    for key in ("target_test", "source_val"):
        name, split, manual, domain = eval_split(cfg, key)
        ds = eval_dataset(load_split(name, split, cfg.data_dir, manual_dir=manual), spec,
                          domain, cfg.eval_batch_size, cfg.eval_input_size, cfg.eval_scale)
        main, anchor = model.main.evaluator(), (model.anchor.evaluator()
                                                 if model.anchor is not None else None)
        for images, labels in ds.as_numpy_iterator():
            out = predict_padded(model, images)
            main.update(out, labels)
            if anchor is not None:
                anchor.update(out, labels)
        results[key] = main.result()
        if results[key].get(M.NONFINITE_KEY, 0) > 0:
            log(f"warning: {key}: {100 * results[key][M.NONFINITE_KEY]:.2f} % of the valid "
                f"pixels have non-finite predictions; each counts as the worst error")
        for name, value in (anchor.result() if anchor is not None else {}).items():
            results[f"{key}_anchor_{name}"] = value
        log(f"{key}: " + " ".join(f"{k}={v:.4f}" for k, v in results[key].items()))
    return results


def load_run(model_dir):
    """Returns (RunConfig, model) of a finished run."""
    import keras

    config_path = os.path.join(model_dir or "", "config.json")
    model_path = os.path.join(model_dir or "", "model.keras")
    for path in (config_path, model_path):
        if not os.path.isfile(path):
            raise ValueError(f"--model_dir={model_dir}: {os.path.basename(path)} not found "
                             "(is the training run finished?)")
    known = {f.name for f in dataclasses.fields(RunConfig)}
    try:
        with open(config_path) as f:
            saved = json.load(f)
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
        # Settings of later versions are ignored; missing ones take their defaults.
        cfg = RunConfig(**{k: v for k, v in saved.items() if k in known})
    except ValueError as err:
        raise ValueError(f"{config_path} is damaged ({err}); it is written by "
                         "tada_keras.train, re-run that command to restore it") from None
    import tada_keras  # noqa: F401  (registers the serialisable classes)

    try:
        # compile=False: inference needs no optimizer (loading its slots into an unbuilt
        # one only warns about "skipped" variables).
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as err:
        raise ValueError(f"{model_path} cannot be loaded ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:200] if str(err) else ''}); it is written "
                         "at the end of tada_keras.train: delete it and re-run that "
                         "command") from None
    return cfg, model
