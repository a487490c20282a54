"""Which Python packages the analysis needs in Slicer's Python, which are missing or too old, how to install them."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REQUIREMENTS_FILE = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"
TORCH = "torch>=2.8"  # installed on its own: its build must match the GPU driver (pyproject.toml's floor)
IMPORT_NAMES = {"pytorch-ignite": "ignite", "pynrrd": "nrrd", "scikit-image": "skimage", "pillow": "PIL"}
OPERATORS = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Requirement:
    """One line of requirements.txt: the distribution pip installs, the module it provides, the version rule."""

    line: str
    distribution: str
    module: str
    specifiers: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, line: str) -> Requirement:
        name = re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]
        specifiers = tuple(re.findall(r"(>=|<=|==|!=|>|<)\s*([0-9][0-9A-Za-z.+]*)", line[len(name) :]))
        return cls(line, name, IMPORT_NAMES.get(name, name), specifiers)

    def satisfied_by(self, version: str) -> bool:
        return all(OPERATORS[op](release(version), release(wanted)) for op, wanted in self.specifiers)


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version ('2.8.0+cu128' -> (2, 8, 0)), trailing zeros dropped so 2.8 == 2.8.0."""
    numbers = [int(part) for part in re.match(r"[0-9]+(?:\.[0-9]+)*", version.strip()).group(0).split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def read_requirements(path: Path = REQUIREMENTS_FILE) -> dict[str, Requirement]:
    """module name -> Requirement, torch first, from Resources/requirements.txt."""
    required = {"torch": Requirement.parse(TORCH)}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement.parse(line)
            required[requirement.module] = requirement
    return required


REQUIRED = read_requirements()


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing(
    find_spec: Callable[[str], object] = importlib.util.find_spec,
    version: Callable[[str], str | None] = installed_version,
) -> list[str]:
    """Module names of REQUIRED packages that are not importable or older than required (nothing is imported)."""
    importlib.invalidate_caches()  # packages pip installed a moment ago
    out = []
    for module, requirement in REQUIRED.items():
        found = find_spec(module) is not None and version(requirement.distribution)
        if not found or not requirement.satisfied_by(found):
            out.append(module)
    return out


def describe(missing_names: list[str], version: Callable[[str], str | None] = installed_version) -> list[str]:
    """'monai>=1.5.1 (1.3.0 installed)' for each missing module: what the user is asked to accept."""
    out = []
    for module in missing_names:
        requirement = REQUIRED[module]
        found = version(requirement.distribution)
        out.append(requirement.line + (f" ({found} installed)" if found else ""))
    return out


def install_plan(
    missing_names: list[str], pytorch_extension: bool, version: Callable[[str], str | None] = installed_version
) -> list[str]:
    """Human-readable steps, shown to the user before anything is installed."""
    steps = []
    if "torch" in missing_names:
        torch = describe(["torch"], version)[0]
        steps.append(
            f"PyTorch {torch}, through the PyTorch extension (it picks the build for your GPU)"
            if pytorch_extension
            else f"PyTorch {torch} (from pip)"
        )
    others = describe([name for name in missing_names if name != "torch"], version)
    if others:
        steps.append("pip: " + ", ".join(others))
    return steps


def torch_version_requirement() -> str:
    """The version rule for the PyTorch extension's installTorch(torchVersionRequirement=...), e.g. '>=2.8'."""
    return REQUIRED["torch"].line[len(REQUIRED["torch"].distribution) :]


def install(
    missing_names: list[str],
    pip_install: Callable[[list[str]], object],
    install_torch: Callable[[str], object] | None = None,
) -> None:
    """Install what is missing: torch first (through `install_torch(version_rule)` when given), then one pip call.

    pip gets a list of arguments, never one string: Slicer's pip_install splits a string with shlex.split,
    which mangles Windows paths (Base/Python/slicer/packaging.py)."""
    if "torch" in missing_names:
        if install_torch is not None:
            install_torch(torch_version_requirement())
        else:
            pip_install([REQUIRED["torch"].line])
    others = [REQUIRED[name].line for name in missing_names if name != "torch"]
    if others:
        pip_install(["--upgrade", *others])
