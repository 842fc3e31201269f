"""absl flags shared by train / evaluate / predict, generated from ``RunConfig`` (each
field's type, default, help and choices; see ``tada_keras.config.setting``)."""

from __future__ import annotations

import dataclasses

from absl import flags

from tada_keras.config import RunConfig, field_choices, field_help

# Short CLI names for a few fields.
ALIASES = {"anchor_task": "anchor", "main_task": "main"}


def define_run_flags(flag_values: flags.FlagValues | None = None) -> None:
    """Defines one flag per ``RunConfig`` field (in ``flag_values``, default the global
    registry)."""
    flag_values = flags.FLAGS if flag_values is None else flag_values
    defaults = RunConfig()
    for field in dataclasses.fields(RunConfig):
        name = ALIASES.get(field.name, field.name)
        default = getattr(defaults, field.name)
        help_text = field_help(field)
        choices = field_choices(field)
        if choices is not None:
            flags.DEFINE_enum(name, default, choices, help_text, flag_values=flag_values)
        elif isinstance(default, bool):
            flags.DEFINE_bool(name, default, help_text, flag_values=flag_values)
        elif isinstance(default, int) or field.type in ("int | None",):
            flags.DEFINE_integer(name, default, help_text, flag_values=flag_values)
        elif isinstance(default, float) or field.type == "float | None":
            flags.DEFINE_float(name, default, help_text, flag_values=flag_values)
        else:
            flags.DEFINE_string(name, default, help_text, flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues | None = None) -> RunConfig:
    flag_values = flags.FLAGS if flag_values is None else flag_values
    values = {}
    for field in dataclasses.fields(RunConfig):
        value = flag_values[ALIASES.get(field.name, field.name)].value
        if value in ("", "None") and field.type.endswith("None"):
            value = None
        values[field.name] = value
    return RunConfig(**values)
