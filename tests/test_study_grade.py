"""Study-grade runs: weight averaging (Keras's optimizer EMA), label-free checkpoint
selection, and run records that prove their pairing."""

import json
import os
import shutil
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import h5_arrays, make_batch

import tada_keras
from tada_keras.tasks import get_task
from tada_keras.training.averaging import (
    averaged_weights,
    lent_weights,
    network_optimizer,
    trainable_values,
)
from tada_keras.training.phases import configure_phase
from tada_keras.training.selection import (
    BestCheckpoint,
    EpochScores,
    criterion,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.flags")
TENSORFLOW = os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"


def _dataset(x, y):
    import tensorflow as tf

    return tf.data.Dataset.from_tensors((x, y)).repeat()


def _values(variables):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


class _Trace(keras.callbacks.Callback):
    """Raw weights at every epoch end (one step per epoch) and the averages then."""

    def __init__(self):
        super().__init__()
        self.raw, self.averaged = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.raw.append(_values(self.model.trainable_variables))
        with averaged_weights(self.model) as on:
            assert on
            self.averaged.append(_values(self.model.trainable_variables))
        # Restored exactly: the raw values are back after the block.
        for a, b in zip(self.raw[-1], _values(self.model.trainable_variables)):
            np.testing.assert_array_equal(a, b)


def _small_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = tada_keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


@pytest.mark.backend_matrix
def test_averaged_weights_equal_the_closed_form_and_leave_the_raw_trajectory_alone():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 8, 3)).astype("float32")
    y = rng.normal(size=(16, 2)).astype("float32")
    momentum, steps = 0.8, 6

    def train(ema):
        keras.utils.set_random_seed(3)
        model = _small_model()
        model.compile(optimizer=network_optimizer(1e-2, momentum if ema else 0.0), loss="mse")
        trace = _Trace() if ema else None
        model.fit(x, y, batch_size=16, epochs=steps, shuffle=False, verbose=0,
                  callbacks=[trace] if trace else [])
        return model, trace

    model, trace = train(ema=True)
    # a_1 = w_1, a_t = m a_{t-1} + (1 - m) w_t (Keras: momentum 0 at the first step).
    expected = [np.array(w, np.float64) for w in trace.raw[0]]
    for t in range(steps):
        if t:
            expected = [momentum * a + (1 - momentum) * w for a, w in zip(expected, trace.raw[t])]
        for a, e in zip(trace.averaged[t], expected):
            np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
    # fit ends with the averages in the model (Keras's finalize_variable_values).
    for a, e in zip(_values(model.trainable_variables), expected):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
    # Averaging never changes the raw trajectory, nor the BatchNorm statistics (not averaged).
    plain, _ = train(ema=False)
    for a, b in zip(trace.raw[-1], _values(plain.trainable_variables)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    stats = [v for v in model.non_trainable_variables if "moving" in v.path]
    assert len(stats) == 2
    for a, b in zip(_values(stats), _values(
            [v for v in plain.non_trainable_variables if "moving" in v.path])):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.backend_matrix
def test_headfreeze_phase2_with_averaging_keeps_the_head_bit_identical(tiny_model):
    keras.utils.set_random_seed(1)
    model = tiny_model()
    x, y = make_batch(seed=8)
    ds = _dataset(x, y)
    phase1, phase2 = tada_keras.get_method("headfreeze").phases
    configure_phase(model, phase1, network_optimizer(1e-2, 0.9))
    model.fit(ds, steps_per_epoch=3, epochs=2, verbose=0)
    head = _values(model.head.weights)
    encoder = _values(model.encoder.weights)
    configure_phase(model, phase2, network_optimizer(1e-2, 0.9))
    scores = EpochScores(None)
    model.fit(ds, steps_per_epoch=3, epochs=2, verbose=0, callbacks=[scores])
    for before, after in zip(head, _values(model.head.weights)):
        assert np.array_equal(before, after)
    assert sum(not np.array_equal(a, b) for a, b in
               zip(encoder, _values(model.encoder.weights))) > len(encoder) // 2
    # Phase 2's average started from phase 1's final weights and differs from the raw end.
    raw = scores.raw_weights
    assert raw is not None and len(raw) == len(model.trainable_variables)
    assert any(not np.array_equal(a, b) for a, b in
               zip(raw, _values(model.trainable_variables)))
    with lent_weights(model, raw):
        for a, b in zip(raw, _values(model.trainable_variables)):
            np.testing.assert_array_equal(a, b)
    assert trainable_values(model)[0].shape == raw[0].shape


class _Weights:
    """A stand-in model whose ``save_weights`` writes its current tag."""

    tag = None

    def save_weights(self, path):
        with open(path, "w") as f:
            f.write(str(self.tag))


@pytest.mark.parametrize("rule,expected", [("source_val", 2), ("target_anchor", 4)])
def test_selection_picks_the_best_epoch_of_a_scripted_history(tmp_path, rule, expected):
    main, anchor = get_task("normals"), get_task("segmentation",
                                                                       num_classes=3)
    crit = criterion(rule, main, anchor)
    nan = float("nan")
    history = {1: (30.0, 0.20), 2: (25.0, 0.30), 3: (25.0, 0.31), 4: (27.0, 0.35),
               5: (nan, nan), 6: (26.0, 0.35)}  # ties keep the earlier epoch; NaN never wins
    best = BestCheckpoint(str(tmp_path / "selected"), crit)
    model = _Weights()
    for epoch, (source, miou) in history.items():
        model.tag = epoch
        best.offer(epoch, {"val_source_main_mean": source, "val_target_anchor_miou": miou},
                   model)
    assert best.state()["epoch"] == expected
    with open(best.weights_file()) as f:
        assert f.read() == str(expected)
    assert [n for n in os.listdir(tmp_path / "selected") if n.endswith(".h5")] == \
        [f"epoch-{expected}.weights.h5"]  # one extra weights file at most
    # keypoints: NME, lower is better
    crit = criterion("target_anchor", main, get_task("keypoints", num_keypoints=3))
    assert (crit.key, crit.higher_is_better) == ("val_target_anchor_nme", False)
    assert criterion("last", main, anchor) is None


def test_the_selection_scorer_never_reads_target_main_labels(data_dir, monkeypatch):
    import tensorflow as tf

    from tada_keras import data as data_module
    from tada_keras import inference
    from tada_keras.config import RunConfig

    cfg = RunConfig(source_dataset="sim2real_rooms/tiny", target_dataset="sim2real_rooms/tiny",
                    data_dir=data_dir, eval_batch_size=2)
    keras.utils.set_random_seed(0)
    model = tada_keras.build_model(anchor_task="segmentation",
                                   anchor_config={"num_classes": 12}, backbone="tiny",
                                   decoder_channels=16)
    spec = inference.data_spec(cfg, model)
    reference = inference.checkpoint_scorer(cfg, spec, model)(model)
    original = data_module.load_split
    poisoned_splits = []

    def poisoned(name, split, *args, **kwargs):
        ds = original(name, split, *args, **kwargs)
        if split != "target_val":
            return ds
        poisoned_splits.append(split)

        def poison(ex):  # a scorer that read these would score NaN / fail
            return dict(ex, normals=tf.fill(tf.shape(ex["normals"]), float("nan")),
                        normals_mask=tf.ones_like(ex["normals_mask"]))
        return ds.map(poison)

    monkeypatch.setattr(data_module, "load_split", poisoned)
    seen_labels = []
    evaluator = model.anchor.evaluator

    class Watched:
        def __init__(self):
            self.inner = evaluator()

        def update(self, outputs, labels):
            seen_labels.append(set(labels))
            self.inner.update(outputs, labels)

        def result(self):
            return self.inner.result()

    monkeypatch.setattr(model.anchor, "evaluator", Watched)
    main_evaluator = model.main.evaluator
    main_calls = []
    monkeypatch.setattr(model.main, "evaluator",
                        lambda: main_calls.append(1) or main_evaluator())
    scores = inference.checkpoint_scorer(cfg, spec, model)(model)
    assert poisoned_splits == ["target_val"]
    assert seen_labels and all(not ({"normals", "normals_mask"} & keys)
                               for keys in seen_labels)
    assert len(main_calls) == 1  # the source-val main evaluation only
    assert set(scores) == {"val_source_main_mean", "val_target_anchor_miou"}
    assert scores == reference and all(np.isfinite(v) for v in scores.values())


def _run(args, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m"] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, **kwargs)


def _train_args(model_dir, data_dir, *extra):
    return ["tada_keras.train", f"--flagfile={TINY}", f"--model_dir={model_dir}",
            f"--data_dir={data_dir}", "--method=headfreeze", "--steps=24",
            "--steps_per_epoch=2", "--deterministic", "--seed=3", "--ema_momentum=0.9",
            "--select=target_anchor", *extra]


@pytest.mark.skipif(not TENSORFLOW, reason="bit-exact resume is promised for TensorFlow")
def test_averaging_and_selection_resume_bit_identically_after_kill(data_dir, tmp_path):
    import time

    interrupted = str(tmp_path / "interrupted")
    proc = subprocess.Popen([sys.executable, "-m"] + _train_args(interrupted, data_dir),
                            cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = os.path.join(interrupted, "phase_phase2", "backup", "state.json")
    start, reached = time.time(), False
    while time.time() - start < 300 and proc.poll() is None and not reached:
        try:
            with open(state) as f:
                reached = json.load(f)["epoch"] >= 3
        except (OSError, ValueError, KeyError):
            time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert reached, "training finished or failed before it could be killed"
    resumed = _run(_train_args(interrupted, data_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    clean = str(tmp_path / "clean")
    proc = _run(_train_args(clean, data_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("final.weights.h5", "final.raw.weights.h5"):
        a = h5_arrays(os.path.join(clean, "phase_phase2", name))
        b = h5_arrays(os.path.join(interrupted, "phase_phase2", name))
        assert a.keys() == b.keys() and len(a) > 10
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}: {key}")
    metrics = [json.load(open(os.path.join(d, "metrics.json"))) for d in (clean, interrupted)]
    assert metrics[0]["target_test"] == metrics[1]["target_test"]
    assert metrics[0]["selection"] == metrics[1]["selection"]
    selected = metrics[0]["selection"]["selected"]
    assert selected["rule"] == "target_anchor" and 1 <= selected["epoch"] <= 6
    # The averaged and the raw weights are different models, both evaluated.
    assert metrics[0]["raw_weights"]["target_test"] != metrics[0]["target_test"]
    # The resume is on record; the clean run has none.
    prints = [json.load(open(os.path.join(d, "fingerprints.json"))) for d in (clean,
                                                                             interrupted)]
    assert prints[0]["resumes"] == [] and prints[1]["resumes"][0][-1]["phase"] == "phase2"
    assert prints[0]["initial_weights"] == prints[1]["initial_weights"]
    # The history holds every epoch's label-free scores (averaged and raw weights).
    with open(os.path.join(clean, "phase_phase2", "DONE")) as f:
        done = json.load(f)
    history = done["history"]
    assert done["optimizer_steps"] == 12  # all of the phase's steps, whichever was selected
    assert len(history["val_target_anchor_miou"]) == 6
    assert len(history["raw_val_source_main_mean"]) == 6
    assert max(history["val_target_anchor_miou"]) == pytest.approx(selected["score"])


def test_fingerprints_pair_methods_of_a_seed_and_separate_seeds(data_dir, tmp_path):
    def train(method, seed):
        model_dir = tmp_path / f"{method}_{seed}"
        proc = _run(["tada_keras.train", f"--flagfile={TINY}", f"--model_dir={model_dir}",
                     f"--data_dir={data_dir}", f"--method={method}", f"--seed={seed}"])
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.load(open(model_dir / "fingerprints.json"))

    from tada_keras.experiments.report import same_first_batch

    a, b, c = train("baseline", 0), train("mtl_both", 0), train("baseline", 1)
    assert a["initial_weights"] == b["initial_weights"] != c["initial_weights"]
    assert same_first_batch(a, b) and not same_first_batch(a, c)
    assert a["first_batch"]["source"]["segmentation"] == b["first_batch"]["source"][
        "segmentation"]
    assert a["datasets"]["target"]["splits"]["target_test"] == 3
    assert {"keras", "numpy"} <= set(a["libraries"]) and a["machine"]["cpu"]
    assert a["deterministic"] is False and a["resumes"] == []


def _harness(out, results, data_dir):
    return _run(["tada_keras.experiments", "--table=study_pretrained", f"--data={TINY}",
                 "--seeds=1", f"--out={out}", f"--results={results}", f"--data_dir={data_dir}",
                 "--rows=baseline,mtl_both", "--nofigures"])


def test_records_prove_pairing_and_a_copied_or_truncated_one_is_refused(data_dir, tmp_path):
    results = tmp_path / "records"
    proc = _harness(tmp_path / "out", results, data_dir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = sorted(results.rglob("seed_0.json"))
    assert len(records) == 2
    assert all(json.load(open(p))["fingerprints"]["initial_weights"] for p in records)
    # pairs, same initial weights, same first batches, no fingerprints, CPUs, commits
    assert "| MTL (+both) (a) − Baseline | 1 | 1 | 1 | 0 | 0 | 0 |" in proc.stdout
    baseline = next(p for p in records if p.parent.name == "baseline")
    other = next(p for p in records if p != baseline)
    shutil.copy(other, baseline)  # another method's record under baseline's name
    shutil.rmtree(tmp_path / "out")
    proc = _harness(tmp_path / "out", results, data_dir)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {baseline}: the record is not of the planned run")
    assert "method='mtl_both' (planned 'baseline')" in line
    baseline.write_text(other.read_text()[:200])  # truncated
    proc = _harness(tmp_path / "out", results, data_dir)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"error: {baseline}: not a readable run record (invalid JSON")
