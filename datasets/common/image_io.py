"""``read_image``: decode an image file, or fail with one error that names the file."""

from __future__ import annotations

import io
import re

import numpy as np
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
