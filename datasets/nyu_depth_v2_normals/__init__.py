"""NYU Depth v2 labeled subset with surface normals (TFDS builder ``nyu_depth_v2_normals``)."""

from .nyu_depth_v2_normals_dataset_builder import Builder, NyuNormalsConfig

__all__ = ["Builder", "NyuNormalsConfig"]
