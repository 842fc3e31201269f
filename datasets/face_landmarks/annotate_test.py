"""The MediaPipe annotator on a real photo (scikit-image's astronaut, Eileen Collins).

Runs only where mediapipe (and scikit-image) import, i.e. in the annotator's environment:
    /path/to/mp-venv/bin/python -m pytest datasets/face_landmarks/annotate_test.py
Reference positions were read off the 512x512 image by eye (pixel units, +-3 px).
"""

import numpy as np
import pytest

pytest.importorskip("mediapipe")
skimage_data = pytest.importorskip("skimage.data")

from . import annotate, landmarks_file  # noqa: E402

# 68-point index (or mean of indices) -> (x, y) in pixels of astronaut().
REFERENCE = {
    "right_eye_centre (36-41, image left)": (range(36, 42), (203, 101)),
    "left_eye_centre (42-47, image right)": (range(42, 48), (246, 104)),
    "nose_tip (30)": ([30], (224, 126)),
    "mouth_corner (48, image left)": ([48], (204, 141)),
    "mouth_corner (54, image right)": ([54], (244, 142)),
    "chin (8)": ([8], (226, 176)),
}
TOLERANCE_PX = 10.0  # 2% of the image; the 468->68 table itself is approximate


def test_mediapipe_landmarks_land_on_the_astronauts_face(tmp_path):
    from PIL import Image

    Image.fromarray(skimage_data.astronaut()).save(tmp_path / "astronaut.png")
    out = tmp_path / landmarks_file.LANDMARKS_FILENAME
    assert annotate.main(["--images_dir", str(tmp_path), "--out", str(out)]) == 0
    rec = landmarks_file.read_landmarks(out)["astronaut.png"]
    assert rec.detected and rec.image_size == (512, 512) and rec.visible.all()
    px = rec.keypoints[:, :2] * 512
    for name, (idx, ref) in REFERENCE.items():
        err = np.linalg.norm(px[list(idx)].mean(axis=0) - ref)
        assert err < TOLERANCE_PX, f"{name}: {px[list(idx)].mean(axis=0)} vs {ref}"
    # Scheme sanity: jaw runs image-left to image-right, brows above eyes above nose above mouth.
    assert px[0, 0] < px[8, 0] < px[16, 0]
    assert px[17:27, 1].mean() < px[36:48, 1].mean() < px[30, 1] < px[48:60, 1].mean()
    # Depth: the nose tip is nearer the camera than the jaw ends (smaller depth).
    assert rec.keypoints[30, 2] < rec.keypoints[[0, 16], 2].mean()
