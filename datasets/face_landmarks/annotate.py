r"""Annotates a folder of face images with 68 3D landmarks (the free anchor labels).

    python -m tada_datasets.face_landmarks.annotate --images_dir DIR \
        --pattern '**/*.png' --out DIR/landmarks_68.npz [--backend mediapipe]

or, in the annotator's own environment without installing the project,

    python datasets/face_landmarks/annotate.py --images_dir DIR ...

Backends:
  mediapipe       MediaPipe Face Mesh (model ships in the wheel, works offline). Needs
                  mediapipe==0.10.21 with numpy<2 and protobuf<5, i.e. its own environment:
                  `pip install -r datasets/face_landmarks/requirements-mediapipe.txt`.
                  468 points are reduced to 68 by `mediapipe_68.MEDIAPIPE_TO_68`.
  face_alignment  Bulat & Tzimiropoulos' 3D-FAN (`pip install face-alignment`), the detector
                  the paper used; downloads its weights on first use (online only).

Output format: see `landmarks_file.py`. Images where no face is found get all points
invisible and ``detected = False``. Only numpy, Pillow and the chosen backend are imported.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

if __package__:
    from . import landmarks_file, mediapipe_68
else:  # Run as a script in the annotator environment (no installed project).
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    import landmarks_file  # type: ignore[no-redef]
    import mediapipe_68  # type: ignore[no-redef]

# A backend maps an RGB uint8 image (H, W, 3) to (68, 3) keypoints in the file's convention
# (x, y normalised; z in image-width units, larger = farther, relative to the mean) or None.
Detector = Callable[[np.ndarray], "np.ndarray | None"]
DEFAULT_PATTERNS = ("**/*.png", "**/*.jpg", "**/*.jpeg")


def _centre_depth(kp: np.ndarray) -> np.ndarray:
    kp = np.asarray(kp, np.float32).copy()
    kp[:, 2] -= kp[:, 2].mean()
    return kp


def mediapipe_detector(min_detection_confidence: float = 0.5) -> tuple[Detector, Callable]:
    """Face Mesh in static-image mode; returns (detect, close)."""
    import mediapipe as mp

    mesh = mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, max_num_faces=1, refine_landmarks=False,
        min_detection_confidence=min_detection_confidence)

    def detect(image: np.ndarray):
        result = mesh.process(np.ascontiguousarray(image))
        if not result.multi_face_landmarks:
            return None
        pts = np.array([[p.x, p.y, p.z] for p in result.multi_face_landmarks[0].landmark])
        # x, y are already normalised by width and height; z uses the width's scale with
        # smaller = closer to the camera (MediaPipe docs), i.e. already a depth.
        return _centre_depth(mediapipe_68.mediapipe_to_68(pts))

    return detect, mesh.close


def face_alignment_detector(device: str = "cpu") -> tuple[Detector, Callable]:
    """3D-FAN from the `face-alignment` package (downloads weights on first use)."""
    import face_alignment

    types = face_alignment.LandmarksType
    kind = types.THREE_D if hasattr(types, "THREE_D") else types._3D  # < 1.4 names
    fa = face_alignment.FaceAlignment(kind, device=device, flip_input=False)

    def detect(image: np.ndarray):
        preds = fa.get_landmarks_from_image(image)
        if not preds:
            return None
        # Largest face; x, y are pixel coordinates (pixel centres at integers, assumed).
        pts = max(preds, key=lambda p: np.ptp(p[:, 0]) * np.ptp(p[:, 1]))
        h, w = image.shape[:2]
        kp = np.stack([(pts[:, 0] + 0.5) / w, (pts[:, 1] + 0.5) / h, pts[:, 2] / w], -1)
        return _centre_depth(kp)  # z sign as 3D-FAN outputs it (not verified to be depth)

    return detect, lambda: None


BACKENDS = {"mediapipe": mediapipe_detector, "face_alignment": face_alignment_detector}


def list_images(images_dir: pathlib.Path, patterns: Sequence[str]) -> list[pathlib.Path]:
    found = set()
    for pattern in patterns:
        found.update(p for p in images_dir.glob(pattern) if p.is_file())
    return sorted(found)


def annotate(
    images_dir: pathlib.Path, patterns: Sequence[str], detect: Detector,
    log_every: int = 100,
) -> dict[str, landmarks_file.LandmarkRecord]:
    from PIL import Image

    paths = list_images(images_dir, patterns)
    if not paths:
        raise FileNotFoundError(f"No image matches {list(patterns)} under {images_dir}")
    records = {}
    start = time.time()
    for n, path in enumerate(paths, 1):
        try:
            with Image.open(path) as img:
                image = np.asarray(img.convert("RGB"))
        except OSError as e:
            raise ValueError(f"{path}: cannot read image ({e})") from e
        h, w = image.shape[:2]
        kp = detect(image)
        rel = path.relative_to(images_dir).as_posix()
        if kp is None:
            records[rel] = landmarks_file.empty_record(h, w)
        else:
            inside = (kp[:, 0] >= 0) & (kp[:, 0] <= 1) & (kp[:, 1] >= 0) & (kp[:, 1] <= 1)
            records[rel] = landmarks_file.LandmarkRecord(kp.astype(np.float32), inside, (h, w),
                                                         True)
        if n % log_every == 0 or n == len(paths):
            print(f"{n}/{len(paths)} images, {time.time() - start:.0f} s", flush=True)
    return records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images_dir", required=True, type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path,
                        help=f"default: <images_dir>/{landmarks_file.LANDMARKS_FILENAME}")
    parser.add_argument("--pattern", action="append", dest="patterns",
                        help="glob relative to images_dir (repeatable); default: "
                             + ", ".join(DEFAULT_PATTERNS))
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="mediapipe")
    parser.add_argument("--device", default="cpu", help="face_alignment backend only")
    args = parser.parse_args(argv)
    out = args.out or args.images_dir / landmarks_file.LANDMARKS_FILENAME
    if args.backend == "mediapipe":
        detect, close = mediapipe_detector()
    else:
        detect, close = face_alignment_detector(args.device)
    try:
        records = annotate(args.images_dir, args.patterns or DEFAULT_PATTERNS, detect)
    finally:
        close()
    landmarks_file.write_landmarks(out, records, args.backend)
    detected = sum(r.detected for r in records.values())
    print(f"wrote {out}: {len(records)} images, face found in {detected}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
