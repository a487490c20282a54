"""Which Python packages the analysis needs in Slicer's Python, and the plan to install what is missing."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path

REQUIREMENTS_FILE = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"
TORCH = "torch>=2.8"  # installed on its own: its build must match the GPU driver
IMPORT_NAMES = {"pytorch-ignite": "ignite", "pynrrd": "nrrd", "scikit-image": "skimage", "pillow": "PIL"}


def read_requirements(path: Path = REQUIREMENTS_FILE) -> dict[str, str]:
    """import name -> pip requirement, torch first, from Resources/requirements.txt."""
    required = {"torch": TORCH}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name = re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]
            required[IMPORT_NAMES.get(name, name)] = line
    return required


REQUIRED = read_requirements()


def missing(find_spec: Callable[[str], object] = importlib.util.find_spec) -> list[str]:
    """Import names of REQUIRED packages that are not importable (nothing is imported)."""
    importlib.invalidate_caches()  # packages pip installed a moment ago
    return [name for name in REQUIRED if find_spec(name) is None]


def install_plan(missing_names: list[str], pytorch_extension: bool, bundle_source: Path | None = None,
                 bundle_importable: bool = True) -> list[str]:
    """Human-readable steps, shown to the user before anything is installed."""
    steps = []
    if "torch" in missing_names:
        steps.append("PyTorch, through the PyTorch extension (it picks the build for your GPU)" if pytorch_extension
                     else "PyTorch (CPU or CUDA build, from pip)")
    others = [REQUIRED[name] for name in missing_names if name != "torch"]
    if others:
        steps.append("pip: " + ", ".join(others))
    if not bundle_importable and bundle_source is not None:
        steps.append(f"the MedImg bundle package from {bundle_source} (pip install -e)")
    return steps


def install(missing_names: list[str], pip_install: Callable[[str], object],
            install_torch: Callable[[], object] | None = None, bundle_source: Path | None = None,
            bundle_importable: bool = True) -> None:
    """Install what is missing: torch first (through `install_torch` when given), then one pip call."""
    if "torch" in missing_names:
        if install_torch is not None:
            install_torch()
        else:
            pip_install(REQUIRED["torch"])
    others = [REQUIRED[name] for name in missing_names if name != "torch"]
    if others:
        pip_install(" ".join(others))
    if not bundle_importable and bundle_source is not None:
        pip_install(f"-e {bundle_source}")
