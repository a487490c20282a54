"""PNG bytes of an 8-bit grey image: what the DRR sets and the GAN's samples write."""

from __future__ import annotations

import io

import numpy as np


def png_bytes(image: np.ndarray) -> bytes:
    """An 8-bit grey PNG of a uint8 2D array."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()
