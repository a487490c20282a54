"""What a segmentation run reports: per-label metrics of an evaluation, label volumes of a result."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from monai_bundle.io import (
    read_image,
    write_text_atomic,
)

from .quality import read_quality

logger = logging.getLogger(__name__)


class SegmentationReport:
    """Ignite handler: at the end of an evaluation, write `report.json` with per-label and per-case metrics.

    Reads the per-image details that MONAI's metric handlers keep in `engine.state.metric_details`
    (one row per image, one column per foreground label) and the file names of the images.

    Args:
        output_dir: folder of `report.json`.
        class_names: class names, background first.
        include_background: whether the metric handlers score the background too.
    """

    def __init__(
        self, output_dir: str | os.PathLike, class_names: Sequence[str], include_background: bool = False
    ) -> None:
        self.output_dir = Path(output_dir)
        self.labels = list(class_names if include_background else class_names[1:])
        self.cases: list[str] = []

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self.cases.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect_names)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _collect_names(self, engine) -> None:
        self.cases.extend(str(item["image"].meta.get("filename_or_obj", "")) for item in engine.state.batch)

    def _write(self, engine) -> None:
        details = getattr(engine.state, "metric_details", {}) or {}
        report = {"labels": self.labels, "cases": self.cases, "metrics": {}}
        for metric, values in details.items():
            table = torch.as_tensor(values, dtype=torch.float64).reshape(len(self.cases), -1).cpu()
            per_label = {}
            for column, label in enumerate(self.labels[: table.shape[1]]):
                finite = table[:, column][torch.isfinite(table[:, column])]
                per_label[label] = {"mean": float(finite.mean()) if len(finite) else None, "n": int(len(finite))}
            report["metrics"][metric] = {
                "per_label": per_label,
                "per_case": [[None if not torch.isfinite(v) else float(v) for v in row] for row in table],
            }
        write_text_atomic(self.output_dir / "report.json", json.dumps(report, indent=2))
        logger.info("wrote %s", self.output_dir / "report.json")


def label_volumes_ml(label_path: str | Path, class_names: list[str]) -> dict[str, float]:
    """Volume of each present label in millilitres."""
    labels = read_image(label_path, ndim=3)
    voxel_ml = abs(float(np.linalg.det(labels.affine[:3, :3]))) / 1000.0
    counts = np.bincount(np.asarray(labels.array, dtype=np.int64).ravel(), minlength=len(class_names))
    return {class_names[k]: round(float(counts[k]) * voxel_ml, 1) for k in range(1, len(class_names)) if counts[k]}


def segmentation_results(item: dict, class_names: list[str]) -> dict[str, float | str]:
    """`volume_ml_<label>` of every foreground label (0.0 where absent), then `quality` and `quality_reasons`.

    From the written label map; where only DICOM was written (a SEG, `pred_path`, and its SR, `pred_sr_path`), from
    the SR's volumes, rounded as the label map's are. The quality flag is the item's (`AssessQualityd`) or, for
    a result written earlier, the `<name>_quality.json` beside it; '' where the task has none.
    """
    if item.get("pred_sr_path") and Path(item["pred_path"]).suffix == ".dcm":
        from monai_bundle.io.dicom_sr import read_volumes_ml  # pydicom's SR codes: 0.6 s of import, only for SR

        volumes = {name: round(ml, 1) for name, ml in read_volumes_ml(item["pred_sr_path"]).items() if ml}
    else:
        volumes = label_volumes_ml(item["pred_path"], class_names)
    quality = item.get("quality") or read_quality(item["pred_path"]) or {}
    return {
        **{f"volume_ml_{name}": volumes.get(name, 0.0) for name in class_names[1:]},
        "quality": quality.get("quality", ""),
        "quality_reasons": "; ".join(quality.get("reasons", [])),
    }
