"""The manifest (CSV or JSON Lines) and the dataset description (``dataset.json``).

Text in, checked rows out: no image is opened here, so the builder can read the manifest
cheaply every time it is constructed. Every problem is one ``ManifestError`` whose message
names the manifest file, the line, the column and the file, in one line.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import posixpath
import re

DOMAINS = ("source", "target")
SPLITS = ("train", "val", "test")
REQUIRED_COLUMNS = ("domain", "split", "image")
# Label columns, in the order they are checked. A mask column refines its label's own
# validity (zeros, non-finite values, alpha) and needs its label on the same row.
LABEL_COLUMNS = ("normals", "normals_mask", "segmentation", "depth", "depth_mask",
                 "keypoints")
MASK_OF = {"normals_mask": "normals", "depth_mask": "depth"}
OPTIONAL_COLUMNS = ("id",)
ALL_COLUMNS = REQUIRED_COLUMNS + LABEL_COLUMNS + OPTIONAL_COLUMNS
MANIFEST_NAMES = ("manifest.csv", "manifest.jsonl")
DESCRIPTION_NAME = "dataset.json"

_EXTENSIONS = {
    "image": (".png", ".jpg", ".jpeg"),
    "normals": (".png", ".npy", ".exr"),
    "normals_mask": (".png",),
    "segmentation": (".png",),
    "depth": (".png", ".npy", ".exr"),
    "depth_mask": (".png",),
    "keypoints": (".json",),
}
_AXES = re.compile(r"^[+-][012],[+-][012],[+-][012]$")


class ManifestError(ValueError):
    """A problem with the user's manifest, description or one of their files (one line)."""


def split_name(domain: str, split: str) -> str:
    """The TFDS split of a (domain, split) row: ``source_train``, ``target_test``, ..."""
    return f"{domain}_{split}"


@dataclasses.dataclass(frozen=True)
class Row:
    """One manifest row: where it is (for messages) and its (relative) paths."""

    line: int  # 1-based line of the manifest file (CSV: the header is line 1)
    domain: str
    split: str
    image: str
    labels: dict  # label column -> path as written (relative to the manifest's folder)
    id: str

    @property
    def tfds_split(self) -> str:
        return split_name(self.domain, self.split)


@dataclasses.dataclass(frozen=True)
class Description:
    """``dataset.json``: what the label files mean (see the docs page for every key)."""

    class_names: tuple[str, ...] | None = None
    palette: tuple[tuple[int, int, int], ...] | None = None
    keypoint_names: tuple[str, ...] | None = None
    keypoint_coordinates: str = "pixels"  # or "normalized"
    keypoint_depth_unit: str = "metres"
    normal_axes: str = "+0,+1,+2"
    normal_exr_channels: tuple[str, ...] = ("R", "G", "B")
    depth_metres_per_unit: float = 1.0
    depth_max: float | None = None
    depth_exr_channel: str | None = None
    name: str | None = None

    @property
    def num_keypoints(self) -> int | None:
        return None if self.keypoint_names is None else len(self.keypoint_names)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A parsed manifest: its file, its rows and the description beside it."""

    path: str
    description_path: str
    rows: tuple[Row, ...]
    description: Description
    fingerprint: str  # sha256 of the manifest and the description (hex)

    @property
    def folder(self) -> str:
        return posixpath.dirname(self.path)

    def resolve(self, relative: str) -> str:
        return relative if posixpath.isabs(relative) else posixpath.join(self.folder,
                                                                         relative)

    def where(self, row: Row, column: str | None = None) -> str:
        """``<manifest>, line N, column 'c' (file)``: the start of every row message."""
        text = f"{self.path}, line {row.line}"
        if column is not None:
            path = row.image if column == "image" else row.labels.get(column)
            text += f", column '{column}'" + (f" ({self.resolve(path)})" if path else "")
        return text

    def labels(self) -> tuple[str, ...]:
        """Label columns that at least one row fills, in LABEL_COLUMNS order."""
        used = {c for row in self.rows for c in row.labels}
        return tuple(c for c in LABEL_COLUMNS if c in used)

    def split_labels(self) -> dict[str, list[str]]:
        """TFDS split -> the label columns its rows have (every row of a split has the
        same ones, checked by ``parse``)."""
        out: dict[str, list[str]] = {}
        for row in self.rows:
            out.setdefault(row.tfds_split, [c for c in LABEL_COLUMNS if c in row.labels])
        return out

    def splits(self) -> dict[str, list[Row]]:
        out: dict[str, list[Row]] = {}
        for row in self.rows:
            out.setdefault(row.tfds_split, []).append(row)
        return out


def parse(manifest_path: str, manifest_text: str, description_path: str,
          description_text: str) -> Manifest:
    """Parses and checks a manifest and its description (both as text).

    Checks: known columns; domain in DOMAINS and split in SPLITS; an image on every row;
    known file extensions; a mask only with its label; unique ids and images; every label
    column filled on all rows of a (domain, split) or on none; the description keys the
    filled columns need (class names for segmentation, keypoint names or a count).
    """
    description = parse_description(description_path, description_text)
    if manifest_path.endswith(".csv"):
        records = _csv_records(manifest_path, manifest_text)
    elif manifest_path.endswith(".jsonl"):
        records = _jsonl_records(manifest_path, manifest_text)
    else:
        raise ManifestError(f"{manifest_path}: a manifest is a .csv or a .jsonl file")
    rows = [_row(manifest_path, line, record) for line, record in records]
    if not rows:
        raise ManifestError(f"{manifest_path}: no rows (expected one row per example with "
                            f"at least the columns {', '.join(REQUIRED_COLUMNS)})")
    fingerprint = hashlib.sha256(
        manifest_text.encode("utf-8") + b"\0" + description_text.encode("utf-8")).hexdigest()
    manifest = Manifest(manifest_path, description_path, tuple(rows), description,
                        fingerprint)
    _check_unique(manifest)
    _check_consistent(manifest)
    _check_description_covers(manifest)
    return manifest


def parse_description(path: str, text: str) -> Description:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    known = {"name", "class_names", "keypoints", "normals", "depth", "segmentation"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ManifestError(f"{path}: unknown key(s) {unknown}; expected some of "
                            f"{sorted(known)}")
    fields: dict = {}
    if "name" in raw:
        fields["name"] = str(raw["name"])
    if "class_names" in raw:
        names = raw["class_names"]
        if (not isinstance(names, list) or len(names) < 2 or len(names) > 256
                or not all(isinstance(n, str) and n for n in names)):
            raise ManifestError(f"{path}: 'class_names' must be a list of 2 to 256 names, "
                                "id 0 first (id 0 is void: never trained or scored)")
        fields["class_names"] = tuple(names)
    seg = _section(path, raw, "segmentation", {"palette"})
    if "palette" in seg:
        palette = seg["palette"]
        ok = isinstance(palette, list) and all(
            isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255
                                                        for v in c) for c in palette)
        if not ok:
            raise ManifestError(f"{path}: 'segmentation.palette' must be a list of [r, g, b] "
                                "colours (0..255), the colour of class id i at index i")
        if len({tuple(c) for c in palette}) != len(palette):
            raise ManifestError(f"{path}: 'segmentation.palette' lists a colour twice")
        if "class_names" in fields and len(palette) != len(fields["class_names"]):
            raise ManifestError(f"{path}: 'segmentation.palette' has {len(palette)} colours "
                                f"but 'class_names' has {len(fields['class_names'])} names")
        fields["palette"] = tuple(tuple(c) for c in palette)
    kp = _section(path, raw, "keypoints", {"names", "count", "coordinates", "depth_unit"})
    if "names" in kp or "count" in kp:
        names = kp.get("names")
        if names is None:
            count = kp["count"]
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ManifestError(f"{path}: 'keypoints.count' must be an integer >= 1")
            names = [f"keypoint_{i}" for i in range(count)]
        if not isinstance(names, list) or not names or not all(isinstance(n, str)
                                                               for n in names):
            raise ManifestError(f"{path}: 'keypoints.names' must be a list of names")
        if "count" in kp and kp["count"] != len(names):
            raise ManifestError(f"{path}: 'keypoints.count' is {kp['count']} but "
                                f"'keypoints.names' has {len(names)} names")
        fields["keypoint_names"] = tuple(names)
    if "coordinates" in kp:
        if kp["coordinates"] not in ("pixels", "normalized"):
            raise ManifestError(f"{path}: 'keypoints.coordinates' must be 'pixels' or "
                                f"'normalized', got {kp['coordinates']!r}")
        fields["keypoint_coordinates"] = kp["coordinates"]
    if "depth_unit" in kp:
        fields["keypoint_depth_unit"] = str(kp["depth_unit"])
    normals = _section(path, raw, "normals", {"axes", "exr_channels"})
    if "axes" in normals:
        axes = str(normals["axes"]).replace(" ", "")
        if not _AXES.match(axes) or sorted(axes[1::3]) != ["0", "1", "2"]:
            raise ManifestError(f"{path}: 'normals.axes' {normals['axes']!r}: expected a "
                                "signed permutation like '+0,-1,+2' (x, y, z of the project "
                                "frame from stored channels 0, 1, 2)")
        fields["normal_axes"] = axes
    if "exr_channels" in normals:
        channels = normals["exr_channels"]
        if not (isinstance(channels, list) and len(channels) == 3
                and all(isinstance(c, str) for c in channels)):
            raise ManifestError(f"{path}: 'normals.exr_channels' must be 3 channel names")
        fields["normal_exr_channels"] = tuple(channels)
    depth = _section(path, raw, "depth", {"metres_per_unit", "max", "exr_channel"})
    for key, field in (("metres_per_unit", "depth_metres_per_unit"), ("max", "depth_max")):
        if key in depth:
            value = depth[key]
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not 0 < value < float("inf")):
                raise ManifestError(f"{path}: 'depth.{key}' must be a positive number")
            fields[field] = float(value)
    if "exr_channel" in depth:
        fields["depth_exr_channel"] = str(depth["exr_channel"])
    return Description(**fields)


def _section(path, raw, key, allowed) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ManifestError(f"{path}: '{key}' must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ManifestError(f"{path}: unknown key(s) {unknown} in '{key}'; expected some of "
                            f"{sorted(allowed)}")
    return value


def _csv_records(path: str, text: str):
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise ManifestError(f"{path}: empty file (expected a header line with at least "
                            f"{', '.join(REQUIRED_COLUMNS)})") from None
    header = [h.strip() for h in header]
    _check_columns(path, 1, header)
    for values in reader:
        if not any(v.strip() for v in values):
            continue  # a blank line
        if len(values) != len(header):
            raise ManifestError(f"{path}, line {reader.line_num}: {len(values)} values, but "
                                f"the header has {len(header)} columns")
        yield reader.line_num, dict(zip(header, values))


def _jsonl_records(path: str, text: str):
    for line, content in enumerate(text.splitlines(), start=1):
        if not content.strip():
            continue
        try:
            record = json.loads(content)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{path}, line {line}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise ManifestError(f"{path}, line {line}: expected a JSON object")
        _check_columns(path, line, list(record))
        yield line, {k: "" if v is None else v for k, v in record.items()}


def _check_columns(path, line, columns):
    unknown = [c for c in columns if c not in ALL_COLUMNS]
    if unknown:
        raise ManifestError(f"{path}, line {line}: unknown column '{unknown[0]}'; the columns "
                            f"are {', '.join(ALL_COLUMNS)}")
    if len(set(columns)) != len(columns):
        raise ManifestError(f"{path}, line {line}: a column is named twice")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing and path.endswith(".csv"):
        raise ManifestError(f"{path}, line {line}: no '{missing[0]}' column (required: "
                            f"{', '.join(REQUIRED_COLUMNS)})")


def _row(path: str, line: int, record: dict) -> Row:
    def value(column):
        v = record.get(column, "")
        if not isinstance(v, str):
            raise ManifestError(f"{path}, line {line}, column '{column}': expected a string, "
                                f"got {v!r}")
        return v.strip()

    domain, split, image = value("domain"), value("split"), value("image")
    if domain not in DOMAINS:
        raise ManifestError(f"{path}, line {line}, column 'domain': {domain!r} is not a "
                            f"domain; expected one of {', '.join(DOMAINS)}")
    if split not in SPLITS:
        raise ManifestError(f"{path}, line {line}, column 'split': {split!r} is not a split; "
                            f"expected one of {', '.join(SPLITS)}")
    if not image:
        raise ManifestError(f"{path}, line {line}, column 'image': empty; every row needs "
                            "an image")
    labels = {c: value(c) for c in LABEL_COLUMNS if value(c)}
    for column, rel in [("image", image), *labels.items()]:
        if not rel.lower().endswith(_EXTENSIONS[column]):
            raise ManifestError(f"{path}, line {line}, column '{column}' ({rel}): expected a "
                                f"{' or '.join(_EXTENSIONS[column])} file")
    for mask, label in MASK_OF.items():
        if mask in labels and label not in labels:
            raise ManifestError(f"{path}, line {line}, column '{mask}': a mask needs its "
                                f"'{label}' file on the same row")
    return Row(line, domain, split, image, labels, value("id") or image)


def _check_unique(manifest: Manifest) -> None:
    seen_ids: dict[str, Row] = {}
    seen_images: dict[str, Row] = {}
    for row in manifest.rows:
        for seen, key, what in ((seen_images, posixpath.normpath(row.image), "image"),
                                (seen_ids, row.id, "id")):
            if key in seen:
                column = "id" if what == "id" else "image"
                raise ManifestError(f"{manifest.where(row, column)}: {what} {key!r} is "
                                    f"already on line {seen[key].line}; each example must "
                                    "appear once")
            seen[key] = row


def _check_consistent(manifest: Manifest) -> None:
    """Within one (domain, split) a label column is filled on every row or on none."""
    for split, rows in manifest.splits().items():
        for column in LABEL_COLUMNS:
            having = [r for r in rows if column in r.labels]
            if having and len(having) != len(rows):
                lacking = next(r for r in rows if column not in r.labels)
                raise ManifestError(
                    f"{manifest.where(lacking)}, column '{column}': empty, but line "
                    f"{having[0].line} of the same split ({split}) has a '{column}' file; "
                    f"give one on every {split} row or on none")


def _check_description_covers(manifest: Manifest) -> None:
    d, labels = manifest.description, manifest.labels()
    if "segmentation" in labels and d.class_names is None:
        raise ManifestError(f"{manifest.description_path}: the manifest has segmentation "
                            "files, so 'class_names' (id 0 = void first) is required")
    if "keypoints" in labels and d.keypoint_names is None:
        raise ManifestError(f"{manifest.description_path}: the manifest has keypoint files, "
                            "so 'keypoints': {'count': K} (or 'names') is required")


def slug(text: str) -> str:
    """A TFDS-config-safe version of a folder name."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_").lower()[:40] or "manifest"
