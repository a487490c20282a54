"""What a finished run wrote, sorted into what the module shows: segments, a table, volumes."""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from MedImgAnalysisLib import terminology
from MedImgAnalysisLib.tasks import Task

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii.gz", ".nii", ".mha", ".mhd")

PALETTE_MODULE = "monai_bundle.palette"

QUALITY_SUFFIX = "_quality.json"  # the bundle's quality flag beside a label map (monai_bundle.tasks.segmentation)


def bundle_palette(package_parent: Path | None = None) -> ModuleType:
    """The bundle's one label palette (the PNG overlays use it too), loaded only once there are results.

    So the library imports without monai_bundle. Results exist only where the bundle ran; a source
    checkout runs it with the package on the child's PYTHONPATH only: then the palette's file is
    loaded from `package_parent`, the folder holding monai_bundle/ (it needs the standard library only).
    """
    try:
        return importlib.import_module(PALETTE_MODULE)
    except ImportError:
        if package_parent is None:
            raise
    path = Path(package_parent) / "monai_bundle" / "palette.py"
    spec = importlib.util.spec_from_file_location("medimg_bundle_palette", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ImportError(f"cannot load the label palette: {PALETTE_MODULE} is not importable and {path} is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def label_colour(label: int, name: str = "", package_parent: Path | None = None) -> tuple[float, float, float]:
    """The bundle's RGB colour (0-1) of a label value (`bundle_palette`)."""
    return bundle_palette(package_parent).label_colour(label, name)


@dataclass
class Segment:
    label: int
    name: str
    colour: tuple[float, float, float]
    terminology: str = ""  # Slicer's serialized terminology entry (standard codes); '' keeps Slicer's default


@dataclass
class Results:
    """A run's outputs by role; `summary` is one line for the module's status."""

    kind: str
    label_map: Path | None = None
    segments: list[Segment] = field(default_factory=list)
    table: list[dict[str, str]] = field(default_factory=list)
    volumes: list[Path] = field(default_factory=list)  # heat maps on the input grid, or a new image
    pictures: list[Path] = field(default_factory=list)
    summary: str = ""
    quality: str = ""  # "ok", "review", or "" where the task gives no quality flag
    quality_reasons: list[str] = field(default_factory=list)

    @property
    def warning(self) -> str:
        """One line for the status when the result should be reviewed before it is trusted, else ''."""
        if self.quality != "review":
            return ""
        return "Review this result: " + "; ".join(self.quality_reasons or ["flagged by the model's quality check"])


def is_volume(path: Path) -> bool:
    return path.name.lower().endswith(VOLUME_SUFFIXES)


def beside_label_map(label_map: Path) -> Path:
    """Where the bundle writes a label map's quality flag: `<name>_seg.<ext>` -> `<name>_quality.json`."""
    name = label_map.name
    stem = name[: name.rindex("_seg.")] if "_seg." in name else name.split(".")[0]
    return label_map.with_name(stem + QUALITY_SUFFIX)


def collect(task: Task, outputs: list[str], package_parent: Path | None = None) -> Results:
    """Sort a task's output files: a label map and its segments, a prediction table, heat maps, pictures.

    `package_parent`: where the child found monai_bundle when it is not importable here (`bundle_palette`).
    """
    paths = [Path(p) for p in outputs]
    results = Results(task.kind)
    results.pictures = [p for p in paths if p.suffix.lower() == ".png"]
    volumes = [p for p in paths if is_volume(p)]
    quality_file = next((p for p in paths if p.name.endswith(QUALITY_SUFFIX)), None)
    if quality_file is None and task.kind == "segmentation" and len(volumes) == 1:
        quality_file = beside_label_map(volumes[0])  # a run that did not list it (e.g. the warm worker)
    if quality_file is not None and quality_file.is_file():
        quality = json.loads(quality_file.read_text())
        results.quality, results.quality_reasons = quality.get("quality", ""), list(quality.get("reasons", []))
    if task.kind == "segmentation":
        if len(volumes) != 1:
            listed = ", ".join(map(str, paths))
            raise ValueError(f"expected one label map from {task.name}, got {len(volumes)}: {listed}")
        results.label_map = volumes[0]
        palette = bundle_palette(package_parent)
        results.segments = [
            Segment(label, name, palette.label_colour(label, name), terminology.entry(task.codes.get(label, {})))
            for label, name in sorted(task.labels.items())
        ]
        results.summary = f"{len(results.segments)} labels"
    elif task.kind == "classification":
        table = next((p for p in paths if p.name == "predictions.csv"), None)
        if table is None:
            raise ValueError(f"{task.name} wrote no predictions.csv")
        with open(table, newline="") as file:
            results.table = list(csv.DictReader(file))
        results.volumes = volumes
        if results.table:
            row = results.table[0]
            results.summary = ", ".join(f"{key} {value}" for key, value in row.items() if key != "file" and value)
    else:
        results.volumes = volumes
        results.summary = f"{len(volumes)} volume(s)"
    return results


def numeric_columns(rows: list[dict[str, str]]) -> list[str]:
    """Columns whose every non-empty cell is a number: the module makes them numeric table columns
    (sortable, plottable) instead of text."""

    def is_number(text: str) -> bool:
        try:
            float(text)
            return True
        except ValueError:
            return False

    columns = list(rows[0]) if rows else []
    return [c for c in columns if all(is_number(r[c]) for r in rows if r.get(c)) and any(r.get(c) for r in rows)]


HEAT_MAP_VISIBLE_FROM = 0.05
"""Heat-map values below this fraction of its maximum are transparent: zero heat covers nothing."""


def heat_map_threshold(scalar_range: tuple[float, float]) -> tuple[float, float]:
    """Lower and upper display threshold of a heat map with this value range."""
    low, high = scalar_range
    return low + HEAT_MAP_VISIBLE_FROM * (high - low), high
