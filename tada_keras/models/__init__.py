"""Backbones, FPN decoder and the TADA network graph."""

from tada_keras.models.backbones import BACKBONES, BackboneWeightsError, build_backbone
from tada_keras.models.tada_graph import (
    FEATURE_LEVELS,
    FREEZE_POINTS,
    build_feature_model,
    build_tada_graph,
)

__all__ = [
    "BACKBONES",
    "FEATURE_LEVELS",
    "FREEZE_POINTS",
    "BackboneWeightsError",
    "build_backbone",
    "build_feature_model",
    "build_tada_graph",
]
