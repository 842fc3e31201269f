"""From (table, data, seeds, out) to the list of training runs, checked before any starts.

Every run's effective ``RunConfig`` is computed here from the same flags its
``python -m tada_keras.train`` subprocess gets (flagfile, then the harness's overrides,
then the row's flags; the last value of a flag wins, as in absl), so that

* a run's directory is named after what makes it differ from the data's flagfile
  (``<out>/runs/<slug>/seed_<k>``): identical runs of different tables are shared, and
  different runs never share a directory;
* every run is validated (``tada_keras.run.validate``) before the first one trains: a bad
  row fails in seconds, not after hours of training the rows before it;
* a row that needs a flag this version of ``tada_keras.train`` lacks (the domain-adaptation
  flags of issue 6) fails with a message naming it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re

from tada_keras.config import RunConfig, validate
from tada_keras.experiments.tables import DATA, TABLES, DataPreset, Row, Table
from tada_keras.flags import ALIASES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# CLI names that differ from RunConfig field names.
FLAG_ALIASES = {cli: field for field, cli in ALIASES.items()}
# Fields that do not make two runs different experiments.
_NOT_IDENTITY = ("model_dir", "seed", "init_from")
_DA_PREFIXES = ("da", "disc_", "monitor_")
_MAX_SLUG = 96


class PlanError(ValueError):
    """A table cannot run as asked; the message says why and what to change."""


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One (row, seed): its directory, its ``tada_keras.train`` arguments and config."""

    row: Row
    seed: int
    model_dir: str
    args: tuple[str, ...]
    config: RunConfig
    parent: str | None = None  # model_dir of the run whose weights initialise this one
    record: str | None = None  # its committed record (tada_keras.experiments.records)
    needs_weights: bool = False  # an unfinished run starts from its final weights

    @property
    def local(self) -> bool:
        """Finished on this machine (its model_dir holds metrics, weights, figures)."""
        return os.path.exists(os.path.join(self.model_dir, "metrics.json"))

    @property
    def recorded(self) -> bool:
        return bool(self.record) and os.path.isfile(self.record)

    @property
    def done(self) -> bool:
        if self.local:
            return True
        return self.recorded and not (self.needs_weights and not os.path.isfile(
            final_weights(self.model_dir, self.config)))

    def metrics(self) -> dict:
        """Its metrics.json, from the run directory or else from its record."""
        if self.local:
            with open(os.path.join(self.model_dir, "metrics.json")) as f:
                return json.load(f)
        from tada_keras.experiments.records import read_metrics

        return read_metrics(self.record, self.config)

    def fingerprints(self) -> dict | None:
        """Its fingerprints (``training/fingerprint.py``), from the run directory or its
        record; None for runs trained before they existed."""
        path = os.path.join(self.model_dir, "fingerprints.json")
        if self.local and os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        if self.recorded:
            from tada_keras.experiments.records import read_record

            return read_record(self.record, self.config).get("fingerprints")
        return None

    @property
    def phase_steps(self) -> dict[str, int]:
        return self.config.resolved_method().steps

    @property
    def steps(self) -> int:
        return sum(self.phase_steps.values())


@dataclasses.dataclass(frozen=True)
class Plan:
    table: Table
    data: str
    base: RunConfig
    rows: tuple[Row, ...]
    runs: dict[str, tuple[PlannedRun, ...]]  # row key -> one run per seed
    out: str

    def unique_runs(self) -> list[PlannedRun]:
        """Runs to execute, seed-major (a whole table at seed 0 exists early), each
        directory once, a run's parent before it."""
        seen, order = set(), []
        n_seeds = max((len(v) for v in self.runs.values()), default=0)
        for i in range(n_seeds):
            for row in self.rows:
                run = self.runs[row.key][i]
                if run.model_dir not in seen:
                    seen.add(run.model_dir)
                    order.append(run)
        return order


# --- flags -> RunConfig ------------------------------------------------------------------
def _fields() -> set[str]:
    return {f.name for f in dataclasses.fields(RunConfig)}


def flag_field(name: str) -> str:
    return FLAG_ALIASES.get(name, name)


def split_flag(arg: str) -> tuple[str, str | None]:
    if not arg.startswith("--"):
        raise PlanError(f"expected a --flag, got {arg!r}")
    name, eq, value = arg[2:].partition("=")
    return name, (value if eq else None)


def missing_fields(args: list[str]) -> list[str]:
    """CLI flags of ``args`` that ``RunConfig`` has no field for."""
    fields = _fields()
    missing = []
    for arg in args:
        name, value = split_flag(arg)
        negated = value is None and name.startswith("no") and flag_field(name[2:]) in fields
        if flag_field(name) not in fields and not negated:
            missing.append(name)
    return missing


def effective_config(args: list[str]) -> RunConfig:
    """The RunConfig ``python -m tada_keras.train <args>`` would run: the same absl flags
    (generated from ``RunConfig``) parse the same arguments, so later flags win, ``--noX``
    and every value's syntax mean what they mean to the CLI."""
    from absl import flags

    from tada_keras import flagfiles
    from tada_keras.flags import config_from_flags, define_run_flags

    try:
        expanded = flagfiles.expand(args)
    except (flagfiles.FlagfileError, OSError) as err:
        raise PlanError(str(err)) from None
    for name in missing_fields(expanded):
        raise PlanError(f"--{name}: tada_keras.train has no such flag")
    values = flags.FlagValues()
    define_run_flags(values)
    try:
        values(["tada_keras.train", *expanded])
    except flags.Error as err:
        raise PlanError(str(err)) from None
    return config_from_flags(values)


# --- run identity --------------------------------------------------------------------------
def run_slug(base: RunConfig, cfg: RunConfig, parent_slug: str | None = None) -> str:
    """Directory name of a run: its method, then every setting that differs from ``base``
    (the data's flagfile), then the run it starts from."""
    a, b = dataclasses.asdict(base), dataclasses.asdict(cfg)
    parts = [cfg.method] + [f"{k}-{_text(b[k])}" for k in sorted(b)
                            if k not in (*_NOT_IDENTITY, "method") and b[k] != a.get(k)]
    if parent_slug:
        parts.append(f"from-{parent_slug}")
    slug = re.sub(r"[^A-Za-z0-9._+-]", "_", "__".join(parts))
    if len(slug) > _MAX_SLUG:  # keep it readable; the hash keeps it unique
        digest = hashlib.sha1(slug.encode()).hexdigest()[:10]
        slug = f"{slug[:_MAX_SLUG - 12]}__{digest}"
    return slug


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return "+".join(map(str, value))
    return str(value).replace("/", "-").replace(",", "+")


def final_weights(model_dir: str, cfg: RunConfig) -> str:
    last = cfg.resolved_method().phases[-1].name
    return os.path.join(model_dir, f"phase_{last}", "final.weights.h5")


# --- the plan ----------------------------------------------------------------------------
def resolve_data(data: str, da: str | None = None,
                 frontal_source: str | None = None) -> tuple[str, DataPreset]:
    """(name, preset) of ``--data``: a preset name or a flagfile path."""
    if data in DATA:
        name, preset = data, DATA[data]
        from tada_keras import flagfiles

        try:  # the repository's configs/, or the ones shipped in the installed package
            path = flagfiles.resolve(os.path.join(ROOT, preset.flagfile))
        except flagfiles.FlagfileError as err:
            raise PlanError(f"--data={data}: {err}") from None
        preset = dataclasses.replace(preset, flagfile=path)
    elif os.path.isfile(data):
        name = os.path.splitext(os.path.basename(data))[0]
        preset = DataPreset(os.path.abspath(data), "dann", None)
    else:
        raise PlanError(f"--data={data!r}: expected one of {sorted(DATA)} or a flagfile path")
    if da:
        preset = dataclasses.replace(preset, da=da)
    if frontal_source:
        preset = dataclasses.replace(preset, frontal=(f"--source_dataset={frontal_source}",))
    return name, preset


def select_rows(table: Table, keys: list[str] | None) -> tuple[Row, ...]:
    """The rows asked for, plus the rows they start from."""
    if not keys:
        return table.rows
    by_key = {r.key: r for r in table.rows}
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        raise PlanError(f"--rows: table {table.name} has no row {unknown}; it has "
                        f"{list(by_key)}")
    wanted = set(keys)
    for key in keys:
        parent = by_key[key].init_from
        while parent:
            wanted.add(parent)
            parent = by_key[parent].init_from
    return tuple(r for r in table.rows if r.key in wanted)


def make_plan(table: str, data: str, seeds: int, out: str, *, steps: int | None = None,
              data_dir: str | None = None, train_flags: tuple[str, ...] = (),
              rows: list[str] | None = None, da: str | None = None,
              frontal_source: str | None = None, results: str | None = None) -> Plan:
    """Every run of ``table`` on ``data``, validated; raises ``PlanError``.

    ``results``: the folder of committed run records (``records.py``), or None.
    """
    if table not in TABLES:
        raise PlanError(f"--table={table!r}: expected one of {list(TABLES)}")
    if seeds < 1:
        raise PlanError(f"--seeds must be >= 1, got {seeds}")
    spec = TABLES[table]
    data_name, preset = resolve_data(data, da, frontal_source)
    if spec.data and data_name not in spec.data:
        raise PlanError(f"table {table} needs --data in {list(spec.data)} (it varies "
                        f"dataset configs of the embedded benchmark), got {data!r}")
    out = os.path.abspath(out)
    base_args = [f"--flagfile={preset.flagfile}"]
    if data_dir:
        base_args.append(f"--data_dir={os.path.abspath(data_dir)}")
    if steps:
        base_args.append(f"--steps={steps}")
    base_args += list(train_flags)
    base = effective_config(base_args)
    prefix = ()
    if spec.frontal:
        if preset.frontal is None:
            raise PlanError(f"table {table} needs a pose-matched (\"frontal\") source for "
                            f"--data={data}: pass --frontal_source=<tfds name/config>")
        prefix = preset.frontal
    subs = {"da": preset.da, "target_val_split": base.target_val_split}
    selected = select_rows(spec, rows)
    row_args = {r.key: list(prefix) + [f.format(**subs) for f in r.flags] for r in selected}
    _check_flags_exist(spec, selected, row_args)

    runs: dict[str, tuple[PlannedRun, ...]] = {}
    slugs: dict[str, str] = {}
    for row in selected:
        args = base_args + row_args[row.key]
        cfg = effective_config(args)
        if row.steps_scale != 1.0:
            args.append(f"--steps={round(cfg.steps * row.steps_scale)}")
            cfg = dataclasses.replace(cfg, steps=round(cfg.steps * row.steps_scale))
        slugs[row.key] = run_slug(base, cfg, slugs.get(row.init_from))
        per_seed = []
        for seed in range(seeds):
            model_dir = os.path.join(out, "runs", slugs[row.key], f"seed_{seed}")
            run_args = args + [f"--seed={seed}", f"--model_dir={model_dir}"]
            run_cfg = dataclasses.replace(cfg, seed=seed, model_dir=model_dir)
            parent = None
            if row.init_from:
                parent_run = runs[row.init_from][seed]
                parent = parent_run.model_dir
                init = final_weights(parent, parent_run.config)
                run_args.append(f"--init_from={init}")
                run_cfg = dataclasses.replace(run_cfg, init_from=init)
            record = (os.path.join(os.path.abspath(results), slugs[row.key],
                                   f"seed_{seed}.json") if results else None)
            per_seed.append(PlannedRun(row, seed, model_dir, tuple(run_args), run_cfg, parent,
                                       record))
        runs[row.key] = tuple(per_seed)
        _validate(row, per_seed[0])
    _check_datasets(base, [r[0].config for r in runs.values()])
    runs = _mark_needed_weights(runs)
    return Plan(spec, data_name, base, selected, runs, out)


def _mark_needed_weights(runs: dict[str, tuple[PlannedRun, ...]]):
    """A run that an unfinished run starts from must have its weights here, not only a
    record (records hold no weights); repeated until stable for chains of parents."""
    changed = True
    while changed:
        changed = False
        pending = {r.parent for rs in runs.values() for r in rs if r.parent and not r.done}
        for key, rs in runs.items():
            new = tuple(dataclasses.replace(r, needs_weights=True)
                        if r.model_dir in pending and not r.needs_weights else r for r in rs)
            if new != rs:
                runs[key], changed = new, True
    return runs


def _check_flags_exist(table: Table, rows: tuple[Row, ...], row_args: dict) -> None:
    problems = []
    for row in rows:
        for name in missing_fields(row_args[row.key]):
            hint = (" (the domain-adaptation flags come with issue 6)"
                    if name.startswith(_DA_PREFIXES) else "")
            problems.append(f"row {row.label!r} needs --{name}{hint}")
    if problems:
        raise PlanError(f"table {table.name}: this version of tada_keras.train lacks flags "
                        "its rows need (RunConfig has no such field): " + "; ".join(problems))


def _validate(row: Row, run: PlannedRun) -> None:
    cfg = run.config
    if cfg.init_from:
        # The parent's weights do not exist before it trains; validate the rest.
        cfg = dataclasses.replace(cfg, init_from=os.path.abspath(__file__))
    try:
        validate(cfg)
        run.phase_steps  # noqa: B018  (raises on an impossible phase split)
    except ValueError as err:
        raise PlanError(f"row {row.label!r}: {err}") from None


def _check_datasets(base: RunConfig, configs: list[RunConfig]) -> None:
    """Rows that switch datasets (Table 3, anchor ablations) must name existing configs."""
    names = {getattr(c, f) for c in configs for f in ("source_dataset", "target_dataset")}
    names -= {base.source_dataset, base.target_dataset}
    if not names:
        return
    import tensorflow_datasets as tfds

    import tada_datasets  # noqa: F401  (registers the builders)

    for name in sorted(names):
        builder, _, config = name.partition("/")
        try:
            cls = tfds.builder_cls(builder)
        except Exception as err:  # tfds raises its own DatasetNotFoundError
            raise PlanError(f"dataset {name!r}: {err}") from None
        known = [c.name for c in getattr(cls, "BUILDER_CONFIGS", [])]
        if config and known and config not in known:
            raise PlanError(f"dataset {name!r} is not defined: {builder} has configs {known}"
                            " (see docs/experiments.md for the configs the ablations need)")


# --- the output directory ----------------------------------------------------------------
def check_out_dir(out: str, base: RunConfig, write: bool = True) -> None:
    """``<out>/harness.json`` pins the base settings: run directories are named relative to
    them, so one ``--out`` must not mix data, steps or train flags."""
    path = os.path.join(out, "harness.json")
    current = {k: v for k, v in dataclasses.asdict(base).items() if k not in _NOT_IDENTITY}
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)["base_config"]
        # Fields added to RunConfig later (e.g. by a new issue) are not a mismatch.
        diff = sorted(k for k in set(previous) & set(current) if previous[k] != current[k])
        if diff:
            raise PlanError(f"--out={out} holds runs with other base settings ("
                            + ", ".join(f"{k}: {previous.get(k)!r} -> {current.get(k)!r}"
                                        for k in diff) + "); use another --out")
    elif write:
        os.makedirs(out, exist_ok=True)
        with open(path, "w") as f:
            json.dump({"base_config": current}, f, indent=2, sort_keys=True)
