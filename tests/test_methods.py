"""Every method trains with model.fit; HeadFreeze keeps its head bit-identical."""

import keras
import numpy as np
import pytest
from conftest import make_batch

import tada_keras
from tada_keras.training.phases import configure_phase, run_method


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
    ds = _dataset(x, y)
    histories = run_method(model, m, lambda p: ds, lambda p: 40,
                           lambda p: keras.optimizers.Adam(3e-3), verbose=0)
    assert set(histories) == {p.name for p in m.phases}
    for phase in m.phases:  # exactly the active loss groups are logged
        active = {g for g, w in phase.weights.as_dict().items() if w}
        assert set(histories[phase.name].history) == {"loss"} | active
    last = m.phases[-1]
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
                                  target_main=0)]
    assert w["mtl_src"][0]["source_anchor"] == 0.5 and w["mtl_src"][0]["target_anchor"] == 0
    assert w["mtl_tgt"][0]["target_anchor"] == 0.5 and w["mtl_tgt"][0]["source_anchor"] == 0
    assert w["headfreeze"] == [w["mtl_src"][0], w["mtl_both"][0]]
    assert w["oracle"][0]["target_main"] == 1
    hf = tada_keras.get_method("headfreeze").phases
    assert hf[0].head_trainable and not hf[1].head_trainable
