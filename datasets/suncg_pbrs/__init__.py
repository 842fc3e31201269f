"""SUNCG physically-based renderings (TFDS builder ``suncg_pbrs``)."""

from .suncg_pbrs_dataset_builder import Builder, PbrsConfig

__all__ = ["Builder", "PbrsConfig"]
