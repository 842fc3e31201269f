"""Backbones, FPN decoder and the TADA network graph."""

from tada_keras.models.backbones import BACKBONES, BackboneWeightsError, build_backbone
from tada_keras.models.tada_graph import FREEZE_POINTS, build_tada_graph

__all__ = [
           "BACKBONES",
           "FREEZE_POINTS",
           "BackboneWeightsError",
           "build_backbone",
           "build_tada_graph",
]
