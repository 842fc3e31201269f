"""sim2real_manifest: your own source/target images and labels, listed in a manifest
(TFDS builder ``sim2real_manifest``; docs/own_data.md)."""

from .manifest import ManifestError
from .sim2real_manifest_dataset_builder import Builder, ManifestConfig, make_config

__all__ = ["Builder", "ManifestConfig", "ManifestError", "make_config"]
