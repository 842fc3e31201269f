"""A run's settings resolved once (issue 31): the method, the configured tasks, the data.

``resolve(cfg)`` validates a ``RunConfig`` and turns its names into objects, once per
run: the ``Method`` with its phases, loss weights and share of the steps; the main and
anchor ``Task`` instances configured from the source dataset's TFDS info (e.g. the
segmentation anchor's ``num_classes``); the ``DataSpec`` the pipeline reads with those
tasks. The runner passes it down (model, pipeline, evaluation) and writes it into
``config.json`` (``resolved_method``, ``resolved_tasks``); ``ResolvedRun.from_saved``
reads it back from there without re-deriving anything from names.
"""

from __future__ import annotations

import dataclasses

from tada_keras.config import RunConfig, validate
from tada_keras.methods import Method


@dataclasses.dataclass(frozen=True)
class ResolvedRun:
    """``config``: the settings; ``method``: its phases with their step shares; ``main`` /
    ``anchor``: the configured tasks (``anchor`` None without an anchor)."""

    config: RunConfig
    method: Method
    main: object
    anchor: object | None

    @property
    def data(self):
        """The ``DataSpec`` of the run's pipeline: its configured tasks and image sizes."""
        from tada_keras.data import DataSpec

        cfg = self.config
        return DataSpec(main_task=self.main, anchor_task=self.anchor,
                        crop_size=cfg.crop_size, image_size=cfg.image_size,
                        augment=cfg.augment)

    def task_configs(self) -> tuple[dict, dict]:
        """The tasks' constructor arguments (``build_model``'s ``main_config`` /
        ``anchor_config``)."""
        return (dict(self.main.config),
                dict(self.anchor.config) if self.anchor is not None else {})

    def as_dict(self) -> dict:
        """What ``config.json`` records beside the settings."""
        return {"resolved_method": self.method.as_dict(),
                "resolved_tasks": {role: {"name": task.name, "config": dict(task.config)}
                                   for role, task in (("main", self.main),
                                                      ("anchor", self.anchor))
                                   if task is not None}}

    @classmethod
    def from_saved(cls, saved: dict) -> ResolvedRun:
        """The resolved run of a ``config.json`` dict. Runs written before
        ``resolved_tasks`` existed get their tasks' default configs (their settings
        cannot say more without the dataset)."""
        from tada_keras.config import method_of_config
        from tada_keras.tasks import get_task

        known = {f.name for f in dataclasses.fields(RunConfig)}
        cfg = RunConfig(**{k: v for k, v in saved.items() if k in known})
        recorded = saved.get("resolved_tasks") or {
            role: {"name": name, "config": {}}
            for role, name in (("main", cfg.main_task), ("anchor", cfg.anchor_task)) if name}
        tasks = {role: get_task(t["name"], **t["config"]) for role, t in recorded.items()}
        return cls(cfg, method_of_config(saved), tasks["main"], tasks.get("anchor"))


def dataset_info(name, data_dir, manual_dir=None, flag="source_dataset"):
    """The dataset's TFDS info (prepared if needed); a bad name is a ValueError naming
    ``--<flag>``."""
    from tada_keras.data import prepare_builder

    try:
        return prepare_builder(name, data_dir, manual_dir).info
    except Exception as err:  # tfds: DatasetNotFoundError, ValueError (config), manual dir
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"--{flag}={name}: {first}") from None


def task_class(task: str):
    """The registered ``Task`` class of ``task`` (a name ``validate`` accepted)."""
    from tada_keras.tasks import _REGISTRY, available_tasks

    available_tasks()
    return _REGISTRY[task]


def task_configs(cfg: RunConfig) -> tuple[dict, dict]:
    """The tasks' constructor arguments, read from the source dataset's TFDS info."""
    info = dataset_info(cfg.source_dataset, cfg.data_dir, cfg.source_manual_dir)
    return (task_class(cfg.main_task).config_from_info(info),
            task_class(cfg.anchor_task).config_from_info(info) if cfg.anchor_task else {})


def resolve(cfg: RunConfig, validated: bool = False, method: Method | None = None,
            configs: tuple[dict, dict] | None = None) -> ResolvedRun:
    """``cfg`` resolved once: validated (unless ``validated``), its method with the step
    shares (``method``: that of ``cfg.resolved_method()`` when the caller has it), its
    tasks configured from the source dataset's info (``configs``: the tasks' constructor
    arguments when the caller has them)."""
    from tada_keras.tasks import get_task

    if not validated:
        validate(cfg)
    main_config, anchor_config = configs if configs is not None else task_configs(cfg)
    anchor = get_task(cfg.anchor_task, **anchor_config) if cfg.anchor_task else None
    return ResolvedRun(cfg, method or cfg.resolved_method(),
                       get_task(cfg.main_task, **main_config), anchor)
