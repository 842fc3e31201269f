"""The README's performance table, generated from the throughput runs' raw rows.

    python benchmarks/readme_table.py     # rewrites README.md between <!-- throughput -->
                                          # markers from benchmarks/throughput*.json

Reads ``benchmarks/throughput_lite0.json`` (the demo's EfficientNet-Lite0-FPN) and
``benchmarks/throughput.json`` (ResNet50-FPN), as ``throughput.py --out=...`` writes them;
nothing is typed. Per network, precision and phase: Keras-TF (no jit) with the fused
batch norm, with Keras's own batch norm, and the PyTorch twin eager / ``torch.compile``;
the last column is Keras-TF (fused) over the row, so a twin row's value is the ratio the
performance targets are stated in.
"""

from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
README = os.path.join(ROOT, "README.md")
BEGIN, END = "<!-- throughput -->", "<!-- /throughput -->"
NETWORKS = (("throughput_lite0.json", "EfficientNet-Lite0-FPN (the demo's network)"),
            ("throughput.json", "ResNet50-FPN (the paper's network)"))
ROWS = ((("keras", False, None), "Keras-TF, fused batch norm"),
        (("keras", False, "keras"), "Keras-TF, Keras's batch norm"),
        (("twin", False, None), "PyTorch twin, eager"),
        (("twin", True, None), "PyTorch twin, `torch.compile`"))
PHASES = ("phase1", "phase2")


def rates(rows: list[dict]) -> dict:
    """(kind, jit, batchnorm, policy) -> (img/s phase 1, img/s phase 2, load before)."""
    out = {}
    for r in rows:
        spec = r["spec"]
        if "error" in r or spec["kind"] not in ("keras", "twin"):
            continue
        if spec["kind"] == "keras" and spec["backend"] != "tensorflow":
            continue
        batch = 16  # every run here: 8 source + 8 target (throughput.py's default)
        key = (spec["kind"], spec["jit"], spec.get("batchnorm"), spec["policy"])
        out[key] = tuple(batch / r[p]["median_s"] for p in PHASES) + (r["load_before"],)
    return out


def table(rows: list[dict]) -> list[str]:
    found = rates(rows)
    lines = ["| precision | run | img/s phase 1 / 2 | Keras-TF (fused) ÷ this |",
             "|---|---|---:|---:|"]
    for policy, name in (("float32", "fp32"), ("mixed_bfloat16", "bf16")):
        ours = found.get(("keras", False, None, policy))
        for key, label in ROWS:
            row = found.get(key + (policy,))
            if row is None:
                continue
            ratio = (" / ".join(f"{ours[i] / row[i]:.2f}" for i in range(2)) if ours else "")
            lines.append(f"| {name} | {label} | {row[0]:.2f} / {row[1]:.2f} | {ratio} |")
    return lines


def block() -> str:
    parts = []
    for filename, title in NETWORKS:
        path = os.path.join(HERE, filename)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            rows = json.load(f)
        loads = [r["load_before"] for r in rows if "load_before" in r]
        when = sorted(r.get("measured_at", "") for r in rows)
        parts += [f"**{title}** ([{filename[:-5]}.md](benchmarks/{filename[:-5]}.md), "
                  f"measured {when[0]}–{when[-1][11:]} UTC; 1-min load before each row "
                  f"{min(loads):.1f}–{max(loads):.1f}, the previous row's own 2 threads "
                  "included):", ""] + table(rows) + [""]
    return "\n".join(parts).rstrip() + "\n"


def main() -> None:
    sys.path.insert(0, ROOT)  # run from a checkout without installing
    from tada_keras.atomic import replace_marked_block

    # ``block()`` ends with its one newline, which the function puts back.
    replace_marked_block(README, BEGIN, END, block()[:-1])
    print(block())


if __name__ == "__main__":
    main()
