"""Image files -> numpy arrays, or one error that names the file.

``read_image``: any format PIL reads, at PIL's dtype (8-bit). ``read_png`` /
``decode_png_bytes``: PNGs at their own bit depth (8 or 16), for label maps and normals.
"""

from __future__ import annotations

import io
import re

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath

# PIL names the in-memory buffer it was given, which means nothing to the user.
_BUFFER_REPR = re.compile(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


def read_image(path, *, expected: str, mode: str | None = None) -> np.ndarray:
    """Pixels of the image at ``path`` as a numpy array (PIL's dtype and channels).

    Args:
        path: the file (str or epath.Path); read with epath so that TFDS's test harness,
            which forbids the builtin ``open``, and remote file systems both work.
        expected: what the file should hold, for the error message (e.g. "an 8-bit RGB PNG").
        mode: PIL mode to convert to (e.g. "RGB"); None keeps the file's own.

    Raises:
        ValueError naming ``path``, the decoder's reason and ``expected`` when the bytes are
        not a decodable image (truncated, corrupt, empty, or another format).
    """
    path = epath.Path(path)
    with path.open("rb") as f:
        data = f.read()
    pil = tfds.core.lazy_imports.PIL_Image
    try:
        with pil.open(io.BytesIO(data)) as img:
            img.load()  # PIL decodes lazily: a truncated pixel stream only fails here.
            arr = np.asarray(img.convert(mode) if mode else img)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, zlib/struct errors.
        if isinstance(e, pil.UnidentifiedImageError):
            reason = "not a recognised image format"
        else:
            reason = _BUFFER_REPR.sub("", str(e)).strip() or type(e).__name__
        raise ValueError(
            f"{path}: cannot decode this image file ({reason}; {len(data)} bytes); expected "
            f"{expected}. The file is probably truncated or corrupt: copy it again from the "
            "original release.") from e
    return arr


def read_bytes(path) -> bytes:
    """The bytes of the file at ``path`` (str or epath.Path, read with epath);
    FileNotFoundError naming ``path`` when it cannot be read."""
    try:
        return epath.Path(path).read_bytes()
    except OSError as err:
        raise FileNotFoundError(f"{path}: cannot read ({err})") from err


def read_png(path) -> np.ndarray:
    """Reads an 8- or 16-bit PNG at its own bit depth; names the file on any problem
    (FileNotFoundError when it cannot be read, ValueError when it is not a complete PNG)."""
    return decode_png_bytes(read_bytes(path), path)


def decode_png_bytes(data: bytes, path="<bytes>") -> np.ndarray:
    """PNG bytes -> (H, W) or (H, W, C) uint8/uint16; ValueError naming ``path`` if not a
    complete PNG.

    PIL silently reads 16-bit RGB PNGs as 8-bit, so TensorFlow decodes them; palette PNGs
    go through PIL, which returns the indices (the values) rather than the colours.
    """
    if len(data) < 33 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError(f"{path}: not a PNG file")
    if data[-12:-4] != b"\x00\x00\x00\x00IEND":
        raise ValueError(f"{path}: truncated PNG (no IEND chunk at the end)")
    bit_depth, colour_type = data[24], data[25]
    if colour_type == 3:  # palette: the indices are the values
        with tfds.core.lazy_imports.PIL_Image.open(io.BytesIO(data)) as im:
            return np.asarray(im)
    dtype = tf.uint16 if bit_depth == 16 else tf.uint8
    try:
        array = tf.io.decode_png(data, channels=0, dtype=dtype).numpy()
    except tf.errors.InvalidArgumentError as err:
        raise ValueError(f"{path}: corrupt PNG ({err.message})") from err
    return array[..., 0] if array.shape[-1] == 1 else array
