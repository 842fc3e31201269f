"""``--flagfile`` for every command line, inside the repository and after ``pip install``.

The flagfiles of ``configs/`` ship in the wheel (as ``tada_keras/configs/``), so

    tada-train --flagfile=demo.flags --method=headfreeze      # anywhere, after pip install
    python -m tada_keras.train --flagfile=configs/demo.flags  # in the repository

both work. A ``--flagfile=PATH`` is looked up as absl would (``PATH`` itself, relative to
the current directory), then next to the flagfile that names it, then among the shipped
configs by its file name (``demo.flags``, ``configs/demo.flags`` and ``demo`` all name the
shipped ``demo.flags``). The commands inline the files before absl parses the arguments
(the same syntax as absl's: one flag per line, ``#`` and ``//`` comments), so a file that
is not found is one clear error that lists the shipped configs, not a traceback.
"""

from __future__ import annotations

import os
import sys

SUFFIX = ".flags"
_HERE = os.path.dirname(os.path.abspath(__file__))


class FlagfileError(ValueError):
    """A ``--flagfile`` that names no file (or includes itself)."""


def shipped_dir() -> str | None:
    """The folder of the shipped flagfiles: ``tada_keras/configs/`` in an installed wheel,
    the repository's ``configs/`` in a source checkout (editable install)."""
    for candidate in (os.path.join(_HERE, "configs"),
                      os.path.join(os.path.dirname(_HERE), "configs")):
        if os.path.isfile(os.path.join(candidate, "demo" + SUFFIX)):
            return candidate
    return None


def shipped_names() -> list[str]:
    folder = shipped_dir()
    return sorted(n for n in os.listdir(folder) if n.endswith(SUFFIX)) if folder else []


def resolve(path: str, including: str | None = None) -> str:
    """The file ``--flagfile=path`` means (see the module docstring); raises
    FlagfileError naming it and the places looked in."""
    candidates = [os.path.expanduser(path)]
    if including and not os.path.isabs(path):
        candidates.append(os.path.join(os.path.dirname(including), path))
    name = os.path.basename(path)
    folder = shipped_dir()
    if folder:
        candidates += [os.path.join(folder, name), os.path.join(folder, name + SUFFIX)]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    looked = [os.getcwd()] + ([os.path.dirname(including)] if including else [])
    where = f" (named in {including})" if including else ""
    raise FlagfileError(f"--flagfile={path}{where}: no such file (looked relative to "
                        f"{' and '.join(looked)}, and among the shipped configs: "
                        f"{', '.join(shipped_names()) or 'none found'})")


def expand(args: list[str], including: str | None = None,
           _stack: tuple[str, ...] = ()) -> list[str]:
    """``args`` with every ``--flagfile=X`` (or ``--flagfile X``) replaced by the flags of
    that file, recursively, in place (later flags still win, as in absl)."""
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg in ("--flagfile", "-flagfile") and i + 1 < len(args):
            value, i = args[i + 1], i + 2
        elif arg.startswith(("--flagfile=", "-flagfile=")):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        path = resolve(value, including)
        if path in _stack:
            raise FlagfileError(f"--flagfile={value}: {path} includes itself "
                                f"({' -> '.join(_stack + (path,))})")
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
        flags = [line for line in lines if line and not line.startswith(("#", "//"))]
        out.extend(expand(flags, path, _stack + (path,)))
    return out


def command_argv(argv: list[str]) -> list[str]:
    """A command's ``sys.argv`` with its flagfiles inlined; exits 2 with one line on
    stderr when one is not found."""
    try:
        return argv[:1] + expand(argv[1:])
    except (FlagfileError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


HELP = ("--help", "-help", "-h", "-?", "--helpshort")


def command_help(module: str) -> str:
    """The command's docstring and its flags (its own, then the run flags it shares)."""
    from absl import flags

    values = flags.FLAGS
    parts = [(sys.modules[module].__doc__ or "").strip()]
    # absl files the flags of ``python -m`` 's __main__ module under sys.argv[0].
    own = sys.argv[0] if module == "__main__" else module
    for name, title in ((own, "flags"), ("tada_keras.flags", "run flags (tada_keras.flags)")):
        if values.flags_by_module_dict().get(name):
            parts.append(title + ":" + values.module_help(name).split(":", 1)[1])
    parts.append("--flagfile=FILE: flags from a file, one per line (the shipped configs: "
                 f"{', '.join(shipped_names()) or 'none found'}); --helpfull: every flag.")
    return "\n\n".join(p for p in parts if p)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing of ``argv``; a flag it rejects (unknown, not of its type, not one
    of its choices) exits 2 with one ``error:`` line naming it (absl's own parser prints
    ``FATAL Flags parsing error`` and exits 1)."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


INTERRUPTED = 130  # the shells' code of a command ended by SIGINT (128 + 2)
# The line of an interrupted training (train, demo).
RESUMES = "interrupted: re-run the same command; it resumes from the last epoch's checkpoint"


def run(main, interrupted: str = "interrupted") -> None:
    """``absl.app.run(main)`` with the flagfiles resolved: the console scripts' entry
    (``python -m`` runs it too). ``--help`` prints the command's docstring and flags and
    exits 0 (absl's own ``--help`` knows only the ``__main__`` module's flags, which a
    console script's wrapper has none of). A flag absl rejects exits 2 with one line
    (``parse_flags``); Ctrl-C (KeyboardInterrupt) prints the line ``interrupted`` (the
    command's own, e.g. how to resume) instead of a traceback and exits 130."""
    from absl import app

    if any(arg in HELP for arg in sys.argv[1:]):
        print(command_help(main.__module__))
        raise SystemExit(0)
    try:
        app.run(main, argv=command_argv(sys.argv), flags_parser=parse_flags)
    except KeyboardInterrupt:
        print(flush=True)  # end a progress bar's line
        print(interrupted, file=sys.stderr, flush=True)
        raise SystemExit(INTERRUPTED) from None
