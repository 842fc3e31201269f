"""Every method trains with model.fit; HeadFreeze keeps its head bit-identical."""

import dataclasses
import json

import keras
import numpy as np
import pytest
from conftest import make_batch

import tada_keras
from tada_keras.training.phases import configure_phase, parse_phase_line, run_method


def _dataset(x, y):
    import tensorflow as tf

    return tf.data.Dataset.from_tensors((x, y)).repeat()


def _values(variables):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


@pytest.mark.parametrize("method", tada_keras.METHOD_NAMES)
def test_each_method_fits_a_tiny_batch(tiny_model, method):
    keras.utils.set_random_seed(0)
    model = tiny_model()
    x, y = make_batch(seed=7)
    m = tada_keras.get_method(method)
    if any(p.weights.uses_pseudo for p in m.phases):
        from tada_keras.training.teacher import SelfTraining

        # Self-training: the teacher's weak view (here the batch image itself); a faster
        # teacher than the default m = 0.999, which would stay at the random
        # initialisation over these 40 steps (the student is pulled towards it).
        y["pseudo_weak"] = x.copy()
        model.self_training = SelfTraining(momentum=0.9)
    ds = _dataset(x, y)
    lines = []
    histories = run_method(model, m, lambda p: ds, lambda p: 40,
                           lambda p: keras.optimizers.Adam(3e-3), verbose=0, log=lines.append)
    assert set(histories) == {p.name for p in m.phases}
    # The harness follows a run by these lines (parse_phase_line reads what run_method logs).
    assert [parse_phase_line(line) for line in lines] == [(p.name, "started")
                                                          for p in m.phases]
    assert parse_phase_line("[phase2] skipped (0 steps; ...)") == ("phase2", "skipped")
    assert parse_phase_line("[train] already complete, loading x") == ("train", "done")
    assert parse_phase_line("Epoch 1/3") is None
    for phase in m.phases:  # exactly the active loss groups are logged
        active = {g for g, w in phase.weights.as_dict().items() if w}
        kept = {"pseudo_kept"} if phase.weights.uses_pseudo else set()
        assert set(histories[phase.name].history) == {"loss"} | active | kept
    # Compared without the pseudo-label group (a fresh model has no teacher).
    last = dataclasses.replace(m.phases[-1], weights=dataclasses.replace(
        m.phases[-1].weights, target_main_pseudo=0.0))
    model.set_loss_weights(last.weights)
    after = float(keras.ops.convert_to_numpy(model.weighted_loss(y, model(x))[0]))
    fresh = tiny_model()
    fresh.set_loss_weights(last.weights)
    keras.utils.set_random_seed(0)
    initial = float(keras.ops.convert_to_numpy(fresh.weighted_loss(y, fresh(x))[0]))
    assert after < 0.8 * initial, (method, initial, after)


def test_headfreeze_head_bit_identical_and_encoder_changes(tiny_model):
    keras.utils.set_random_seed(1)
    model = tiny_model()
    x, y = make_batch(seed=8)
    ds = _dataset(x, y)
    method = tada_keras.get_method("headfreeze")
    phase1, phase2 = method.phases
    configure_phase(model, phase1, keras.optimizers.Adam(1e-2))
    model.fit(ds, steps_per_epoch=5, epochs=1, verbose=0)
    head_before = _values(model.head.weights)
    enc_before = _values(model.encoder.weights)
    bn_stats = [w for w in model.head.weights if "moving" in w.path]
    assert len(bn_stats) == 2  # up3_bn moving mean and variance are part of the check

    configure_phase(model, phase2, keras.optimizers.Adam(1e-2))
    assert not model.head.trainable and len(model.head.trainable_weights) == 0
    model.fit(ds, steps_per_epoch=5, epochs=1, verbose=0)
    for before, after in zip(head_before, _values(model.head.weights)):
        assert np.array_equal(before, after)
    changed = [not np.array_equal(b, a) for b, a in zip(enc_before,
                                                        _values(model.encoder.weights))]
    assert sum(changed) > len(changed) // 2
    # Target anchor loss is on in phase 2 (MTL(+both)).
    assert model.loss_weights_map["target_anchor"] > 0


def test_balanced_weights_equalise_initial_magnitudes(tiny_model):
    from tada_keras.training.phases import balance_loss_weights

    model = tiny_model()
    x, y = make_batch(seed=9)
    weights = tada_keras.get_method("mtl_both").phases[0].weights
    balanced = balance_loss_weights(model, x, y, weights)
    model.set_loss_weights(balanced)
    _, groups = model.weighted_loss(y, model(x))
    main = float(keras.ops.convert_to_numpy(groups["source_main"]))
    for g in ("source_anchor", "target_anchor"):
        scaled = balanced.as_dict()[g] * float(keras.ops.convert_to_numpy(groups[g]))
        assert scaled == pytest.approx(main, rel=1e-4)


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown method 'mtl_all'.*headfreeze"):
        tada_keras.get_method("mtl_all")
    with pytest.raises(ValueError, match="anchor_weight"):
        tada_keras.get_method("mtl_src", anchor_weight=-1)


def test_method_table_matches_the_paper():
    w = {m: [p.weights.as_dict() for p in tada_keras.get_method(m, 0.5).phases]
         for m in tada_keras.METHOD_NAMES}
    assert w["baseline"] == [dict(source_main=1, source_anchor=0, target_anchor=0,
                                  target_main=0, target_main_pseudo=0)]
    assert w["mtl_src"][0]["source_anchor"] == 0.5 and w["mtl_src"][0]["target_anchor"] == 0
    assert w["mtl_tgt"][0]["target_anchor"] == 0.5 and w["mtl_tgt"][0]["source_anchor"] == 0
    assert w["headfreeze"] == [w["mtl_src"][0], w["mtl_both"][0]]
    assert w["oracle"][0]["target_main"] == 1
    hf = tada_keras.get_method("headfreeze").phases
    assert hf[0].head_trainable and not hf[1].head_trainable


def test_mixed_bfloat16_trains_in_bf16_with_float32_weights_and_outputs(tiny_model):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(0)
        model = tiny_model()
    finally:
        keras.config.set_dtype_policy(previous)
    convs = [layer for layer in model._flatten_layers()
             if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    # Every convolution, the task outputs included, computes in bf16 ...
    assert convs and {layer.compute_dtype for layer in convs} == {"bfloat16"}
    assert {v.dtype for v in model.weights} == {"float32"}
    x, y = make_batch(seed=3)
    out = model(x)
    # ... and the outputs the losses and users see are float32.
    assert {keras.backend.standardize_dtype(v.dtype) for v in out.values()} == {"float32"}
    ds = _dataset(x, y)
    for phase in tada_keras.get_method("headfreeze").phases:
        configure_phase(model, phase, keras.optimizers.Adam(3e-3))
        losses = model.fit(ds, epochs=3, steps_per_epoch=8, verbose=0).history["loss"]
        assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], (phase.name, losses)


def test_dtype_policy_flag_builds_the_run_model_in_bf16_and_restores_the_policy(monkeypatch):
    from tada_keras import run

    monkeypatch.setattr(run, "task_configs", lambda cfg: ({}, {"num_classes": 5}))
    before = keras.config.dtype_policy().name
    cfg = run.RunConfig(model_dir="unused", backbone="tiny", decoder_channels=16,
                        dtype_policy="mixed_bfloat16")
    model = run.build_run_model(cfg)
    assert keras.config.dtype_policy().name == before  # nothing else in the process changes
    assert model.get_layer("head").get_layer("segmentation").compute_dtype == "bfloat16"
    plain = run.build_run_model(run.RunConfig(model_dir="unused", backbone="tiny",
                                              decoder_channels=16))
    assert plain.get_layer("head").get_layer("segmentation").compute_dtype == "float32"


@pytest.mark.parametrize("flags,expected", [
    ({"fpu", "avx2", "fma"}, "without bf16 instructions"),
    ({"avx2", "avx512f", "avx512_bf16"}, "AVX512-BF16 but no AMX"),
    ({"avx512_bf16", "amx_bf16", "amx_tile"}, None)])
def test_a_bf16_policy_warns_on_a_cpu_where_it_is_slower(monkeypatch, flags, expected):
    from tada_keras import backend

    monkeypatch.setattr(backend, "cpu_flags", lambda: flags)
    monkeypatch.setattr(backend, "accelerator_visible", lambda: False)
    warning = backend.bf16_warning("mixed_bfloat16")
    if expected is None:
        assert warning is None
    else:
        assert warning.startswith("warning: --dtype_policy=mixed_bfloat16") and \
            expected in warning and "float32" in warning and "\n" not in warning
    assert backend.bf16_warning("float32") is None
    monkeypatch.setattr(backend, "accelerator_visible", lambda: True)
    assert backend.bf16_warning("mixed_bfloat16") is None


def test_a_bf16_run_reloads_in_bf16_with_the_same_predictions(monkeypatch, tmp_path):
    # Issue 30: TadaModel.get_config left out the dtype policy, so evaluate/predict
    # rebuilt a mixed_bfloat16 model in float32.
    from tada_keras import run
    from tada_keras.inference import load_run

    monkeypatch.setattr(run, "task_configs", lambda cfg: ({}, {"num_classes": 5}))
    cfg = run.RunConfig(model_dir=str(tmp_path), backbone="tiny", decoder_channels=16,
                        dtype_policy="mixed_bfloat16")
    keras.utils.set_random_seed(0)
    model = run.build_run_model(cfg)
    x, y = make_batch(seed=3)
    configure_phase(model, tada_keras.get_method("baseline").phases[0],
                    keras.optimizers.Adam(1e-3))
    model.fit(_dataset(x, y), epochs=1, steps_per_epoch=2, verbose=0)
    model.save(tmp_path / "model.keras")
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(cfg)))
    _, loaded = load_run(str(tmp_path))
    assert keras.config.dtype_policy().name == "float32"  # loading changed nothing global
    assert loaded.dtype_policy.name == "mixed_bfloat16"
    convs = [layer for layer in loaded._flatten_layers()
             if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    assert convs and {layer.compute_dtype for layer in convs} == {"bfloat16"}
    before, after = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)


def test_resolved_method_carries_steps_and_round_trips_through_config_json():
    from tada_keras.config import RunConfig, method_of_config
    from tada_keras.methods import Method

    cfg = RunConfig(model_dir="unused", method="headfreeze", steps=300, phase1_fraction=0.2,
                    steps_per_epoch=10, anchor_weight=0.5)
    method = cfg.resolved_method()
    assert method.steps == {"phase1": 60, "phase2": 240}
    assert [p.head_trainable for p in method.phases] == [True, False]
    assert method.phases[1].weights.target_anchor == 0.5  # λ resolved too
    saved = json.loads(json.dumps({**dataclasses.asdict(cfg),
                                   "resolved_method": method.as_dict()}))
    assert Method.from_dict(saved["resolved_method"]) == method
    assert method_of_config(saved) == method
    # A config.json written before resolved_method existed resolves by the same rule...
    old = {k: v for k, v in saved.items() if k != "resolved_method"}
    assert method_of_config(old) == method
    # ... and the recorded one wins over a rebuild (it is what the run trained).
    saved["resolved_method"]["phases"][0]["steps"] = 1
    assert method_of_config(saved).steps["phase1"] == 1
    protocol_b = RunConfig(model_dir="unused", method="headfreeze", steps=100,
                           phase1_steps=0, init_from=__file__)
    assert protocol_b.resolved_method().steps == {"phase1": 0, "phase2": 100}
