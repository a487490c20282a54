"""MedImg: a MONAI bundle (configs/, models/, docs/) and the Python package its configs import."""

from pathlib import Path

__version__ = "0.1.0"

BUNDLE_ROOT = Path(__file__).resolve().parent
"""The bundle folder: configs/, models/ and docs/ live here."""
