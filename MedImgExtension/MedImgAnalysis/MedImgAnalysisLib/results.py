"""What a finished run wrote, sorted into what the module shows: segments, a table, volumes."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from MedImgAnalysisLib.tasks import Task

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii.gz", ".nii", ".mha", ".mhd")

# distinct, colour-blind-friendly colours (Okabe-Ito, then Tableau) indexed by label value: a label keeps its colour
PALETTE = [
    (0.90, 0.62, 0.00), (0.34, 0.71, 0.91), (0.00, 0.62, 0.45), (0.94, 0.89, 0.26), (0.00, 0.45, 0.70),
    (0.84, 0.37, 0.00), (0.80, 0.47, 0.65), (0.60, 0.60, 0.60), (0.12, 0.47, 0.71), (1.00, 0.50, 0.05),
    (0.17, 0.63, 0.17), (0.84, 0.15, 0.16), (0.58, 0.40, 0.74), (0.55, 0.34, 0.29), (0.89, 0.47, 0.76),
]


def label_colour(label: int, name: str = "") -> tuple[float, float, float]:
    """A stable RGB colour (0-1) for a label value: the palette, then a colour hashed from the name."""
    if 0 < label <= len(PALETTE):
        return PALETTE[label - 1]
    digest = hashlib.sha256(f"{label}:{name}".encode()).digest()
    return tuple(0.25 + 0.7 * byte / 255 for byte in digest[:3])  # type: ignore[return-value]


@dataclass
class Segment:
    label: int
    name: str
    colour: tuple[float, float, float]


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


def is_volume(path: Path) -> bool:
    return path.name.lower().endswith(VOLUME_SUFFIXES)


def collect(task: Task, outputs: list[str]) -> Results:
    """Sort a task's output files: a label map and its segments, a prediction table, heat maps, pictures."""
    paths = [Path(p) for p in outputs]
    results = Results(task.kind)
    results.pictures = [p for p in paths if p.suffix.lower() == ".png"]
    volumes = [p for p in paths if is_volume(p)]
    if task.kind == "segmentation":
        if len(volumes) != 1:
            raise ValueError(f"expected one label map from {task.name}, got {len(volumes)}: {', '.join(map(str, paths))}")
        results.label_map = volumes[0]
        results.segments = [Segment(label, name, label_colour(label, name)) for label, name in sorted(task.labels.items())]
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
