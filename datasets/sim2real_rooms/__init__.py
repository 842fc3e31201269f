"""sim2real_rooms: embedded procedural sim2real indoor benchmark (TFDS builder + generator).

Importing this package registers the TFDS builder ``sim2real_rooms``.
"""

from .generator import CLASS_NAMES, KEYPOINT_NAMES, NUM_CLASSES, NUM_KEYPOINTS
from .sim2real_rooms_dataset_builder import (
    HAS_ANCHOR,
    Builder,
    Sim2RealRoomsConfig,
    make_config,
)

__all__ = [
    "CLASS_NAMES",
    "HAS_ANCHOR",
    "KEYPOINT_NAMES",
    "NUM_CLASSES",
    "NUM_KEYPOINTS",
    "Builder",
    "Sim2RealRoomsConfig",
    "make_config",
]
