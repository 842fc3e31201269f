"""Adversarial losses, the discriminator's label convention and the λ schedule.

Label convention
    ``TARGET_DOMAIN_LABEL`` is the one place that says which domain the discriminator
    calls 1. It is 1: a discriminator logit is the log-odds that its input came from the
    **target** (real) domain, matching ``conventions.DOMAIN_TARGET == 1`` and AdaptSegNet
    (``source_label = 0``, ``target_label = 1``). TLlib uses the opposite (source = 1);
    every function below derives the source label as ``1 - TARGET_DOMAIN_LABEL``, so
    flipping the constant flips the convention everywhere and nothing else changes.

Signs (who minimises what)
    * discriminator: ``discriminator_loss`` = BCE(D(features), true domain label),
      balanced over the two domains. Chance level is log 2 ≈ 0.693.
    * DANN (Ganin & Lempitsky): the network *maximises* the same loss (minimax). The
      gradient reversal layer in front of D implements it: its backward pass multiplies
      the gradient by -λ, so one backward pass trains D on the loss and the network
      against it. Logged ``adv_loss`` = ``-disc_loss``.
    * Tsai et al. (AdaptSegNet): the network minimises ``generator_loss`` = BCE(D(target),
      *source* label), the non-saturating "fool D" loss with flipped labels, computed
      with D's weights held fixed. Logged ``adv_loss`` is that BCE (lower = D fooled).
    The network's objective is ``task loss + λ · adv_loss`` (paper Eq. 7).
"""

from __future__ import annotations

import keras
from keras import ops

TARGET_DOMAIN_LABEL = 1.0
SOURCE_DOMAIN_LABEL = 1.0 - TARGET_DOMAIN_LABEL


def domain_labels(is_target):
    """Discriminator labels for per-example target flags (1.0 target, 0.0 source)."""
    is_target = ops.cast(is_target, "float32")
    return is_target * TARGET_DOMAIN_LABEL + (1.0 - is_target) * SOURCE_DOMAIN_LABEL


def _broadcast(per_example, logits):
    return ops.reshape(per_example, (-1,) + (1,) * (len(logits.shape) - 1))


def _domain_mean(values, weight):
    """Mean of ``values`` (B, ...) over the examples with weight 1 in ``weight`` (B,)."""
    per_example = ops.mean(ops.reshape(values, (ops.shape(values)[0], -1)), axis=1)
    return ops.sum(per_example * weight) / ops.maximum(ops.sum(weight), 1.0)


def discriminator_loss(logits, is_target, label_noise=0.0, seed=None):
    """BCE-with-logits of patch logits against the domain labels, balanced by domain.

    Args:
        logits: (B, h, w, 1) discriminator logits (PatchGAN: one per patch).
        is_target: (B,) 1.0 for target examples, 0.0 for source examples.
        label_noise: labels move towards 0.5 by U(0, label_noise) per patch (noisy
            real/fake labels, Salimans et al. 2016); 0 keeps them exact.
        seed: a ``keras.random.SeedGenerator`` for the label noise.
    Returns:
        0.5 * (mean source loss + mean target loss): a batch with more examples of one
        domain does not tilt the discriminator towards it.
    """
    logits = ops.cast(logits, "float32")
    is_target = ops.cast(is_target, "float32")
    labels = _broadcast(domain_labels(is_target), logits) * ops.ones_like(logits)
    if label_noise:
        u = keras.random.uniform(ops.shape(logits), 0.0, label_noise, seed=seed)
        labels = labels * (1.0 - u) + (1.0 - labels) * u
    bce = ops.binary_crossentropy(labels, logits, from_logits=True)
    return 0.5 * (_domain_mean(bce, 1.0 - is_target) + _domain_mean(bce, is_target))


def generator_loss(logits, is_target):
    """Tsai et al.'s adversarial loss: target patches labelled as *source* (flipped)."""
    logits = ops.cast(logits, "float32")
    is_target = ops.cast(is_target, "float32")
    labels = ops.full(ops.shape(logits), SOURCE_DOMAIN_LABEL, "float32")
    bce = ops.binary_crossentropy(labels, logits, from_logits=True)
    return _domain_mean(bce, is_target)


def domain_accuracy(logits, is_target):
    """(source accuracy, target accuracy) of the patch decisions, each in [0, 1]."""
    logits = ops.cast(logits, "float32")
    is_target = ops.cast(is_target, "float32")
    says_target = ops.cast(logits > 0, "float32")
    if TARGET_DOMAIN_LABEL == 0.0:
        says_target = 1.0 - says_target
    right = ops.where(_broadcast(is_target, logits) > 0.5, says_target, 1.0 - says_target)
    return _domain_mean(right, 1.0 - is_target), _domain_mean(right, is_target)


def adversarial_weight(step, weight, schedule="constant", gamma=10.0, warmup_steps=0,
                       total_steps=1):
    """λ at 1-based training ``step`` (a tensor): 0 during warm-up, then ``weight``
    times 1 (``constant``) or Ganin's ramp 2/(1+exp(-γp))-1 (``ramp``), where p goes
    from 0 at the end of the warm-up to 1 at ``total_steps``.

    Computed inside the compiled train step from a step counter variable, so it changes
    every step on every backend (a callback assigning a variable would be overwritten by
    the JAX trainer's state at the end of the epoch).
    """
    step = ops.cast(step, "float32")
    active = ops.cast(step > float(warmup_steps), "float32")
    if schedule == "constant":
        return float(weight) * active
    if schedule != "ramp":
        raise ValueError(f"schedule must be 'constant' or 'ramp', got {schedule!r}")
    span = float(max(total_steps - warmup_steps, 1))
    progress = ops.clip((step - float(warmup_steps)) / span, 0.0, 1.0)
    ramp = 2.0 / (1.0 + ops.exp(-float(gamma) * progress)) - 1.0
    return float(weight) * ramp * active
