"""The CLI flags are generated from RunConfig: one home for each setting's help and choices."""

import dataclasses

from absl import flags

from tada_keras.config import RunConfig, field_choices, field_help
from tada_keras.flags import ALIASES, config_from_flags, define_run_flags
from tada_keras.methods import METHOD_NAMES
from tada_keras.models import BACKBONES
from tada_keras.tasks import tasks_for_role


def _defined():
    values = flags.FlagValues()
    define_run_flags(values)
    values(["prog"])
    return values, config_from_flags(values)


def test_every_field_is_a_flag_with_its_help_default_and_choices():
    values, cfg = _defined()
    assert cfg == RunConfig()  # unparsed flags give the dataclass defaults
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    for name, field in fields.items():
        flag = values[ALIASES.get(name, name)]
        choices = field_choices(field)
        assert flag.help.endswith(field_help(field)), name  # enums: "<a|b>: " + help
        if choices is None:
            assert not hasattr(flag.parser, "enum_values"), name
        else:
            assert list(flag.parser.enum_values) == choices, name
    assert field_choices(fields["method"]) == list(METHOD_NAMES)
    assert field_choices(fields["backbone"]) == list(BACKBONES)
    assert field_choices(fields["main_task"]) == tasks_for_role("main")
    assert "depth" in field_choices(fields["main_task"])
    assert "Adam learning rate" in field_help(fields["learning_rate"])
    assert field_help(fields["source_train_split"]) == "source train split."
