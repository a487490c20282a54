"""Where the module runs: which Slicer and Python, where the MedImg bundle is, which devices to offer."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MINIMUM_SLICER = (5, 10)  # Slicer 5.8 ships Python 3.9 (top-level CMakeLists.txt, v5.8.0); 5.10 ships 3.12
MINIMUM_PYTHON = (3, 10)  # the bundle uses X | Y types and zip(strict=True); pydicom>=3 needs 3.10
PACKAGE = "monai_bundle"
METADATA = Path("configs") / "metadata.json"


def version_problem(slicer_version: tuple[int, int], python_version: tuple[int, ...] = tuple(sys.version_info)) -> str:
    """Why the module cannot run here ('' when it can): one line for the status."""
    if tuple(slicer_version[:2]) < MINIMUM_SLICER or tuple(python_version[:2]) < MINIMUM_PYTHON:
        found = ".".join(map(str, slicer_version[:2]))
        python = ".".join(map(str, python_version[:2]))
        need = ".".join(map(str, MINIMUM_SLICER))
        return (
            f"MedImg Analysis needs 3D Slicer {need} or later (Python 3.10+); this is Slicer {found} (Python {python})."
        )
    return ""


@dataclass(frozen=True)
class BundleLocation:
    """The folder that holds the monai_bundle package (the child's PYTHONPATH), and its metadata.json."""

    package_parent: Path
    how: str  # "packaged" (next to the module, as the extension installs it), "source" (a checkout), "installed"

    @property
    def metadata(self) -> Path:
        return self.package_parent / PACKAGE / METADATA

    @property
    def models(self) -> Path:
        return self.package_parent / PACKAGE / "models"


def locate_bundle(
    module_dir: Path, find_spec: Callable[[str], object] = importlib.util.find_spec
) -> BundleLocation | None:
    """Find the monai_bundle package without importing it (it would import nothing heavy, but a missing one must
    not raise): next to the module file (what the extension's CMakeLists installs into qt-scripted-modules/), in a
    source checkout (MedImgExtension/<module>/ two levels below monai_bundle/), or installed in Slicer's Python."""
    module_dir = Path(module_dir)
    for parent, how in ((module_dir, "packaged"), (module_dir.parents[1], "source")):
        if (parent / PACKAGE / METADATA).is_file():
            return BundleLocation(parent, how)
    spec = find_spec(PACKAGE)
    origin = getattr(spec, "origin", None)
    if origin and (Path(origin).parent / METADATA).is_file():
        return BundleLocation(Path(origin).parent.parent, "installed")
    return None


def not_found_message(module_dir: Path) -> str:
    return (
        f"The MedImg bundle ({PACKAGE}) was not found next to {module_dir} nor in Slicer's Python: "
        "reinstall the MedImg extension (see the module's help)."
    )


def device_choices(platform: str = sys.platform) -> dict[str, str | None]:
    """Label -> --device value. macOS has no CUDA: only Automatic and CPU are offered there."""
    choices = {"Automatic": None, "CPU": "cpu"}
    if platform != "darwin":
        choices["GPU (CUDA)"] = "cuda"
    return choices
