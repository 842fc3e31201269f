"""Training: TadaModel (the one loss for all methods) and the phase runner."""

from tada_keras.training.tada_model import TadaModel, build_model, pooled_mean

__all__ = ["TadaModel", "build_model", "pooled_mean"]
