"""The one label palette: the colour of a label value in the PNG overlays and in 3D Slicer.

Standard library only: the Slicer module loads it in Slicer's own Python, where torch may be missing.
"""

from __future__ import annotations

import hashlib

LABEL_COLOURS = [
    (0.90, 0.62, 0.00),
    (0.34, 0.71, 0.91),
    (0.00, 0.62, 0.45),
    (0.94, 0.89, 0.26),
    (0.00, 0.45, 0.70),
    (0.84, 0.37, 0.00),
    (0.80, 0.47, 0.65),
    (0.60, 0.60, 0.60),
    (0.12, 0.47, 0.71),
    (1.00, 0.50, 0.05),
    (0.17, 0.63, 0.17),
    (0.84, 0.15, 0.16),
    (0.58, 0.40, 0.74),
    (0.55, 0.34, 0.29),
    (0.89, 0.47, 0.76),
]
"""Distinct, colour-blind-friendly RGB colours (Okabe-Ito, then Tableau); label k > 0 gets LABEL_COLOURS[k - 1]."""


def label_colour(label: int, name: str = "") -> tuple[float, float, float]:
    """A stable RGB colour (0-1) of a label value: the palette, then a colour hashed from the value and name.

    Args:
        label: the label value (> 0).
        name: the label's name; only labels past the palette's end use it.
    """
    label = int(label)
    if 0 < label <= len(LABEL_COLOURS):
        return LABEL_COLOURS[label - 1]
    digest = hashlib.sha256(f"{label}:{name}".encode()).digest()
    return tuple(0.25 + 0.7 * byte / 255 for byte in digest[:3])  # type: ignore[return-value]
