r"""Writes FaceWarehouse's head-pose histogram, the target for SfSNet's `frontal` config.

    python -m tada_datasets.facewarehouse.pose_histogram --manual_dir FW_DIR \
        --out SFSNET_MANUAL_DIR/target_pose_histogram.json [--split train]

The pose of every image is estimated exactly as for SfSNet (head_pose.pose_from_normals on the
built `normals` and `normals_mask`), so both histograms are in the same estimator's units.
"""

from __future__ import annotations

import argparse
import json

from etils import epath

from . import facewarehouse_dataset_builder as fw

try:
    from ..face_landmarks import head_pose, splits
except ImportError:  # `datasets/` imported as a top-level folder (no parent package).
    from tada_datasets.face_landmarks import head_pose, splits


def target_histogram(manual: epath.Path, split: str = "all") -> head_pose.PoseHistogram:
    examples = fw.list_examples(manual)
    if split != "all":
        by_subject = splits.split_groups(e[0] for e in examples)
        examples = [e for e in examples if by_subject[e[0]] == split]
    camera = fw.load_camera_config(manual)
    landmarks, landmarks_path = fw.read_landmarks_if_present(manual)
    hist = head_pose.PoseHistogram()
    for subject, folder, pose, rel in examples:
        ex = fw.make_example(subject, folder, pose, rel, camera, landmarks, landmarks_path)
        estimate = head_pose.pose_from_normals(ex["normals"], ex["normals_mask"])
        if estimate is not None:
            hist.add(*estimate)
    return hist


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manual_dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--split", default="all", choices=["all", "train", "validation", "test"])
    args = parser.parse_args(argv)
    hist = target_histogram(epath.Path(args.manual_dir), args.split)
    epath.Path(args.out).write_text(json.dumps(hist.to_dict()) + "\n")
    print(f"wrote {args.out} ({int(hist.counts.sum())} images)\n{hist.marginals_text()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
