"""One training run: data checks, model, phases with checkpoint/resume, outputs.

``tada_keras.train`` (CLI) and the experiment harness call ``train_run(RunConfig)``. The
settings live in ``tada_keras.config``, evaluation and inference in
``tada_keras.inference`` (both re-exported here).
Layout of ``model_dir``::

    run.lock                     while a command trains in it: its process id and host
    config.json                  the RunConfig (evaluate/predict rebuild the model from it)
                                 + "resolved_method": phases, loss weights, steps
                                 + "datasets": name/config/version, examples per split
    phase_<name>/backup/         last epoch checkpoint (weights + optimizer) while running
    phase_<name>/final.weights.h5, phase_<name>/DONE   written atomically when it ends
    model.keras                  the final model
    metrics.json                 target_test (+ source_val, anchor metrics, timings)
    run.log                      every message of the run, timestamped (appended on resume)
    logs/train/                  TensorBoard: epoch scalars at one global step across the
                                 phases, the figures as images (logs/discriminator/: DA)
    figures/*.png                qualitative results and training curves
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re

import keras

from tada_keras import backend
from tada_keras import conventions as C
from tada_keras.atomic import atomic_path, write_json
from tada_keras.backend import set_global_determinism
from tada_keras.config import (  # noqa: F401  (re-exported: the API before the split)
    _PATH_SETTINGS,
    DTYPE_POLICIES,
    RunConfig,
    _check_numbers,
    _same_path,
    settings_diff,
    validate,
)
from tada_keras.inference import (  # noqa: F401  (re-exported)
    data_spec,
    dataset_changes,
    dataset_identity,
    eval_split,
    evaluate_model,
    load_run,
    predict_main,
    predict_padded,
)
from tada_keras.resolved_run import ResolvedRun, resolve, task_configs
from tada_keras.resolved_run import dataset_info as _dataset_info
from tada_keras.resolved_run import task_class as _task_class
from tada_keras.training import run_lock
from tada_keras.training.phases import run_method
from tada_keras.training.run_directory import RunDirectory, _read_history  # noqa: F401
from tada_keras.training.run_log import GlobalStepTensorBoard, RunLog, write_figure_images


def _optimizer(cfg, model):
    from tada_keras.training.averaging import network_optimizer

    network = network_optimizer(cfg.learning_rate, cfg.ema_momentum)
    if getattr(model, "adaptation", None) is None:
        return network
    from tada_keras.adaptation.config import make_optimizer

    return make_optimizer(cfg, model, network)  # + the discriminators' optimizer


def _jit(cfg):
    return {"auto": "auto", "true": True, "false": False}[cfg.jit_compile]


_atomic_write_json = write_json  # the name before tada_keras.atomic


def _task_features(task: str) -> set[str]:
    return set(_task_class(task)().required_features())


def check_data(cfg: RunConfig, method) -> None:
    """Every dataset, split and label feature the run will read exists (before anything is
    written). Raises ValueError naming the flag."""
    main, anchor = _task_features(cfg.main_task), _task_features(cfg.anchor_task)
    w = [p.weights for p in method.phases]
    needs = {"source": main | (anchor if any(x.uses_anchor for x in w) else set()),
             "target": set(main)}  # target test is scored on the main task
    if any(_reads_target_anchor(cfg, x) for x in w):
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
        target_train = ((anchor if any(_reads_target_anchor(cfg, x) for x in w) else set())
                        | (main if any(x.target_main > 0 for x in w) else set()))
        _check_split_labels(cfg, name, domain, info, main, target_train)
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


def _reads_target_anchor(cfg: RunConfig, weights) -> bool:
    """Whether a phase reads target anchor labels: its target anchor loss, or the
    self-training anchor-guided confidence mask (--pseudo_mask=anchor/both)."""
    return weights.target_anchor > 0 or (weights.uses_pseudo and
                                         cfg.pseudo_mask in ("anchor", "both"))


def _check_split_labels(cfg, name, domain, info, main, target_train) -> None:
    """Datasets whose splits carry different labels (``info.metadata["split_labels"]``,
    e.g. sim2real_manifest: a target train split without normals) must have the main
    task's labels on the splits that train or score it, and ``target_train`` (the labels
    the method's target losses read) on the target train split."""
    split_labels = (getattr(info, "metadata", None) or {}).get("split_labels")
    if not split_labels:
        return
    roles = {"source": {"train": main, "val": main},
             "target": {"train": target_train, "test": main}}[domain]
    for role, wanted in roles.items():
        flag = f"{domain}_{role}_split"
        split = getattr(cfg, flag)
        lacking = sorted(set(wanted) - set(split_labels.get(split, wanted)))
        if lacking:
            raise ValueError(f"--{flag}={split}: the {split} examples of {name} have no "
                             f"{', '.join(lacking)} labels, which --method={cfg.method} "
                             f"with --main={cfg.main_task} and --anchor={cfg.anchor_task} "
                             f"needs there (they have "
                             f"{', '.join(split_labels[split]) or 'no labels'})")


def build_run_model(run: RunConfig | ResolvedRun):
    """The run's network with the resolved run's configured tasks (a ``RunConfig``: its
    tasks configured from the source dataset), its layers built under
    ``--dtype_policy`` (recorded in the model's config, so ``model.keras`` reloads in it;
    the global Keras policy is left as it was)."""
    from tada_keras.training import build_model as _build_model

    if isinstance(run, ResolvedRun):
        cfg = run.config
        main_cfg, anchor_cfg = run.task_configs()
    else:
        cfg = run
        main_cfg, anchor_cfg = task_configs(cfg)
    from tada_keras.models import BackboneWeightsError

    try:
        return _build_model(main_task=cfg.main_task, anchor_task=cfg.anchor_task,
                           main_config=main_cfg, anchor_config=anchor_cfg,
                           backbone=cfg.backbone, backbone_weights=cfg.backbone_weights,
                           decoder_channels=cfg.decoder_channels,
                           freeze_after=cfg.freeze_after, dtype=cfg.dtype_policy)
    except BackboneWeightsError as err:
        message = str(err)
        raise ValueError(f"--{message}" if message.startswith("backbone_weights") else
                         f"--backbone_weights={cfg.backbone_weights}: {message}") from None


def phase_dataset(cfg, spec, phase, skip_batches=0):
    from tada_keras.data import PseudoViews, load_split, mixed_train_dataset

    w = phase.weights
    see_target = w.uses_target_images or cfg.bn_exposure
    views = (PseudoViews(cfg.pseudo_mask in ("consistency", "both"), cfg.pseudo_mask_ratio,
                         cfg.pseudo_patch_size) if w.uses_pseudo else None)
    source = load_split(cfg.source_dataset, cfg.source_train_split, cfg.data_dir,
                        shuffle=True, seed=cfg.seed, manual_dir=cfg.source_manual_dir)
    target = (load_split(cfg.target_dataset, cfg.target_train_split, cfg.data_dir,
                         shuffle=True, seed=cfg.seed, manual_dir=cfg.target_manual_dir)
              if see_target and cfg.batch_target else None)
    ds = mixed_train_dataset(source, target, spec, cfg.batch_source, cfg.batch_target,
                             use_target_main=w.target_main > 0, use_anchor=w.uses_anchor,
                             use_target_anchor=_reads_target_anchor(cfg, w), seed=cfg.seed,
                             views=views)
    return backend.shard_for_workers(ds.skip(skip_batches) if skip_batches else ds)


def train_run(cfg: RunConfig, log=print, verbose="auto") -> dict:
    """Trains (resuming where a previous run stopped), evaluates, writes outputs.

    With ``--distribution`` the model is built, compiled (every phase) and trained inside
    the data-parallel scope; non-chief workers write under ``model_dir/workers/<id>``.
    """
    validate(cfg)
    backend.set_intra_op_threads(cfg.intra_op_threads)
    warning = backend.bf16_warning(cfg.dtype_policy)
    if warning:
        log(warning)
    with backend.distribution_scope(cfg.distribution) as replicas:
        batch = cfg.batch_source + cfg.batch_target
        if batch % replicas:
            raise ValueError(f"--batch_source + --batch_target = {batch} must be divisible "
                             f"by the {replicas} replicas of --distribution="
                             f"{cfg.distribution}")
        if not backend.is_chief():
            cfg = dataclasses.replace(cfg, model_dir=os.path.join(
                cfg.model_dir, "workers", backend.worker_id()))
        return _train_run(cfg, log, verbose)


# What an OSError of a run means: errno -> (what happened, the exit code). 2: the place a
# setting names cannot be used (bad input; another place is needed); 1: the run stops and
# resumes once the cause is gone.
_OS_ERRORS = {
    errno.ENOSPC: ("no space left on the device", 1),
    errno.EDQUOT: ("disk quota exceeded", 1),
    errno.EROFS: ("a read-only file system", 2),
    errno.EACCES: ("permission denied", 2),
    errno.EPERM: ("operation not permitted", 2),
    errno.ENOTDIR: ("a part of the path is a file, not a directory", 2),
    errno.EISDIR: ("is a directory, not a file", 2),
}


def _os_error_details(err: OSError) -> tuple[int | None, str | None, str]:
    """(errno, path, reason) of an OSError; h5py's carry them in the text only
    (``errno = 28, error message = '…'`` and ``name = '…'``)."""
    text = str(err)
    number = err.errno
    if number is None:
        found = re.search(r"errno = (\d+)", text)
        number = int(found.group(1)) if found else None
    path = err.filename
    if path is None:
        found = re.search(r"\b(?:file)?name = '([^']*)'", text)
        path = found.group(1) if found else None
    reason = err.strerror or (os.strerror(number) if number else text.splitlines()[0]
                              if text else type(err).__name__)
    return number, path, reason


def _setting_of(path: str, cfg: RunConfig) -> tuple[str, str] | None:
    """(``--flag`` or environment variable, its value) of the setting ``path`` lies in."""
    home = os.path.expanduser("~")
    places = [("--model_dir", cfg.model_dir), ("--init_from", cfg.init_from),
              ("--source_manual_dir", cfg.source_manual_dir),
              ("--target_manual_dir", cfg.target_manual_dir),
              ("--data_dir", cfg.data_dir or os.path.join(home, "tensorflow_datasets")),
              ("KERAS_HOME", os.environ.get("KERAS_HOME") or os.path.join(home, ".keras"))]
    target = os.path.abspath(path)
    for name, value in places:
        if value:
            root = os.path.abspath(value)
            if target == root or target.startswith(root.rstrip(os.sep) + os.sep):
                return name, value
    return None


def os_error_line(err: OSError, cfg: RunConfig) -> tuple[str, int]:
    """The one line (without ``error: ``) and the exit code of an OSError that stopped a
    training: what happened, where, which setting names that place, and what to do."""
    number, path, reason = _os_error_details(err)
    path = path or cfg.model_dir
    what, code = _OS_ERRORS.get(number, (None, 1))
    setting = _setting_of(path, cfg)
    named = f"{setting[0]}={setting[1]}" if setting else None
    where = f"{path} ({named})" if named and os.path.abspath(path) != os.path.abspath(
        setting[1]) else (named or path)
    started = os.path.exists(os.path.join(cfg.model_dir, "config.json"))
    again = ("re-run the same command: it resumes from the last checkpoint" if started
             else "re-run the same command")
    if code == 2:
        fix = (f"use another {setting[0]}" if setting and setting[0].startswith("--")
               else f"point {setting[0]} at a folder this user can write in" if setting
               else "fix that path")
        if number in (errno.EACCES, errno.EPERM):
            fix = f"give this user access to it, or {fix}"
        return f"{where}: {what}; {fix}, then {again}", 2
    if what:  # no space: free some, the run resumes
        return f"{where}: {what}. Free some space and {again}.", 1
    return f"{where}: {reason}. If that is fixed, {again}.", 1


def _train_run(cfg: RunConfig, log=print, verbose="auto") -> dict:
    """``train_run`` inside the distribution scope (``cfg`` already validated), holding
    ``model_dir``'s lock (one training per directory: ``training/run_lock.py``)."""
    with run_lock.locked(cfg.model_dir, log=log):
        return _train_locked(cfg, log, verbose)


def _train_locked(cfg: RunConfig, log=print, verbose="auto") -> dict:
    config_path = os.path.join(cfg.model_dir, "config.json")
    if os.path.exists(config_path):
        with open(config_path) as f:
            try:
                saved = json.load(f)
            except ValueError:
                raise ValueError(f"{config_path} is not valid JSON (a damaged run directory);"
                                 " use a new --model_dir") from None
        # Settings added to RunConfig after that run started take their defaults; the
        # resolved method follows from the settings.
        saved.pop("resolved_method", None)
        saved.pop("resolved_tasks", None)
        recorded = saved.pop("datasets", None)
        previous = {**dataclasses.asdict(RunConfig()), **saved}
        diff = settings_diff(previous, dataclasses.asdict(cfg))
        if diff:
            raise ValueError(f"--model_dir={cfg.model_dir} holds a run with other settings "
                             f"({', '.join(diff)}); use a new --model_dir")
    else:
        recorded = None
    method = cfg.resolved_method()  # the phases with their share of the steps
    # Everything the run reads is checked before its directory is written.
    check_data(cfg, method)
    # The run resolved once (validated in train_run): that method, the tasks configured
    # from the source dataset; passed down from here.
    run = resolve(cfg, validated=True, method=method)
    identity = dataset_identity(cfg)
    changes = dataset_changes(recorded or {}, identity)
    if changes:  # resuming on other data would mix two datasets in one run
        raise ValueError(f"--model_dir={cfg.model_dir} was trained on other data: "
                         f"{'; '.join(changes)}; use a new --model_dir")
    set_global_determinism(cfg.seed, cfg.deterministic)
    model = build_run_model(run)
    if cfg.init_from:
        try:
            model.load_weights(cfg.init_from)
        except Exception as err:
            raise ValueError(f"--init_from={cfg.init_from}: cannot load it into this network "
                             f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                             "expected the final.weights.h5 of a run with the same "
                             "--backbone, --decoder_channels, --anchor and dataset") from None
    from tada_keras.training.fingerprint import weights_digest

    initial_weights = weights_digest(model)  # after build and --init_from, before step 1
    os.makedirs(cfg.model_dir, exist_ok=True)
    with RunLog(cfg.model_dir, log) as run_log:
        run_log.file(f"run {cfg.method} in {os.path.abspath(cfg.model_dir)}; settings: "
                     f"{json.dumps(dataclasses.asdict(cfg), sort_keys=True)}")
        try:
            return _train_logged(run, model, config_path, run_log, verbose,
                                 initial_weights, identity)
        except Exception as err:
            run_log.file(f"error: {type(err).__name__}: {err}")
            raise
        except KeyboardInterrupt:
            run_log.file("interrupted (KeyboardInterrupt); the same command resumes")
            raise


def write_fingerprints(cfg, method, spec, model_dir, initial_weights) -> None:
    """``model_dir/fingerprints.json`` (once, before the first step): the initial weights'
    and the first training batches' digests, the datasets' identity, the software and the
    machine (``training/fingerprint.py``); the harness copies it into the run record."""
    from tada_keras.training import fingerprint as F
    from tada_keras.training.fingerprint import commit, machine

    path = os.path.join(model_dir, "fingerprints.json")
    first = next(p for p in method.phases if method.steps[p.name])
    # Drawn on every invocation, resumed ones too, so that a fresh and a resumed run
    # build the same pipelines in the same order.
    x, y = next(iter(phase_dataset(cfg, spec, first)))
    if os.path.exists(path):
        return
    write_json(path, {
        "initial_weights": initial_weights,
        "first_batch": F.batch_digest(keras.ops.convert_to_numpy(x),
                                      {k: keras.ops.convert_to_numpy(v) for k, v in y.items()}),
        "first_phase": first.name,
        "datasets": {domain: F.dataset_identity(_dataset_info(
            getattr(cfg, f"{domain}_dataset"), cfg.data_dir,
            getattr(cfg, f"{domain}_manual_dir"), f"{domain}_dataset"))
            for domain in ("source", "target")},
        "deterministic": cfg.deterministic, "backend": backend.backend_name(),
        "libraries": F.library_versions(), "machine": machine(), "commit": commit(),
        "resumes": []})


def _note_resumes(model_dir, resumed: list) -> None:
    """Appends this invocation's resumed phases (and epochs) to fingerprints.json."""
    path = os.path.join(model_dir, "fingerprints.json")
    if not resumed or not os.path.exists(path):
        return
    with open(path) as f:
        state = json.load(f)
    state["resumes"] = state.get("resumes", []) + [resumed]
    write_json(path, state)


def _train_logged(run: ResolvedRun, model, config_path, log, verbose, initial_weights,
                  identity=None) -> dict:
    """``_train_run`` once ``model_dir`` exists, with ``log`` teeing into its run.log;
    ``identity``: the datasets' (``inference.dataset_identity``), kept in config.json."""
    cfg, method = run.config, run.method
    if not os.path.exists(config_path):
        _atomic_write_json(config_path, {**dataclasses.asdict(cfg), **run.as_dict(),
                                         **({"datasets": identity} if identity else {})})
    spec = run.data
    write_fingerprints(cfg, method, spec, cfg.model_dir, initial_weights)
    if cfg.da != "none":  # discriminators become part of the weights and checkpoints
        from tada_keras.adaptation import config as da_config

        da_config.attach(model, cfg)
    model.self_training = cfg.self_training()  # the teacher of pseudo phases
    steps = method.steps
    from tada_keras.inference import checkpoint_scorer, target_test_scorer
    from tada_keras.training.selection import CurveFile, criterion

    scoring = cfg.score_epochs or cfg.select != "last"
    last_phase = [p for p in method.phases if steps[p.name]][-1].name
    store = RunDirectory(cfg.model_dir, hint=(
        f"Lower --learning_rate (now {cfg.learning_rate:g}) and use a new --model_dir."),
        log=log, scorer=checkpoint_scorer(cfg, spec, model) if scoring else None,
        criterion=criterion(cfg.select, model.main, model.anchor), last_phase=last_phase)
    curve = target_test_scorer(cfg, spec) if cfg.target_test_curve else None

    def callbacks(phase):
        index = method.phases.index(phase)
        first = sum(steps[p.name] for p in method.phases[:index])
        epochs = -(-steps[phase.name] // cfg.steps_per_epoch)
        phase_callbacks = [
            GlobalStepTensorBoard(os.path.join(cfg.model_dir, "logs", "train"), first,
                                  steps[phase.name], cfg.steps_per_epoch, index + 1),
            log.epoch_callback(phase.name, epochs),
            keras.callbacks.CSVLogger(os.path.join(store.phase_dir(phase), "history.csv"),
                                      append=True)]
        if cfg.da != "none":
            phase_callbacks.append(da_config.monitor(cfg, phase.name, first, log))
        if curve is not None:
            phase_callbacks.append(CurveFile(curve, os.path.join(
                store.phase_dir(phase), "target_test_curve.csv")))
        return phase_callbacks

    histories = run_method(
        model, method, datasets=lambda phase, skip_batches=0: phase_dataset(
            cfg, spec, phase, skip_batches),
        steps=lambda phase: phase.steps, optimizer=lambda phase: _optimizer(cfg, model),
        callbacks=callbacks, balance=cfg.balance_losses, jit_compile=_jit(cfg),
        verbose=verbose, steps_per_epoch=cfg.steps_per_epoch, store=store, log=log)
    timings = store.timings
    _note_resumes(cfg.model_dir, store.resumed)

    last = next(p for p in method.phases if p.name == last_phase)
    raw_path = store.raw_weights_path(last)
    raw_results = None
    if cfg.ema_momentum and os.path.exists(raw_path):
        # The same run without averaging (averaging never changes the raw trajectory);
        # evaluated while the model still holds every variable the weights files hold.
        final = os.path.join(store.phase_dir(last), "final.weights.h5")
        log("evaluating the raw (not averaged) weights of the last step")
        model.load_weights(raw_path)
        raw_results = evaluate_model(model, cfg, spec, log=log)
        model.load_weights(final)
    teacher = getattr(model, "teacher", None)
    if teacher is not None:
        if cfg.evaluate_teacher:
            log("evaluating the EMA teacher")
            results_teacher = evaluate_model(teacher.network, cfg, spec, log=log)
        model.detach_teacher()  # the evaluated and exported network is the student
    results = evaluate_model(model, cfg, spec, log=log)
    results["selection"] = {"rule": cfg.select, "phase": last_phase,
                            "selected": store.selected(last)}
    if raw_results is not None:
        results["raw_weights"] = raw_results
    if teacher is not None and cfg.evaluate_teacher:
        results["teacher"] = results_teacher
    results["timings_s"] = timings
    results["method"] = method.name
    results["main_task"] = cfg.main_task
    if cfg.da != "none":
        results["discriminator"] = da_config.finish(model, cfg, log)
        model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), jit_compile=_jit(cfg))
    with atomic_path(os.path.join(cfg.model_dir, "model.keras"), ".keras") as tmp:
        model.save(tmp)
    try:
        from tada_keras import viz

        figures = os.path.join(cfg.model_dir, "figures")
        viz.write_run_figures(model, cfg, spec, histories, figures)
        write_figure_images(os.path.join(cfg.model_dir, "logs", "train"),
                            sorted(os.path.join(figures, n) for n in os.listdir(figures)
                                   if n.endswith(".png")), sum(steps.values()))
    except Exception as err:
        log(f"warning: figures failed: {err}")
    _atomic_write_json(os.path.join(cfg.model_dir, "metrics.json"), results)
    return results
