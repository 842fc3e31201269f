"""Task registry: one module per task; a new task (main or anchor) is one new file here.

Every module here is imported on first use and registers its tasks with ``@register``.
"""

from __future__ import annotations

import importlib
import pkgutil

from tada_keras.tasks.base import Task

_REGISTRY: dict[str, type[Task]] = {}
_DISCOVERED = False


def register(cls: type[Task]) -> type[Task]:
    """Class decorator that makes a task available by its ``name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"Task name {cls.name!r} is registered twice.")
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    _DISCOVERED = True


def available_tasks() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def tasks_for_role(role: str) -> list[str]:
    """The registered tasks that can be the ``"main"`` or the ``"anchor"`` task."""
    _discover()
    return [n for n in sorted(_REGISTRY) if role in _REGISTRY[n].roles]


def get_task(name: str, **kwargs) -> Task:
    """Instantiates the task registered as ``name``."""
    _discover()
    if name not in _REGISTRY:
        raise ValueError(f"Unknown task {name!r}; expected one of {available_tasks()}.")
    return _REGISTRY[name](**kwargs)


__all__ = ["Task", "available_tasks", "get_task", "register", "tasks_for_role"]
