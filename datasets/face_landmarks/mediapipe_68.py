"""MediaPipe Face Mesh (468 points) -> the 68-point iBUG/dlib/face-alignment scheme.

Each of the 68 points is the mean of one or two Face Mesh vertices. The correspondences are
those published by Peizhi Yan in PeizhiYan/Mediapipe_2_Dlib_Landmarks
(``mediapipe2dlib/mp2dlib.py``, 2024), restated here. They are a hand-made approximation:
MediaPipe's mesh has no vertex exactly on the dlib jaw contour or eye corners, so expect a few
pixels of systematic offset against a 68-point detector. Verified here only for plausibility
(ordering, left/right, eyes above nose above mouth on a real photo, `annotate_test.py`), not
against a dlib or face-alignment run on the same images.
"""

from __future__ import annotations

import numpy as np

# Row k lists the Face Mesh vertices averaged for 68-point landmark k (0-based).
MEDIAPIPE_TO_68: tuple[tuple[int, ...], ...] = (
    # Jaw line 0-16, from the subject's right (image left) to the subject's left.
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,),
    (400,), (379,), (365,), (397, 288), (361,), (323,), (454,), (356,),
    # Right brow 17-21, left brow 22-26 (outer to inner, then inner to outer).
    (70,), (63,), (105,), (66,), (107,),
    (336,), (296,), (334,), (293,), (300,),
    # Nose bridge 27-30, lower nose 31-35.
    (168, 6), (197, 195), (5,), (4,),
    (75,), (97,), (2,), (326,), (305,),
    # Right eye 36-41, left eye 42-47.
    (33,), (160,), (158,), (133,), (153,), (144,),
    (362,), (385,), (387,), (263,), (373,), (380,),
    # Outer lip 48-59 (corner, upper lip, corner, lower lip back).
    (61,), (39,), (37,), (0,), (267,), (269,), (291,),
    (321,), (314,), (17,), (84,), (91,),
    # Inner lip 60-67.
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)
assert len(MEDIAPIPE_TO_68) == 68

NUM_MEDIAPIPE_POINTS = 468


def mediapipe_to_68(points: np.ndarray) -> np.ndarray:
    """(468 or 478, D) Face Mesh points -> (68, D) by the table above."""
    points = np.asarray(points)
    if points.shape[0] < NUM_MEDIAPIPE_POINTS:
        raise ValueError(f"expected >= {NUM_MEDIAPIPE_POINTS} Face Mesh points, "
                         f"got {points.shape[0]}")
    return np.stack([points[list(ix)].mean(axis=0) for ix in MEDIAPIPE_TO_68])
