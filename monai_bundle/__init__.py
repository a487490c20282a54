"""MedImg: a MONAI bundle (configs/, models/, docs/) and the Python package its configs import."""

import atexit
import gc
from pathlib import Path

__version__ = "0.1.0"

BUNDLE_ROOT = Path(__file__).resolve().parent
"""The bundle folder: configs/, models/ and docs/ live here."""

# Python's shutdown garbage-collects the objects torch's and MONAI's imports made: 1.2-1.5 s of every
# CLI run on a 2-core CPU (README, *Latency*). The OS frees that memory anyway; freezing them at exit
# skips the collection. Objects outside reference cycles are still finalised, and files we write are
# closed before a run ends.
atexit.register(gc.freeze)
