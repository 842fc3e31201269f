"""Every table of the paper and every ablation of the harness, as data.

A ``Table`` is a list of ``Row``s; a row is a label (the paper's wording) and the
``tada_keras.train`` flags that turn the data's flagfile into that row's run. Flags may
use two placeholders, filled in by ``plan.make_plan``:

* ``{da}``: the unsupervised DA method the paper pairs with the data (Tsai et al. for
  indoor scenes, Ganin et al./DANN for faces; Table 1 and Table 3 use it);
* ``{target_val_split}``: the data's target validation split (Table 5 reports on it).

Runs are identified by their effective configuration, not by table: Table 1's Baseline
and Table 2's Baseline are the same runs (as in the paper, where the numbers match).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of a table.

    Args:
        key: short id (``--rows`` filter, dependency references).
        label: the row's name in the table, in the paper's words.
        flags: ``tada_keras.train`` flags on top of the data's flagfile.
        init_from: key of another row of the same table whose final weights (same seed)
            initialise this run (the "phase 2 from a shared converged model" protocol).
        steps_scale: this run trains ``round(steps * steps_scale)`` steps.
    """

    key: str
    label: str
    flags: tuple[str, ...] = ()
    init_from: str | None = None
    steps_scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class Table:
    """A table: its rows, which row the significance test compares against, and which
    data it needs.

    Args:
        name: id used on the command line (``--table``) and as the output folder.
        title: caption.
        rows: the rows, dependencies (``Row.init_from``) before their dependants.
        reference: key of the row every other row is tested against (the paper's
            "Baseline"; Tables 4 and 5 compare DA variants against MTL(+both anchor)).
        frontal: replace the source by the data's pose-matched ("frontal") variant.
        data: data presets that have what the rows need (None: every preset).
        split_note: which target split the metrics come from, for the caption.
        pairs: pre-registered paired comparisons ``(A, B)`` (row keys; A − B per seed),
            reported with confidence intervals and Holm-adjusted p-values as one family.
    """

    name: str
    title: str
    rows: tuple[Row, ...]
    reference: str = "baseline"
    frontal: bool = False
    data: tuple[str, ...] | None = None
    split_note: str = "target test"
    pairs: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class DataPreset:
    """What ``--data=<name>`` means.

    Args:
        flagfile: path relative to the repository root.
        da: the DA method of Tables 1 and 3 for this data (paper: Tsai et al. for indoor
            scenes, DANN for faces).
        frontal: flags replacing the source by its pose-matched variant (Table 3); ``()``
            when the flagfile's source already is; None when there is none.
    """

    flagfile: str
    da: str
    frontal: tuple[str, ...] | None


DATA = {
    # The embedded benchmark is indoor-like, so its DA default follows the indoor column.
    "embedded": DataPreset("configs/demo_scratch.flags", "tsai",
                           ("--source_dataset=sim2real_rooms/matched",)),
    # The paper's regime on the embedded benchmark: the ImageNet-pretrained EfficientNet-Lite0
    # of the demo (docs/study_pretrained.md).
    "pretrained": DataPreset("configs/demo.flags", "tsai",
                             ("--source_dataset=sim2real_rooms/matched",)),
    "indoor": DataPreset("configs/indoor.flags", "tsai", None),
    "faces": DataPreset("configs/faces.flags", "dann",
                        ("--source_dataset=sfsnet_synthetic/frontal",)),
    "faces_frontal": DataPreset("configs/faces_frontal.flags", "dann", ()),
}


def _m(method: str, *extra: str) -> tuple[str, ...]:
    return (f"--method={method}",) + extra


BASELINE = Row("baseline", "Baseline", _m("baseline"))
BASELINE_DA = Row("baseline_da", "Baseline+DA", _m("baseline", "--da={da}"))
MTL_SRC = Row("mtl_src", "MTL (+src anchor)", _m("mtl_src"))
MTL_TGT = Row("mtl_tgt", "MTL (+tgt anchor)", _m("mtl_tgt"))
MTL_BOTH = Row("mtl_both", "MTL (+both anchor)", _m("mtl_both"))
HEADFREEZE = Row("headfreeze", "HeadFreeze (ours)", _m("headfreeze"))
HEADFREEZE_DA = Row("headfreeze_da", "HeadFreeze (ours)+DA", _m("headfreeze", "--da={da}"))
ORACLE = Row("oracle", "Oracle", _m("oracle"))

# Table 5 (paper appendix): DANN at these feature levels, alone and in pairs.
TABLE5_LEVELS = ("layer-3", "layer-4", "up-1", "up-3", "out",
                 "layer-4,out", "layer-4,up-3", "up-3,out")

# Target-anchor ablations need sim2real_rooms configs that differ from `default` only in
# the target anchor labels (same images, same seed). See docs/experiments.md.
ANCHOR_AMOUNTS = {"anchors_25": 25, "anchors_100": 100}
CLEAN_ANCHORS = "clean_anchors"


def _da_rows() -> tuple[Row, ...]:
    # Issue 6's report: each DA method alone and on top of HeadFreeze (the DA-method
    # placeholder of Table 1 would give only one of them).
    rows = [BASELINE]
    for base in (BASELINE, HEADFREEZE):
        rows += [Row(f"{base.key}_{da}", f"{base.label}+DA [{name}]",
                     base.flags + (f"--da={da}",))
                 for da, name in (("dann", "DANN"), ("tsai", "Tsai"))]
        if base is BASELINE:
            rows.append(HEADFREEZE)
    return tuple(rows)


def _protocol_b_rows() -> tuple[Row, ...]:
    # Protocol (b) of issue 3 §4: one converged MTL(+src) model per seed, then HeadFreeze
    # phase 2 and MTL(+both) fine-tuned from it for the same number of steps: as many as
    # HeadFreeze's phase 2 has under the equal-steps protocol (half of --steps).
    return (
        Row("mtl_src_converged", "MTL (+src) converged (b)", _m("mtl_src")),
        Row("headfreeze_b", "HeadFreeze phase 2 from it (b)",
            _m("headfreeze", "--phase1_steps=0"), init_from="mtl_src_converged",
            steps_scale=0.5),
        Row("mtl_both_b", "MTL (+both) fine-tuned from it (b)", _m("mtl_both"),
            init_from="mtl_src_converged", steps_scale=0.5),
    )


def _bn(row: Row, on: bool, protocol: str = "") -> Row:
    suffix = "on" if on else "off"
    label = f"{row.label} ({protocol}, BN {suffix})" if protocol else f"{row.label}, BN {suffix}"
    return Row(f"{row.key}_bn_{suffix}", label, row.flags + (f"--bn_exposure={str(on).lower()}",))


def _on_val(row: Row) -> Row:
    # Table 5 is on the validation set: the run's "target_test" metrics then come from it.
    return dataclasses.replace(row, flags=row.flags + ("--target_test_split={target_val_split}",))


# docs/study_grade.md: every run scores its epoch ends (label-free) and, for the analysis
# only, records its target-test curve; the momentum comes from seed 0's source val.
_SCORED = ("--score_epochs", "--target_test_curve")
EMA_MOMENTA = (0.99, 0.995, 0.999)


def _study_grade_momentum_rows() -> tuple[Row, ...]:
    return tuple(Row(f"{r.key}_ema{str(m)[2:]}", f"{r.label}, EMA {m}",
                     r.flags + _SCORED + (f"--ema_momentum={m}",))
                 for r in (BASELINE, MTL_BOTH) for m in EMA_MOMENTA)


def _study_grade_rows() -> tuple[Row, ...]:
    # The chosen momentum comes with --train_flag=--ema_momentum=M (docs/study_grade.md);
    # the noise-floor rows repeat a run with one intra-op thread instead of all cores.
    rows = [Row(r.key, r.label, r.flags + _SCORED) for r in (BASELINE, MTL_BOTH)]
    rows += [Row(f"{r.key}_1thread", f"{r.label}, 1 intra-op thread",
                 r.flags + _SCORED + ("--intra_op_threads=1",)) for r in (BASELINE, MTL_BOTH)]
    return tuple(rows)


def _anchor_rows(configs: dict[str, str]) -> tuple[Row, ...]:
    rows = [BASELINE]
    for config, note in configs.items():
        dataset = f"--target_dataset=sim2real_rooms/{config}"
        for base in (MTL_BOTH, HEADFREEZE):
            rows.append(Row(f"{base.key}_{config}", f"{base.label}, {note}",
                            base.flags + (dataset,)))
    return tuple(rows)


TABLES = {t.name: t for t in (
    Table("1", "Table 1: comparison with unsupervised domain adaptation",
          (BASELINE, BASELINE_DA, HEADFREEZE, HEADFREEZE_DA, ORACLE)),
    Table("2", "Table 2: ablation of the anchor-task formulations",
          (BASELINE, MTL_SRC, MTL_TGT, MTL_BOTH, HEADFREEZE)),
    Table("3", "Table 3: pose-matched (\"frontal\") source",
          (BASELINE, BASELINE_DA, HEADFREEZE, HEADFREEZE_DA), frontal=True),
    Table("4", "Table 4: MTL (+both anchor) with DANN (Ganin et al.) and Tsai et al.",
          (MTL_BOTH,
           Row("mtl_both_dann", "MTL (+both anchor) +DA [DANN]", _m("mtl_both", "--da=dann")),
           Row("mtl_both_tsai", "MTL (+both anchor) +DA [Tsai]", _m("mtl_both", "--da=tsai"))),
          reference="mtl_both"),
    Table("5", "Table 5: DANN at different feature levels (target validation split)",
          tuple(_on_val(r) for r in (MTL_BOTH,) + tuple(
              Row("dann_" + lv.replace(",", "+"), f"MTL (+both anchor) +DA ({lv})",
                  _m("mtl_both", "--da=dann", f"--da_levels={lv}"))
              for lv in TABLE5_LEVELS)),
          reference="mtl_both", split_note="target validation"),
    Table("da", "Unsupervised DA (DANN, Tsai et al.) alone and on top of HeadFreeze",
          _da_rows()),
    Table("da_frontal", "Unsupervised DA alone and on top of HeadFreeze, pose-matched "
          "(\"frontal\") source", _da_rows(), frontal=True),
    Table("freeze_depth", "Ablation: where the frozen head starts (paper: after up-2)",
          (BASELINE, MTL_BOTH) + tuple(
              Row(f"headfreeze_{p}", f"HeadFreeze, head after {p}",
                  _m("headfreeze", f"--freeze_after={p}")) for p in ("up-1", "up-2", "up-3"))),
    Table("phase1_length", "Ablation: HeadFreeze phase-1 length (fraction of the steps)",
          (BASELINE, MTL_SRC) + tuple(
              Row(f"headfreeze_p1_{int(f * 100)}", f"HeadFreeze, phase 1 = {f:.0%}",
                  _m("headfreeze", f"--phase1_fraction={f}")) for f in (0.25, 0.5, 0.75))),
    Table("protocol", "Ablation: HeadFreeze protocol, (a) equal total steps vs (b) phase 2 "
          "from a shared converged MTL(+src) model",
          (BASELINE,
           Row("mtl_both", "MTL (+both) (a)", MTL_BOTH.flags),
           Row("headfreeze", "HeadFreeze (a)", HEADFREEZE.flags)) + _protocol_b_rows()),
    # docs/study_pretrained.md, comparisons 1-3 (the same runs as "protocol").
    Table("study_pretrained", "Pre-registered study, comparisons 1-3: MTL (+both) vs "
          "Baseline, HeadFreeze vs MTL (+both) under protocols (a) and (b)",
          (BASELINE,
           Row("mtl_both", "MTL (+both) (a)", MTL_BOTH.flags),
           Row("headfreeze", "HeadFreeze (a)", HEADFREEZE.flags)) + _protocol_b_rows(),
          pairs=(("mtl_both", "baseline"), ("headfreeze", "mtl_both"),
                 ("headfreeze_b", "mtl_both_b"))),
    # docs/self_training.md (issue 28, item 5): a first look at self-training per
    # confidence mask, beside the methods it is compared with and composed with.
    Table("self_training", "Self-training (mean teacher) per confidence mask, with MTL "
          "(+both) and HeadFreeze",
          (BASELINE,) + tuple(
              Row(f"self_training_{mask}", f"Self-training, mask {mask}",
                  _m("self_training", f"--pseudo_mask={mask}", "--evaluate_teacher"))
              for mask in ("none", "consistency", "anchor", "both"))
          + (MTL_BOTH, HEADFREEZE,
             Row("headfreeze_st", "HeadFreeze + self-training (anchor mask)",
                 _m("headfreeze_st", "--pseudo_mask=anchor", "--evaluate_teacher")))),
    # docs/study_grade.md: the noise floor, weight averaging and label-free selection.
    Table("study_grade_momentum", "Study-grade runs: the EMA momentum, chosen on seed 0's "
          "source val", _study_grade_momentum_rows()),
    Table("study_grade", "Study-grade runs: noise floor, weight averaging, checkpoint "
          "selection", _study_grade_rows(),
          pairs=(("mtl_both", "baseline"),)),
    # docs/study_pretrained.md: the step budget comes from this curve (source val only).
    Table("learning_curve", "Learning curve: Baseline and MTL (+both) at 1/2, 1, 2 and 3 "
          "times --steps",
          tuple(Row(f"{r.key}_x{str(k).replace('.', '_')}", f"{r.label}, {k}x steps",
                    r.flags, steps_scale=k)
                for r in (BASELINE, MTL_BOTH) for k in (0.5, 1, 2, 3))),
    Table("augmentation", "Source-domain augmentation (domain randomisation, issue 19) as "
          "a baseline the paper lacks, alone and under HeadFreeze",
          (BASELINE,
           Row("baseline_photometric", "Baseline + photometric augmentation",
               _m("baseline", "--augment=photometric")),
           Row("baseline_photometric_flip", "Baseline + photometric augmentation + flips",
               _m("baseline", "--augment=photometric_flip")),
           MTL_BOTH, HEADFREEZE,
           Row("headfreeze_photometric", "HeadFreeze + photometric augmentation",
               _m("headfreeze", "--augment=photometric")))),
    Table("bn_exposure", "Ablation: batch-norm exposure to target images of the methods "
          "that use no target label",
          tuple(_bn(r, on) for r in (BASELINE, MTL_SRC, HEADFREEZE) for on in (True, False))),
    Table("anchor_amount", "Ablation: amount of labelled target anchor data",
          _anchor_rows({**{c: f"{n} target anchor labels" for c, n in ANCHOR_AMOUNTS.items()},
                        "default": "all target anchor labels"}),
          data=("embedded",)),
    Table("anchor_noise", "Ablation: noisy (eroded/jittered) vs clean target anchor labels",
          _anchor_rows({"default": "noisy anchors", CLEAN_ANCHORS: "clean anchors"}),
          data=("embedded",)),
    Table("science_check", "Issue 3 §4 first science check: every method × BN exposure × "
          "HeadFreeze protocol",
          tuple(_bn(r, True, "a") for r in (BASELINE, MTL_SRC, MTL_TGT, MTL_BOTH, HEADFREEZE,
                                            ORACLE))
          + tuple(_bn(r, False, "a") for r in (BASELINE, MTL_SRC)) + _protocol_b_rows(),
          reference="baseline_bn_on"),
)}
