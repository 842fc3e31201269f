"""Conventions shared by every part of tada-keras: normal frame, domains, feature keys.

Every dataset builder converts its own encoding into these conventions, and the data
pipeline, the losses and the metrics rely on nothing else.

Normal frame
    Camera frame: x points right in the image, y points up in the image, z points toward
    the camera. A visible surface faces the camera ray (n . -ray > 0), which for a pinhole
    camera means n_z > 0 near the image centre but not at grazing angles near the border
    (e.g. a ceiling seen from a camera looking down): never force n_z >= 0.
    Normals are unit-length float32.
    Invalid pixels hold (0, 0, 0) and have ``normals_mask == False``.

Domains
    ``DOMAIN_SOURCE`` (0) is the synthetic domain, ``DOMAIN_TARGET`` (1) the real one.

Segmentation
    Integer class ids with ``SEGMENTATION_IGNORE_LABEL`` (0, "void") never reaching a loss
    or a metric. NYU-40 ids (1..40) are used by the indoor datasets.

Keypoints
    ``keypoints``: float32 (K, 3). Columns 0 and 1 are the 2D position normalised to
    [0, 1] by image width and height (origin at the top-left image corner, x to the
    right, y downwards, pixel centres at (i + 0.5) / size). Column 2 is the depth of the
    point along the camera's viewing axis, in the unit the dataset documents.
    ``keypoints_visible``: bool (K,), False for points outside the image or occluded;
    invisible points never reach a loss.
"""

from __future__ import annotations

DOMAIN_SOURCE = 0
DOMAIN_TARGET = 1
DOMAIN_NAMES = {DOMAIN_SOURCE: "source", DOMAIN_TARGET: "target"}

SEGMENTATION_IGNORE_LABEL = 0
NYU40_NUM_CLASSES = 41  # 0 = void + 40 classes.

# --- TFDS example feature keys (every builder uses these names) -----------------------
IMAGE = "image"  # uint8 (H, W, 3)
NORMALS = "normals"  # float32 (H, W, 3), camera frame above, zeros where invalid
NORMALS_MASK = "normals_mask"  # bool (H, W)
SEGMENTATION = "segmentation"  # uint8 (H, W, 1) image feature, 0 = void
DEPTH = "depth"  # float32 (H, W), metres where known, 0 where invalid
KEYPOINTS = "keypoints"  # float32 (K, 3): x, y normalised, depth
KEYPOINTS_VISIBLE = "keypoints_visible"  # bool (K,)
EXAMPLE_ID = "id"  # string, traceable to the source file or generator seed
HAS_ANCHOR = "has_anchor"  # optional bool: are this example's anchor labels usable?

# --- Keys of a training batch's label dict (built by tada_keras.data) -----------------
DOMAIN = "domain"  # int32 (B,)
# Self-training (tada_keras.training.teacher): the mean teacher's inputs, float32 [0, 255]
# (B, H, W, 3). For target examples the batch image is then the strong (student) view.
PSEUDO_WEAK = "pseudo_weak"  # the weak (un-augmented beyond the colour shift) view
PSEUDO_WEAK2 = "pseudo_weak2"  # a second weak view (view-consistency mask only)
