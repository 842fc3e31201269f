"""Self-training (issue 28): the EMA teacher, the pseudo-label loss, its confidence masks,
the methods as data, the strong view, and resume with a teacher."""

import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import NUM_CLASSES, h5_arrays, make_batch, random_normals

import tada_keras
from tada_keras import conventions as C
from tada_keras.backend import value_and_gradients
from tada_keras.training.phases import configure_phase, run_method
from tada_keras.training.teacher import SelfTraining, network_variables, pseudo_loss

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.flags")


def _np(v):
    return np.array(keras.ops.convert_to_numpy(v))


def _dataset(x, y):
    import tensorflow as tf

    return tf.data.Dataset.from_tensors((x, y)).repeat()


def _st_batch(seed=0, **kwargs):
    x, y = make_batch(seed=seed, **kwargs)
    y[C.PSEUDO_WEAK] = x[::-1].copy()  # any image: the teacher's view
    return x, y


def test_teacher_ema_matches_the_closed_form(tiny_model):
    keras.utils.set_random_seed(0)
    model = tiny_model()
    m = 0.6
    model.self_training = SelfTraining(momentum=m, rampup=0.0)
    phase = tada_keras.get_method("self_training").phases[0]
    configure_phase(model, phase, keras.optimizers.Adam(1e-2))
    teacher_vars = network_variables(model.teacher.network)
    student = [[_np(v) for v in network_variables(model)]]
    # Started from the student's weights, as copies (never the same variables).
    for t, s in zip(teacher_vars, student[0]):
        np.testing.assert_array_equal(_np(t), s)
    assert not {id(v) for v in teacher_vars} & {id(v) for v in model.trainable_variables}
    x, y = _st_batch(seed=1)
    ds = _dataset(x, y)
    for _ in range(3):  # one optimizer step per fit
        model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0)
        student.append([_np(v) for v in network_variables(model)])
    # θ'_t = θ'_{t-1} + (1 - m)(θ_{t-1} - θ'_{t-1}), θ'_0 = θ_0, applied at step t with
    # θ_{t-1} the student after optimizer step t-1; batch-norm moving statistics are not
    # the optimizer's: they are read after step t's forward pass has updated them.
    trainable = [v.trainable for v in network_variables(model)]
    assert 0 < sum(trainable) < len(trainable)
    expected = [s.astype(np.float64) for s in student[0]]
    for step in range(1, 4):
        expected = [e + (1 - m) * (s_prev - e) if t else e + (1 - m) * (s_now - e)
                    for e, s_prev, s_now, t in zip(expected, student[step - 1],
                                                   student[step], trainable)]
    changed = 0
    for t, e, s0 in zip(teacher_vars, expected, student[0]):
        np.testing.assert_allclose(_np(t), e, rtol=1e-5, atol=1e-6, err_msg=t.path)
        changed += not np.array_equal(_np(t), s0)
    assert changed > len(teacher_vars) // 2  # the student moved, so did the teacher
    assert float(_np(model.teacher.step)) == 3.0


def test_no_gradient_reaches_the_teacher(tiny_model):
    model = tiny_model()
    model.self_training = SelfTraining(rampup=0.0)
    model.set_loss_weights(tada_keras.LossWeights(target_main_pseudo=1.0))
    model.attach_teacher()
    x, y = _st_batch(seed=2)
    y_pred = {k: _np(v) for k, v in model(x).items()}

    def loss(weak, normals):
        labels = dict(y, **{C.PSEUDO_WEAK: weak})
        return model.weighted_loss(labels, dict(y_pred, normals=normals))[0]

    value, (g_weak, g_student) = value_and_gradients(loss, [y[C.PSEUDO_WEAK],
                                                            y_pred["normals"]])
    assert np.isfinite(value) and value > 0
    assert np.all(g_weak == 0)  # the teacher's input (and so its weights) get nothing
    assert np.abs(g_student).sum() > 0
    assert not model.teacher.network.trainable_variables


def test_a_teacher_leaves_the_students_step_unchanged(tiny_model):
    """With a negligible pseudo weight, the student trains as without a teacher (on
    PyTorch, duplicate variable paths once hid student parameters from zero_grad)."""
    x, y = _st_batch(seed=4)
    trained = []
    for pseudo in (0.0, 1e-9):
        keras.utils.set_random_seed(0)
        model = tiny_model()
        if pseudo:
            model.attach_teacher(SelfTraining(momentum=0.9, rampup=0.0))
        paths = [v.path for v in model.weights]
        assert len(paths) == len(set(paths))
        model.set_loss_weights(tada_keras.LossWeights(source_main=1.0, target_anchor=1.0,
                                                      target_main_pseudo=pseudo))
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        model.fit(_dataset(x, y), steps_per_epoch=4, epochs=1, verbose=0)
        trained.append([_np(v) for v in network_variables(model)])
    for a, b in zip(*trained):
        np.testing.assert_allclose(a, b, atol=2e-5)


def _cosine_reference(student, teacher, domain):
    s = student / np.linalg.norm(student, axis=-1, keepdims=True)
    t = teacher / np.linalg.norm(teacher, axis=-1, keepdims=True)
    per_pixel = 1.0 - np.sum(s * t, axis=-1)
    return per_pixel[domain == 1].mean()


def test_pseudo_loss_is_the_task_loss_on_a_hand_built_case():
    from tada_keras.tasks import get_task

    rng = np.random.default_rng(0)
    domain = np.array([0, 0, 1, 1], "int32")
    normals = get_task("normals")
    student = rng.normal(size=(4, 6, 6, 3)).astype("float32")
    teacher = random_normals(rng, (4, 6, 6)) * 3.0  # any length: normalised first
    y = {C.DOMAIN: domain}
    value, kept = pseudo_loss(SelfTraining(), normals, None, y, {"normals": student},
                              {"normals": teacher})
    np.testing.assert_allclose(_np(value), _cosine_reference(student, teacher, domain),
                               rtol=1e-5)
    assert float(_np(kept)) == 1.0
    # The same as the task's target-domain loss with the teacher's normals as labels.
    model_free = normals.loss_terms({C.NORMALS: teacher / np.linalg.norm(
        teacher, axis=-1, keepdims=True)}, {"normals": student})[0][0]
    np.testing.assert_allclose(_np(value), _np(model_free)[2:].mean(), rtol=1e-5)

    depth = get_task("depth", si_lambda=0.5)
    log_s = rng.normal(0.5, 0.3, size=(4, 5, 5, 1)).astype("float32")
    log_t = rng.normal(0.5, 0.3, size=(4, 5, 5, 1)).astype("float32")
    value, _ = pseudo_loss(SelfTraining(), depth, None, y, {"depth": log_s},
                           {"depth": log_t})
    d = (log_s - log_t)[2:, ..., 0].astype(np.float64)  # the target images
    mean = d.mean(axis=(1, 2), keepdims=True)
    reference = np.mean(d ** 2 - 0.5 * d * mean)  # Eigen et al.'s SI loss, pooled
    np.testing.assert_allclose(_np(value), reference, rtol=1e-4)


def _half_right_segmentation(batch=4, size=8, seed=0):
    """Labels in 1..C-1 and teacher logits that are right on the left half only."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(1, NUM_CLASSES, (batch, size, size)).astype("int32")
    predicted = labels.copy()
    predicted[:, :, size // 2:] = labels[:, :, size // 2:] % (NUM_CLASSES - 1) + 1
    logits = np.eye(NUM_CLASSES, dtype="float32")[predicted] * 5.0
    return labels, logits


def test_anchor_mask_keeps_exactly_the_half_where_the_teacher_is_right():
    from tada_keras.tasks import get_task

    seg = get_task("segmentation", num_classes=NUM_CLASSES)
    labels, logits = _half_right_segmentation()
    keep = _np(seg.anchor_agreement({C.SEGMENTATION: labels}, {"segmentation": logits},
                                    SelfTraining(mask="anchor")))
    expected = np.zeros_like(keep)
    expected[:, :, :4] = True
    np.testing.assert_array_equal(keep, expected)
    labels[0, 0, 0] = 0  # void: no evidence, never kept
    keep = _np(seg.anchor_agreement({C.SEGMENTATION: labels}, {"segmentation": logits},
                                    SelfTraining(mask="anchor")))
    assert not keep[0, 0, 0] and keep[0, 0, 1]

    # Keypoints: landmark 0 located by the teacher, landmark 1 not (its peak is far off).
    kp = get_task("keypoints", num_keypoints=2)
    size = 16
    heat = np.zeros((1, size, size, 2), "float32")
    heat[0, 8, 4, 0] = 1.0  # at x = 4.5/16, y = 8.5/16: on landmark 0
    heat[0, 2, 14, 1] = 1.0  # far from landmark 1
    points = np.array([[[4.5 / size, 8.5 / size, 0.0], [12.5 / size, 8.5 / size, 0.0]]],
                      "float32")
    y = {C.KEYPOINTS: points, C.KEYPOINTS_VISIBLE: np.array([[True, True]])}
    keep = _np(kp.anchor_agreement(y, {"keypoints_heatmap": heat},
                                   SelfTraining(mask="anchor", anchor_radius=0.15)))
    yy, xx = np.mgrid[0:size, 0:size]
    disk = (((xx + 0.5) / size - points[0, 0, 0]) ** 2
            + ((yy + 0.5) / size - points[0, 0, 1]) ** 2) <= 0.15 ** 2
    np.testing.assert_array_equal(keep[0], disk)
    assert keep[0].sum() > 0 and not keep[0, :, size // 2:].any()


def test_consistency_mask_keeps_the_views_that_agree():
    from tada_keras.tasks import get_task

    normals = get_task("normals")
    a = np.zeros((1, 4, 4, 3), "float32")
    a[..., 2] = 1.0
    b = a.copy()
    angle = np.radians(np.where(np.arange(4) < 2, 5.0, 30.0))[None, None, :]
    b[..., 0], b[..., 2] = np.sin(angle), np.cos(angle)  # 5° on the left, 30° on the right
    keep = _np(normals.view_agreement({"normals": a}, {"normals": b},
                                      SelfTraining(mask="consistency", tau=10.0)))
    np.testing.assert_array_equal(keep, np.broadcast_to(np.arange(4) < 2, (1, 4, 4)))

    depth = get_task("depth")
    log_a = np.zeros((1, 4, 4, 1), "float32")
    log_b = log_a + np.log(np.where(np.arange(4) < 2, 1.05, 1.3))[None, None, :, None]
    keep = _np(depth.view_agreement({"depth": log_a}, {"depth": log_b.astype("float32")},
                                    SelfTraining(mask="consistency", depth_tolerance=0.1)))
    np.testing.assert_array_equal(keep, np.broadcast_to(np.arange(4) < 2, (1, 4, 4)))


@pytest.mark.parametrize("poison", [1e6, np.nan])
@pytest.mark.parametrize("main_task", ["normals", "depth"])
def test_masked_pseudo_labels_change_neither_loss_nor_gradients(main_task, poison):
    from tada_keras.tasks import get_task

    main = get_task(main_task)
    seg = get_task("segmentation", num_classes=NUM_CLASSES)
    rng = np.random.default_rng(1)
    labels, logits = _half_right_segmentation()
    domain = np.array([0, 1, 1, 1], "int32")
    y = {C.DOMAIN: domain, C.SEGMENTATION: labels}
    if main_task == "normals":
        key, student = "normals", rng.normal(size=(4, 8, 8, 3)).astype("float32")
        teacher = random_normals(rng, (4, 8, 8))
    else:
        key, student = "depth", rng.normal(0.5, 0.3, (4, 8, 8, 1)).astype("float32")
        teacher = rng.normal(0.5, 0.3, (4, 8, 8, 1)).astype("float32")
    settings = SelfTraining(mask="anchor")

    def run(teacher_values):
        def f(s):
            return pseudo_loss(settings, main, seg, y, {key: s},
                               {key: teacher_values, "segmentation": logits})[0]

        value, (grad,) = value_and_gradients(f, [student])
        kept = pseudo_loss(settings, main, seg, y, {key: student},
                           {key: teacher_values, "segmentation": logits})[1]
        return value, grad, float(_np(kept))

    value, grad, kept = run(teacher)
    assert np.isfinite(value) and value > 0 and kept == 0.5
    assert np.all(grad[:, :, 4:] == 0) and np.abs(grad[1:, :, :4]).sum() > 0
    assert np.all(grad[0] == 0)  # the source example has no pseudo-label
    bad = teacher.copy()
    bad[:, :, 4:] = poison  # where the teacher's anchor prediction is wrong
    bad[0] = poison  # and the source example
    value2, grad2, kept2 = run(bad)
    assert kept2 == kept
    np.testing.assert_allclose(value2, value, rtol=1e-6)
    assert np.all(np.isfinite(grad2))
    np.testing.assert_allclose(grad2, grad, rtol=1e-5, atol=1e-9)
    # A non-finite pseudo-label inside the mask is dropped, never a NaN loss.
    worse = teacher.copy()
    worse[1, 0, 0] = np.nan
    value3, grad3, kept3 = run(worse)
    assert np.isfinite(value3) and np.all(np.isfinite(grad3)) and kept3 < kept


def test_ramp_up_weight(tiny_model):
    model = tiny_model()
    model.attach_teacher(SelfTraining(), rampup_steps=10)
    ramp = []
    for step in (0, 5, 10, 20):
        model.teacher.step.assign(float(step))
        ramp.append(float(_np(model.teacher.ramp())))
    np.testing.assert_allclose(ramp, [np.exp(-5.0), np.exp(-5.0 * 0.25), 1.0, 1.0],
                               rtol=1e-6)


def test_methods_are_data():
    weights = {m: [p.weights for p in tada_keras.get_method(m, 0.5, 2.0).phases]
               for m in ("baseline", "mtl_both", "headfreeze", "self_training",
                         "mtl_both_st", "headfreeze_st")}
    plus = lambda w: w.__class__(**{**w.as_dict(), "target_main_pseudo": 2.0})  # noqa: E731
    assert weights["self_training"] == [plus(weights["baseline"][0])]
    assert weights["mtl_both_st"] == [plus(weights["mtl_both"][0])]
    assert weights["headfreeze_st"] == [weights["headfreeze"][0],
                                        plus(weights["headfreeze"][1])]
    phases = tada_keras.get_method("headfreeze_st").phases
    assert [p.head_trainable for p in phases] == [True, False]
    assert not phases[0].weights.uses_pseudo and phases[1].weights.uses_pseudo
    with pytest.raises(ValueError, match="pseudo_weight"):
        tada_keras.get_method("self_training", pseudo_weight=0.0)


def test_headfreeze_st_keeps_the_frozen_head_bit_identical(tiny_model):
    keras.utils.set_random_seed(1)
    model = tiny_model()
    model.self_training = SelfTraining(momentum=0.5, rampup=0.0)
    x, y = _st_batch(seed=8)
    ds = _dataset(x, y)
    phase1, phase2 = tada_keras.get_method("headfreeze_st").phases
    configure_phase(model, phase1, keras.optimizers.Adam(1e-2))
    assert model.teacher is None
    model.fit(ds, steps_per_epoch=4, epochs=1, verbose=0)
    head = [_np(v) for v in model.head.weights]
    final_phase1 = [_np(v) for v in network_variables(model)]

    configure_phase(model, phase2, keras.optimizers.Adam(1e-2))
    # The teacher starts from phase 1's final weights.
    for t, s in zip(network_variables(model.teacher.network), final_phase1):
        np.testing.assert_array_equal(_np(t), s)
    history = model.fit(ds, steps_per_epoch=4, epochs=1, verbose=0).history
    assert np.isfinite(history["target_main_pseudo"][0]) and "pseudo_kept" in history
    for before, v, t in zip(head, model.head.weights, model.teacher.network.head.weights):
        np.testing.assert_array_equal(before, _np(v), err_msg=v.path)
        np.testing.assert_array_equal(before, _np(t), err_msg=t.path)  # teacher too
    moved = [not np.array_equal(_np(t), s) for t, s in
             zip(model.teacher.network.encoder.weights, final_phase1)]
    assert sum(moved) > len(moved) // 2


@pytest.mark.parametrize("method", ["self_training", "mtl_both_st", "headfreeze_st"])
def test_each_self_training_method_runs(tiny_model, method):
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.self_training = SelfTraining(mask="both", tau=30.0)
    x, y = _st_batch(seed=3)
    y[C.PSEUDO_WEAK2] = x[::-1] * 0.9
    lines = []
    histories = run_method(model, tada_keras.get_method(method), lambda p: _dataset(x, y),
                           lambda p: 4, lambda p: keras.optimizers.Adam(1e-3), verbose=0,
                           steps_per_epoch=2, log=lines.append)
    last = histories[tada_keras.get_method(method).phases[-1].name].history
    assert len(last["target_main_pseudo"]) == 2 and np.all(np.isfinite(last["loss"]))
    assert all(0.0 <= k <= 1.0 for k in last["pseudo_kept"])
    assert "'target_main_pseudo': 1.0" in lines[-1]
    assert model.teacher.rampup_steps == round(0.2 * 4)
    model.detach_teacher()  # the exported network has no teacher weights
    assert len(model.weights) == len(network_variables(model))


def _example(rng, size=64):
    import tensorflow as tf

    return {C.IMAGE: tf.constant(rng.integers(0, 256, (size, size, 3)), tf.uint8),
            C.NORMALS: tf.constant(random_normals(rng, (size, size))),
            C.SEGMENTATION: tf.constant(rng.integers(0, NUM_CLASSES, (size, size, 1)),
                                        tf.uint8)}


def test_strong_view_pipeline():
    import tensorflow as tf

    from tada_keras.data import DataSpec, PseudoViews, prepare_example

    rng = np.random.default_rng(0)
    example = _example(rng)
    spec = DataSpec(crop_size=32)
    views = PseudoViews(second_view=True, mask_ratio=0.5, patch_size=8)
    key = tf.constant([5, 7], tf.int64)

    def prep(domain):
        image, labels = prepare_example(example, spec, domain, True, True, training=True,
                                        seed=key, views=views)
        return _np(image), {k: _np(v) for k, v in labels.items()}

    strong, labels = prep(C.DOMAIN_TARGET)
    again, labels_again = prep(C.DOMAIN_TARGET)
    np.testing.assert_array_equal(strong, again)  # stateless: the same draws
    np.testing.assert_array_equal(labels[C.PSEUDO_WEAK], labels_again[C.PSEUDO_WEAK])
    weak, weak2 = labels[C.PSEUDO_WEAK], labels[C.PSEUDO_WEAK2]
    assert strong.shape == weak.shape == weak2.shape == (32, 32, 3)
    assert not np.array_equal(weak, weak2)  # two colour shifts of the same crop
    patches = strong.reshape(4, 8, 4, 8, 3).transpose(0, 2, 1, 3, 4).reshape(16, -1)
    masked = np.all(patches == 0, axis=1)
    assert 0 < masked.sum() < 16  # whole patches are masked, not all of them
    assert not np.array_equal(strong[~np.repeat(np.repeat(masked.reshape(4, 4), 8, 0), 8,
                                                1)], weak[~np.repeat(np.repeat(
                                                    masked.reshape(4, 4), 8, 0), 8, 1)])
    source, source_labels = prep(C.DOMAIN_SOURCE)
    np.testing.assert_array_equal(source, source_labels[C.PSEUDO_WEAK])


def test_validation_names_the_flag(tmp_path):
    from tada_keras.config import RunConfig, validate

    base = dict(model_dir=str(tmp_path / "run"), method="self_training")
    for override, needle in (({"teacher_momentum": 1.0}, "--teacher_momentum=1.0"),
                             ({"pseudo_mask": "sometimes"}, "--pseudo_mask='sometimes'"),
                             ({"pseudo_tau": 0.0}, "--pseudo_tau=0.0"),
                             ({"pseudo_mask_ratio": 1.0}, "--pseudo_mask_ratio=1.0"),
                             ({"pseudo_weight": 0.0}, "--pseudo_weight=0.0"),
                             ({"batch_target": 0}, "--batch_target=0 conflicts"),
                             ({"distribution": "mirrored"}, "--distribution=mirrored")):
        with pytest.raises(ValueError, match=None) as err:
            validate(RunConfig(**{**base, **override}))
        assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)
    validate(RunConfig(**base, pseudo_mask="both"))


# --- resume after kill -9 with a teacher (the pattern of tests/test_cli.py) ------------

def _train(model_dir, data_dir):
    return [sys.executable, "-m", "tada_keras.train", f"--flagfile={TINY}",
            f"--model_dir={model_dir}", f"--data_dir={data_dir}", "--method=headfreeze_st",
            "--steps=40", "--steps_per_epoch=2", "--deterministic", "--seed=3",
            "--pseudo_mask=both", "--pseudo_mask_ratio=0.5", "--teacher_momentum=0.9"]


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
                    reason="bit-exact resume is promised for the TensorFlow backend")
def test_resume_after_kill_with_a_teacher_is_bit_identical(data_dir, tmp_path):
    import time

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    interrupted = str(tmp_path / "interrupted")
    proc = subprocess.Popen(_train(interrupted, data_dir), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = os.path.join(interrupted, "phase_phase2", "backup", "state.json")
    reached, start = False, time.time()
    while not reached and proc.poll() is None and time.time() - start < 300:
        try:
            with open(state) as f:
                reached = json.load(f)["epoch"] >= 3
        except (OSError, ValueError, KeyError):
            time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert reached, "training finished or failed before it could be killed"
    assert not os.path.exists(os.path.join(interrupted, "phase_phase2", "DONE"))

    run = dict(cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    resumed = subprocess.run(_train(interrupted, data_dir), **run)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "[phase1] already complete" in resumed.stdout
    clean = str(tmp_path / "clean")
    proc = subprocess.run(_train(clean, data_dir), **run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (h5_arrays(os.path.join(d, "phase_phase2", "final.weights.h5"))
            for d in (clean, interrupted))
    teacher = [k for k in a if k.startswith("teacher/")]
    assert a.keys() == b.keys() and len(teacher) > 10  # the teacher is in the file
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    with open(os.path.join(clean, "metrics.json")) as f:
        assert "target_test" in json.load(f)


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
                    reason="the CLI runs are tested on TensorFlow (test_cli.py)")
def test_cli_self_training_with_the_anchor_mask(data_dir, tmp_path):
    model_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "tada_keras.train", f"--flagfile={TINY}",
         f"--model_dir={model_dir}", f"--data_dir={data_dir}", "--method=self_training",
         "--pseudo_mask=anchor", "--evaluate_teacher"],
        cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True,
        text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(model_dir / "phase_train" / "history.csv") as f:
        header, *rows = f.read().splitlines()
    kept = [float(r.split(",")[header.split(",").index("pseudo_kept")]) for r in rows]
    assert kept and all(0.0 <= k < 1.0 for k in kept)  # the mask drops pixels
    with open(model_dir / "metrics.json") as f:
        metrics = json.load(f)
    assert set(metrics["teacher"]["target_test"]) == set(metrics["target_test"])
    with open(model_dir / "config.json") as f:
        weights = json.load(f)["resolved_method"]["phases"][0]["weights"]
    assert weights["target_main_pseudo"] == 1.0
    exported = keras.saving.load_model(model_dir / "model.keras")
    assert not [v.path for v in exported.weights if v.path.startswith("teacher/")]
    assert len(exported.weights) == len(network_variables(exported))
