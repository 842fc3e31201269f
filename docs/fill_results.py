"""Copy the harness's result tables into docs/experiments.md.

    python docs/fill_results.py --out=runs/exp/embedded_600 [--doc=docs/experiments.md]

Every ``<!-- results:NAME -->`` marker in the document is followed by one "Produced on"
line and the Markdown table of ``<out>/table_NAME/results.md``; this replaces both with the
current file, so the docs show exactly what the harness wrote. Markers whose table has not
been produced are left as they are (and listed). The document is rewritten atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile

MARKER = re.compile(r"^<!-- results:(?P<name>[\w-]+) -->$")


def _table_lines(results_md: str) -> list[str]:
    lines = results_md.splitlines()
    table = [ln for ln in lines if ln.startswith("|")]
    if not table:
        raise ValueError("no Markdown table in it")
    return table


def _seeds(table: list[str]) -> str:
    """The seed counts of the table's "seeds" column, e.g. "3" or "1/3"."""
    header = [c.strip() for c in table[0].strip("|").split("|")]
    if "seeds" not in header:
        return ""
    col = header.index("seeds")
    counts = {row.strip("|").split("|")[col].strip() for row in table[2:]}
    return "/".join(sorted(counts))


def _caption(out: str, name: str, table: list[str]) -> str:
    with open(os.path.join(out, "harness.json")) as f:
        base = json.load(f)["base_config"]
    seeds = _seeds(table)
    seeds_text = f", {seeds} seed{'' if seeds == '1' else 's'}" if seeds else ""
    return (f"Produced on the embedded benchmark ({base['steps']} steps, `{base['backbone']}`"
            f"{seeds_text}; `{out}/table_{name}/results.md`; `*` differs from the reference "
            f"row, `†` worse than the column's best: Welch p < 0.05, Benjamini–Hochberg-adjusted "
            f"over the column's rows):")


def fill(doc_text: str, out: str) -> tuple[str, list[str], list[str]]:
    """Returns (new text, filled names, names without results)."""
    lines = doc_text.splitlines()
    result, filled, missing = [], [], []
    i = 0
    while i < len(lines):
        line = lines[i]
        result.append(line)
        i += 1
        match = MARKER.match(line)
        if not match:
            continue
        name = match["name"]
        path = os.path.join(out, f"table_{name}", "results.md")
        if not os.path.exists(path):
            missing.append(name)
            continue
        # Drop the previous block: an optional "Produced on" line, a table, blank lines.
        j = i
        if j < len(lines) and lines[j].startswith("Produced on"):
            j += 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            while j < len(lines) and not lines[j].strip():
                j += 1
        with open(path) as f:
            try:
                table = _table_lines(f.read())
            except ValueError as e:
                raise ValueError(f"{path}: {e}") from None
        result += [_caption(out, name, table), ""] + table + [""]
        filled.append(name)
        i = j
    return "\n".join(result) + "\n", filled, missing


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the harness's --out directory")
    parser.add_argument("--doc", default=os.path.join(os.path.dirname(__file__),
                                                      "experiments.md"))
    args = parser.parse_args(argv)
    if not os.path.exists(os.path.join(args.out, "harness.json")):
        print(f"error: --out={args.out}: no harness.json (not a harness output directory)",
              file=sys.stderr)
        return 2
    with open(args.doc) as f:
        text, filled, missing = fill(f.read(), args.out)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(args.doc)), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, args.doc)
    print(f"filled: {', '.join(filled) or '-'}; no results yet: {', '.join(missing) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
