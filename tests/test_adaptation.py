"""Unsupervised DA (DANN, Tsai et al.): signs, routing, levels, HeadFreeze, errors, CLI.

Every test here runs on TensorFlow, JAX and PyTorch (backend matrix).
"""

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import make_batch

import tada_keras
from tada_keras.adaptation import (
    TARGET_DOMAIN_LABEL,
    AdversarialOptimizer,
    adversarial_weight,
    discriminator_loss,
    domain_accuracy,
    generator_loss,
    parse_levels,
)
from tada_keras.adaptation import config as da_config
from tada_keras.layers.gradient_reversal import dann_lambda
from tada_keras.methods import LossWeights
from tada_keras.run import RunConfig, train_run, validate
from tada_keras.training.callbacks import ResumableCheckpoint
from tada_keras.training.phases import configure_phase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.flags")
ALL_LEVELS = "layer-3,layer-4,up-1,up-3,out"


def _np(v):
    return np.array(keras.ops.convert_to_numpy(v))


def _values(variables):
    return [_np(v) for v in variables]


def _cfg(**kwargs):
    defaults = dict(model_dir="unused", da="dann", disc_layers=3, disc_filters=8, steps=100,
                    steps_per_epoch=10)
    return RunConfig(**dict(defaults, **kwargs))


def _adapted(tiny_model, seed=0, **cfg_kwargs):
    keras.utils.set_random_seed(seed)
    model = tiny_model()
    da_config.attach(model, _cfg(**cfg_kwargs))
    return model


def _compile(model, network, discriminator, weights=None, run_eagerly=False):
    # Op by op: the steps are identical; tracing/XLA would only cost test time (the CLI
    # test trains compiled).
    model.set_loss_weights(weights or tada_keras.get_method("mtl_both").phases[0].weights)
    model.compile(optimizer=AdversarialOptimizer(network, discriminator,
                                                 model.adaptation.trainable_variables),
                  run_eagerly=run_eagerly)


def _terms(model, x, y):
    _, terms = model.adversarial_objective(x, y)
    return {k: float(_np(terms[k])) for k in ("disc_loss", "adv_loss")}


# --- losses and label convention -----------------------------------------------------

def test_label_convention_and_loss_signs():
    assert TARGET_DOMAIN_LABEL == 1.0  # documented in docs/domain_adaptation.md
    is_target = np.array([0, 0, 1, 1], "float32")
    zeros = np.zeros((4, 2, 2, 1), "float32")
    assert float(_np(discriminator_loss(zeros, is_target))) == pytest.approx(math.log(2))
    # A discriminator that is right everywhere: large positive logits on target.
    right = np.where(is_target[:, None, None, None] > 0, 8.0, -8.0) * np.ones_like(zeros)
    assert float(_np(discriminator_loss(right, is_target))) < 1e-3
    assert float(_np(discriminator_loss(-right, is_target))) > 7.9
    acc_s, acc_t = domain_accuracy(right, is_target)
    assert float(_np(acc_s)) == 1.0 and float(_np(acc_t)) == 1.0
    acc_s, acc_t = domain_accuracy(-right, is_target)
    assert float(_np(acc_s)) == 0.0 and float(_np(acc_t)) == 0.0
    # Tsai's generator loss is low when D calls target patches "source" (fooled) and
    # ignores source examples entirely.
    fooled = -right
    assert float(_np(generator_loss(fooled, is_target))) < 1e-3
    assert float(_np(generator_loss(right, is_target))) > 7.9
    source_changed = np.where(is_target[:, None, None, None] > 0, fooled, 100.0)
    assert float(_np(generator_loss(source_changed, is_target))) < 1e-3
    # The loss is balanced by domain: 3 source + 1 target weigh like 2 + 2.
    unbalanced = np.array([0, 0, 0, 1], "float32")
    logits = np.where(unbalanced[:, None, None, None] > 0, 8.0, 0.0) * np.ones_like(zeros)
    expected = 0.5 * (math.log(2) + math.log1p(math.exp(-8.0)))
    assert float(_np(discriminator_loss(logits, unbalanced))) == pytest.approx(expected,
                                                                               rel=1e-5)


def test_label_noise_moves_labels_towards_one_half():
    is_target = np.array([0, 1], "float32")
    right = np.array([-8.0, 8.0], "float32").reshape(2, 1, 1, 1) * np.ones((2, 4, 4, 1))
    clean = float(_np(discriminator_loss(right, is_target)))
    noisy = float(_np(discriminator_loss(right, is_target, 0.3,
                                         keras.random.SeedGenerator(1))))
    assert noisy > clean + 0.5  # a confident, correct D is penalised by noisy labels


def test_lambda_schedule_matches_dann_lambda_and_warmup():
    for step in (1, 25, 60, 100):
        got = float(_np(adversarial_weight(step, 0.5, "ramp", 10.0, 0, 100)))
        assert got == pytest.approx(0.5 * dann_lambda(step / 100), rel=1e-5)
    assert float(_np(adversarial_weight(20, 0.5, "ramp", 10.0, 20, 100))) == 0.0
    got = float(_np(adversarial_weight(60, 0.5, "ramp", 10.0, 20, 100)))
    assert got == pytest.approx(0.5 * dann_lambda(40 / 80), rel=1e-5)
    assert float(_np(adversarial_weight(10, 2.0, "constant", warmup_steps=10))) == 0.0
    assert float(_np(adversarial_weight(11, 2.0, "constant", warmup_steps=10))) == 2.0


# --- training steps on every backend ---------------------------------------------------

@pytest.mark.parametrize("da,levels", [("dann", "layer-4,up-3,out"), ("tsai", "out")])
def test_discriminator_step_lowers_and_network_step_raises_disc_loss(tiny_model, da, levels):
    x, y = make_batch(seed=3)
    # One discriminator update (the network's learning rate is 0).
    model = _adapted(tiny_model, da=da, da_levels=levels, da_weight=1.0)
    _compile(model, keras.optimizers.SGD(0.0), keras.optimizers.Adam(1e-3))
    network = model.encoder.trainable_weights + model.head.trainable_weights
    network_before = _values(network)
    before = _terms(model, x, y)
    model.train_on_batch(x, y)
    after = _terms(model, x, y)
    assert after["disc_loss"] < before["disc_loss"], (before, after)
    for a, b in zip(network_before, _values(network)):
        assert np.array_equal(a, b)  # the network did not move

    # One network update against the discriminator (discriminator rate 0, no task loss).
    model = _adapted(tiny_model, da=da, da_levels=levels, da_weight=1.0)
    _compile(model, keras.optimizers.Adam(1e-3), keras.optimizers.SGD(0.0), LossWeights())
    disc_before = _values(model.adaptation.trainable_variables)
    before = _terms(model, x, y)
    model.train_on_batch(x, y)
    after = _terms(model, x, y)
    assert after["disc_loss"] > before["disc_loss"], (before, after)
    if da == "tsai":  # the non-saturating loss the network minimises went down
        assert after["adv_loss"] < before["adv_loss"], (before, after)
    for a, b in zip(disc_before, _values(model.adaptation.trainable_variables)):
        assert np.array_equal(a, b)  # the discriminators did not move


def test_dann_with_zero_lambda_gives_the_no_adaptation_update(tiny_model):
    """λ = 0: the network's update is bit-identical to training without DA (every level
    tapped, so every reversed gradient path is there and contributes exactly -0)."""
    x, y = make_batch(seed=4)
    keras.utils.set_random_seed(5)
    plain = tiny_model()
    adapted = tiny_model()
    adapted.set_weights(plain.get_weights())
    da_config.attach(adapted, _cfg(da_levels=ALL_LEVELS, da_weight=0.0))
    weights = tada_keras.get_method("mtl_both").phases[0].weights
    plain.set_loss_weights(weights)
    plain.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=True)
    # Op by op (both): two different graphs could fuse differently under XLA.
    _compile(adapted, keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.1), weights,
             run_eagerly=True)
    n = len(plain.weights)
    assert [w.shape for w in adapted.weights[:n]] == [w.shape for w in plain.weights]
    disc_before = _values(adapted.adaptation.trainable_variables)
    for _ in range(2):
        a = plain.train_on_batch(x, y, return_dict=True)
        b = adapted.train_on_batch(x, y, return_dict=True)
        assert float(a["loss"]) == float(b["loss"])
    changed = 0
    for w_plain, w_adapted in zip(_values(plain.weights), _values(adapted.weights[:n])):
        np.testing.assert_array_equal(w_plain, w_adapted)
        changed += 1
    assert changed == n
    # ... while the discriminators did train.
    assert any(not np.array_equal(u, v) for u, v in
               zip(disc_before, _values(adapted.adaptation.trainable_variables)))


def _dataset(x, y):
    import tensorflow as tf

    return tf.data.Dataset.from_tensors((x, y)).repeat()


def test_headfreeze_phase2_with_da_keeps_head_bit_identical(tiny_model):
    x, y = make_batch(seed=8)
    ds = _dataset(x, y)
    cfg = _cfg(da="dann", da_levels="up-3,out", disc_optimizer="sgd")
    model = _adapted(tiny_model, seed=1, da="dann", da_levels="up-3,out")
    phase1, phase2 = tada_keras.get_method("headfreeze").phases
    opt = da_config.make_optimizer
    # Op by op to save test time; the CLI test trains HeadFreeze + DANN compiled.
    configure_phase(model, phase1, opt(cfg, model, keras.optimizers.Adam(1e-2)))
    model.run_eagerly = True
    model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
    head = _values(model.head.weights)
    encoder = _values(model.encoder.weights)
    disc = _values(model.adaptation.trainable_variables)
    assert any("moving" in w.path for w in model.head.weights)

    configure_phase(model, phase2, opt(cfg, model, keras.optimizers.Adam(1e-2)))
    model.run_eagerly = True
    assert not model.head.trainable_weights
    history = model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
    assert "disc_acc_target" in history.history
    for before, after in zip(head, _values(model.head.weights)):
        assert np.array_equal(before, after)
    assert sum(not np.array_equal(b, a)
               for b, a in zip(encoder, _values(model.encoder.weights))) > len(encoder) // 2
    assert all(not np.array_equal(b, a)  # the discriminators keep training in phase 2
               for b, a in zip(disc, _values(model.adaptation.trainable_variables)))
    assert int(_np(model.adaptation.step)) == 6  # the λ schedule spans both phases


class _BatchLogs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append({k: float(_np(v)) for k, v in (logs or {}).items()})


def test_keras_train_step_logs_raw_steps_and_epoch_means(tiny_model):
    """Keras's own (compiled) train step carries the adaptation: batch logs hold each
    step's raw discriminator values, the epoch logs their means, the logged loss is what
    the network pays (task + λ · adversarial), and no helper metric leaks into history."""
    x, y = make_batch(seed=10)
    model = _adapted(tiny_model, da="dann", da_levels="layer-4,out")
    _compile(model, keras.optimizers.Adam(1e-2), keras.optimizers.SGD(0.5))
    # The first step's forward pass, beforehand (training mode: batch statistics, so the
    # moving statistics it updates do not matter; the step counter is put back).
    objective, terms = model.adversarial_objective(x, y)
    expected_first = float(_np(terms["loss"]))
    assert abs(float(_np(objective)) - expected_first) > 0.1  # the two differ here
    model.adaptation.step.assign(0)
    logger = _BatchLogs()
    history = model.fit(_dataset(x, y), steps_per_epoch=4, epochs=1, verbose=0,
                        callbacks=[logger])
    raw = [b["disc_loss"] for b in logger.batches]
    assert len(raw) == 4 and len(set(raw)) == 4  # raw per step, not a running mean
    assert history.history["disc_loss"][0] == pytest.approx(np.mean(raw), rel=1e-5)
    assert history.history["da_lambda"][0] == pytest.approx(
        np.mean([b["da_lambda"] for b in logger.batches]), rel=1e-6)
    assert not [k for k in history.history if k.endswith("_latest")]
    assert not [k for k in logger.batches[0] if k.endswith("_latest")]
    # Step 1's logged loss is the network's loss, not the differentiated objective.
    assert logger.batches[0]["loss"] == pytest.approx(expected_first, rel=1e-4)
    assert int(_np(model.adaptation.step)) == 4


def test_checkpoint_holds_discriminators_and_their_optimizer(tiny_model, tmp_path):
    x, y = make_batch(seed=9)
    model = _adapted(tiny_model, da="tsai")
    _compile(model, keras.optimizers.Adam(1e-3), keras.optimizers.SGD(0.1, momentum=0.9))
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)
    checkpoint = ResumableCheckpoint(str(tmp_path / "backup"))
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0)

    fresh = _adapted(tiny_model, seed=3, da="tsai")
    _compile(fresh, keras.optimizers.Adam(1e-3), keras.optimizers.SGD(0.1, momentum=0.9))
    assert checkpoint.restore(fresh) == 1
    for a, b in zip(_values(model.adaptation.weights), _values(fresh.adaptation.weights)):
        np.testing.assert_array_equal(a, b)
    disc_slots = fresh.optimizer.discriminator.variables
    assert any(float(np.abs(_np(v)).sum()) > 0 for v in disc_slots if "momentum" in v.path)
    for a, b in zip(_values(model.optimizer.variables), _values(fresh.optimizer.variables)):
        np.testing.assert_array_equal(a, b)
    assert int(_np(fresh.adaptation.step)) == 2


# --- levels ------------------------------------------------------------------------------

@pytest.mark.parametrize("freeze_after", ["up-1", "up-3"])
def test_discriminators_are_built_exactly_at_the_named_levels(tiny_model, freeze_after):
    keras.utils.set_random_seed(0)
    model = tiny_model(freeze_after=freeze_after)
    levels = "layer-3,up-1,up-3,out"
    da = da_config.attach(model, _cfg(da_levels=levels, disc_layers=3))
    assert list(da.discriminators) == levels.split(",")
    x, _ = make_batch(size=64)
    features = model.feature_model(["layer-3", "up-1", "up-3"])(x)["features"]
    # tiny backbone: C4 has 64 channels; up-1 is at stride 16, up-3 at 4; width 16.
    expected = {"layer-3": (4, 4, 4, 64), "up-1": (4, 4, 4, 16), "up-3": (4, 16, 16, 16)}
    assert {k: tuple(v.shape) for k, v in features.items()} == expected
    inputs = dict(features, out=model(x)["normals"])
    assert tuple(inputs["out"].shape) == (4, 32, 32, 3)
    for level, d in da.discriminators.items():
        assert d.input_channels == inputs[level].shape[-1]
        logits = d(inputs[level])
        # Three stride-2 convolutions: 1/8 of the input, at least one patch.
        side = max(inputs[level].shape[1] // 8, 1)
        assert tuple(logits.shape) == (4, side, side, 1), level
    assert len(da.discriminators["out"].layers) == 1 + 2 * 2 + 1  # input, 2x(conv, lrelu), conv
    # The adaptation's variables are exactly its discriminators' (+ λ, step, seed).
    n_disc = sum(len(d.trainable_variables) for d in da.discriminators.values())
    assert len(da.trainable_variables) == n_disc


def test_default_levels_follow_the_paper():
    assert parse_levels("auto", "dann") == ("layer-4",)
    assert parse_levels("auto", "tsai") == ("out",)
    assert parse_levels(" up-3 , layer-4,up-3", "dann") == ("up-3", "layer-4")


def test_batchnorm_and_noise_discriminator_variant(tiny_model):
    model = _adapted(tiny_model, da="dann", da_levels="layer-4", disc_layers=2,
                     disc_batchnorm=True, disc_noise=0.1, disc_label_noise=0.1)
    d = model.adaptation.discriminators["layer-4"]
    names = [layer.__class__.__name__ for layer in d.layers]
    assert names == ["InputLayer", "GaussianNoise", "Conv2D", "BatchNormalization",
                     "LeakyReLU", "GaussianNoise", "Conv2D"]
    x, y = make_batch(seed=2)
    _compile(model, keras.optimizers.Adam(1e-3), keras.optimizers.SGD(1e-2))
    logs = model.train_on_batch(x, y, return_dict=True)
    assert all(np.isfinite(float(v)) for v in logs.values())


# --- bad input -----------------------------------------------------------------------------

def test_unknown_level_is_a_clear_error():
    with pytest.raises(ValueError, match=r"--da_levels.*layer-5.*layer-3.*layer-4.*out"):
        parse_levels("layer-4,layer-5", "dann")
    with pytest.raises(ValueError, match="--da_levels"):
        validate(_cfg(model_dir="x", da_levels="encoder"))


@pytest.mark.parametrize("kwargs,needle", [
    (dict(da="dann", batch_target=0, method="baseline"),
     "--da=dann needs target.*--batch_target=0"),
    (dict(da="tsai", bn_exposure=False, method="headfreeze"),
     "--da=tsai needs target.*--method=headfreeze.*--bn_exposure=false"),
    (dict(da="gan"), "--da='gan'"),
    (dict(da="dann", da_warmup_steps=100), "--da_warmup_steps"),
    (dict(da="tsai", disc_label_noise=0.5), "--disc_label_noise"),
    (dict(da="dann", disc_optimizer="rmsprop"), "--disc_optimizer"),
])
def test_bad_da_settings_fail_in_validate_before_writing(tmp_path, kwargs, needle):
    model_dir = tmp_path / "never"
    cfg = _cfg(**dict(kwargs, model_dir=str(model_dir)))
    with pytest.raises(ValueError, match=needle):
        validate(cfg)
    with pytest.raises(ValueError, match=needle):
        train_run(cfg)
    assert not model_dir.exists()


def test_target_images_without_da_flags_stay_valid():
    validate(_cfg(model_dir="x", da="none", batch_target=0, method="baseline"))
    validate(_cfg(model_dir="x", da="dann", bn_exposure=False, method="mtl_both"))


# --- CLI ---------------------------------------------------------------------------------

def test_cli_trains_with_dann_and_tsai_and_reports_the_discriminator(data_dir, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    runs = {
        # HeadFreeze (tiny.flags' method): DA in both phases, the head frozen in phase 2.
        "dann": ["--da=dann", "--da_levels=layer-4,out", "--monitor_every=1"],
        "tsai": ["--da=tsai", "--method=mtl_both", "--monitor_every=3",
                 "--disc_optimizer=adam", "--disc_batchnorm"],
    }
    procs = {}
    for name, args in runs.items():  # both at once: most of the time is start-up
        cmd = [sys.executable, "-m", "tada_keras.train", f"--flagfile={TINY}",
               f"--model_dir={tmp_path / name}", f"--data_dir={data_dir}"] + args
        procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        assert "[discriminator] step" in out
        model_dir = tmp_path / name
        with open(model_dir / "metrics.json") as f:
            metrics = json.load(f)
        disc = metrics["discriminator"]
        assert disc["method"] == name
        assert 0.0 <= disc["fraction_below_55"] <= 1.0
        for domain in ("source", "target", "balanced"):
            assert 0.0 <= disc["accuracy"][domain]["mean"] <= 1.0
        rows = (model_dir / "discriminator_monitor.csv").read_text().strip().splitlines()
        if name == "dann":
            assert disc["levels"] == ["layer-4", "out"] and disc["weight"] == 1.0
            assert disc["logged_steps"] == 4 and len(rows) == 5  # header + steps 1..4
            assert [r.split(",")[1] for r in rows[1:]] == ["phase1"] * 2 + ["phase2"] * 2
        else:
            assert disc["levels"] == ["out"] and disc["weight"] == 0.001
            assert disc["disc_optimizer"] == "adam" and disc["disc_learning_rate"] == 1e-4
            assert disc["logged_steps"] == 2  # step 3, then the last (shorter) window
        assert os.listdir(model_dir / "logs" / "discriminator")
        assert (model_dir / "figures" / "discriminator_monitor.png").exists()
        # The saved network is the TADA network alone (no discriminators, plain optimizer).
        loaded = keras.saving.load_model(model_dir / "model.keras")
        assert getattr(loaded, "adaptation", None) is None
        assert not any("discriminator" in w.path for w in loaded.weights)


def test_monitor_figure_marks_the_phase_boundary_and_keeps_the_lambda_axis(tmp_path):
    import csv as csv_module

    from PIL import Image

    from tada_keras.adaptation import monitor as M

    path = tmp_path / "monitor.csv"
    with open(path, "w", newline="") as f:
        writer = csv_module.DictWriter(f, fieldnames=M.COLUMNS)
        writer.writeheader()
        for step in range(10, 210, 10):
            writer.writerow({"step": step, "phase": "phase1" if step <= 100 else "phase2",
                             "window": 10, "da_lambda": min(1.0, step / 100),
                             "disc_loss": 0.6, "adv_loss": 0.7, "accuracy_source": 0.6,
                             "accuracy_target": 0.5, "accuracy": 0.55})
    import matplotlib.pyplot as plt

    drawn = {}
    real_savefig = plt.Figure.savefig

    def spy(fig, *args, **kwargs):
        ax = fig.axes[0]
        drawn["vlines"] = [line.get_xdata()[0] for line in ax.get_lines()
                           if line.get_linestyle() == "-."]
        drawn["legend"] = [t.get_text() for t in ax.get_legend().get_texts()]
        drawn["right_label"] = fig.axes[1].get_ylabel()
        drawn["tight"] = kwargs.get("bbox_inches")
        return real_savefig(fig, *args, **kwargs)

    plt.Figure.savefig = spy
    try:
        M.plot_monitor(str(path), str(tmp_path / "monitor.png"), warmup_steps=50, title="t")
    finally:
        plt.Figure.savefig = real_savefig
    assert drawn["vlines"] == [100]  # the last phase-1 step
    assert "phase1 | phase2" in drawn["legend"] and "λ (right axis)" in drawn["legend"]
    assert "λ" in drawn["right_label"] and drawn["tight"] == "tight"
    with Image.open(tmp_path / "monitor.png") as image:
        assert image.size[0] > 800  # the right axis and its label are inside the image
