"""Unsupervised domain adaptation baselines: DANN (multi-level) and Tsai et al.
(AdaptSegNet, output space), usable with every method (docs/domain_adaptation.md)."""

from tada_keras.adaptation.adversarial import (
    DA_METHODS,
    LEVELS,
    DomainAdversarial,
    parse_levels,
)
from tada_keras.adaptation.discriminators import PatchDiscriminator
from tada_keras.adaptation.losses import (
    SOURCE_DOMAIN_LABEL,
    TARGET_DOMAIN_LABEL,
    adversarial_weight,
    discriminator_loss,
    domain_accuracy,
    generator_loss,
)
from tada_keras.adaptation.monitor import DiscriminatorMonitor, summarize
from tada_keras.adaptation.optimizer import AdversarialOptimizer

__all__ = [
    "DA_METHODS",
    "LEVELS",
    "SOURCE_DOMAIN_LABEL",
    "TARGET_DOMAIN_LABEL",
    "AdversarialOptimizer",
    "DiscriminatorMonitor",
    "DomainAdversarial",
    "PatchDiscriminator",
    "adversarial_weight",
    "discriminator_loss",
    "domain_accuracy",
    "generator_loss",
    "parse_levels",
    "summarize",
]
