"""Ignite handlers that gather every image's probability: the threshold saver, predictions.csv and the report."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_bundle.io import (
    OUTPUT_FORMATS,
    dicom_result_paths,
    is_dicom,
    output_paths,
    write_dicom_sr_classification,
    write_text_atomic,
)
from monai_bundle.io.dicom_derived import Algorithm
from monai_bundle.tasks.xray_classification.metrics import (
    binary_metrics,
    roc_curve,
    threshold_path,
    youden_threshold,
)

logger = logging.getLogger(__name__)


class _PredictionCollector:
    """Ignite handler base: gathers (file, probability, label) of every image an engine sees in an epoch."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def _collect(self, engine) -> None:
        for item in engine.state.output:
            label = item.get("label")
            self.rows.append(
                {
                    "file": str((getattr(item["image"], "meta", None) or {}).get("filename_or_obj", "")),
                    "probability": float(torch.as_tensor(item["pred"]).float().reshape(-1)[0]),
                    "label": None if label is None else int(torch.as_tensor(label).reshape(-1)[0]),
                    "heatmap": item.get("cam_path", ""),
                }
            )

    @property
    def probabilities(self) -> np.ndarray:
        return np.array([row["probability"] for row in self.rows])

    @property
    def labels(self) -> np.ndarray:
        return np.array([row["label"] for row in self.rows])

    def epoch_completed(self, engine) -> None:
        raise NotImplementedError


class DecisionThresholdSaver(_PredictionCollector):
    """Validation handler: whenever the key metric improves, store that epoch's Youden threshold beside the checkpoint.

    A threshold of 0.5 is arbitrary for an imbalanced or miscalibrated classifier; the one chosen on
    the validation split of the best epoch travels with its checkpoint (`threshold_path`), together
    with what inference needs to rebuild the network.

    Args:
        checkpoint: the checkpoint the threshold belongs to; the card is written beside it as `.json`.
        network_name: name of the network (`classifier`), stored in the card.
        spatial_size: input size of the network, stored in the card.
        class_names: class names (negative, positive), stored in the card.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        network_name: str,
        spatial_size: int | Sequence[int],
        class_names: Sequence[str],
    ) -> None:
        super().__init__()
        self.path = threshold_path(checkpoint)
        self.card = {"network": network_name, "spatial_size": spatial_size, "class_names": list(class_names)}

    def epoch_completed(self, engine) -> None:
        if engine.state.best_metric_epoch != engine.state.epoch:
            return
        threshold = youden_threshold(self.probabilities, self.labels)
        metrics = binary_metrics(self.probabilities, self.labels, threshold)
        card = {
            "threshold": threshold,
            "threshold_rule": "Youden's J (sensitivity + specificity - 1) on the validation split",
            "epoch": engine.state.epoch,
            **self.card,
            "validation": {
                key: metrics[key] for key in ("n", "positives", "roc_auc", "sensitivity", "specificity", "accuracy")
            },
        }
        write_text_atomic(self.path, json.dumps(card, indent=2) + "\n")
        logger.info(
            "epoch %d: decision threshold %.3f (validation sensitivity %.3f, specificity %.3f) -> %s",
            engine.state.epoch,
            threshold,
            metrics["sensitivity"],
            metrics["specificity"],
            self.path,
        )


CSV_COLUMNS = ("file", "probability", "predicted_class", "threshold", "label", "heatmap")


def prediction_table(rows: Sequence[dict], class_names: Sequence[str], threshold: float) -> str:
    """CSV text: one row per image with its probability, predicted class and the threshold used."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    with_labels = any(row["label"] is not None for row in rows)
    columns = [c for c in CSV_COLUMNS if c != "label" or with_labels]
    writer.writerow(columns)
    for row in rows:
        values = {
            **row,
            "probability": f"{row['probability']:.6f}",
            "threshold": f"{threshold:.6f}",
            "predicted_class": class_names[int(row["probability"] >= threshold)],
            "label": "" if row["label"] is None else class_names[row["label"]],
        }
        writer.writerow([values[c] for c in columns])
    return text.getvalue()


class PredictionWriter(_PredictionCollector):
    """Inference handler: writes `predictions.csv` (file, probability, predicted class, threshold, heat map).

    With `output_format` "dicom" or "both", each DICOM image also gets `<case>_sr.dcm` beside the CSV: a TID 1500
    report of the probability of the positive class and the predicted class (`write_dicom_sr_classification`).
    "dicom" refuses an image that is not DICOM, with one line naming it, before anything is written.

    Args:
        output_dir: folder of `predictions.csv`.
        class_names: class names (negative, positive); the predicted class is named by them.
        threshold: decision threshold: positive where the probability is at least this.
        output_format: 'nifti' (predictions.csv only), 'dicom' or 'both' (see transforms.OUTPUT_FORMATS).
        label_codes: class name -> {'type': [value, scheme, meaning]} (`dicom_codes.task_codes`); classes without
            get dicom_codes.CLASS_CODES's.
        algorithm: what classified the images (a `dicom_derived.Algorithm` or a mapping of its fields, or
            'weights' instead of weights_sha256); the threshold is added to its parameters.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str],
        threshold: float,
        output_format: str = "nifti",
        label_codes: Mapping[str, Mapping[str, Any]] | None = None,
        algorithm: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.output_dir, self.class_names, self.threshold = Path(output_dir), list(class_names), float(threshold)
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}")
        if output_format != "nifti" and algorithm is None:
            raise ValueError(f"output_format {output_format!r} needs the algorithm (for the DICOM SR)")
        self.output_format = output_format
        self.class_codes = {name: entry["type"] for name, entry in (label_codes or {}).items() if "type" in entry}
        self.algorithm = algorithm

    def epoch_completed(self, engine) -> None:
        path = self.output_dir / "predictions.csv"
        reports = self._dicom_reports()
        write_text_atomic(path, prediction_table(self.rows, self.class_names, self.threshold))
        if reports:
            algorithm = Algorithm.of(self.algorithm)
            algorithm = replace(algorithm, parameters={**algorithm.parameters, "threshold": f"{self.threshold:.6f}"})
        for row, report in reports:
            write_dicom_sr_classification(
                row["file"],
                algorithm,
                report,
                probability=row["probability"],
                finding=self.class_names[1],
                predicted_class=self.class_names[int(row["probability"] >= self.threshold)],
                class_codes=self.class_codes,
            )
            logger.info("wrote %s", report)
        positives = sum(row["probability"] >= self.threshold for row in self.rows)
        logger.info(
            "%d image(s): %d %s, threshold %.3f -> %s",
            len(self.rows),
            positives,
            self.class_names[1],
            self.threshold,
            path,
        )

    def _dicom_reports(self) -> list[tuple[dict, Path]]:
        """(row, SR path) of every DICOM image to report on; refuses a non-DICOM image under 'dicom'."""
        if self.output_format == "nifti":
            return []
        reports = []
        for row in self.rows:
            if is_dicom(row["file"]):
                reports.append((row, dicom_result_paths(row["file"], str(self.output_dir), "")["sr"]))
            elif self.output_format == "dicom":
                output_paths(row["file"], str(self.output_dir), "", None, self.output_format)  # its one-line error
        return reports


class ClassificationReport(PredictionWriter):
    """Evaluation handler: predictions.csv, report.json with every metric, and ROC / confusion-matrix PNGs.

    Args:
        output_dir: folder of the CSV, the report and the figures.
        class_names: class names (negative, positive).
        threshold: decision threshold the metrics are computed at.
        checkpoint: the evaluated checkpoint, named in report.json.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str],
        threshold: float,
        checkpoint: str | os.PathLike = "",
    ) -> None:
        super().__init__(output_dir, class_names, threshold)
        self.checkpoint = str(checkpoint)

    def epoch_completed(self, engine) -> None:
        super().epoch_completed(engine)
        metrics = binary_metrics(self.probabilities, self.labels, self.threshold)
        fpr, tpr, thresholds = roc_curve(self.probabilities, self.labels)
        report = {
            "checkpoint": self.checkpoint,
            "class_names": self.class_names,
            "positive_class": self.class_names[1],
            "metrics": metrics,
            "roc_curve": {
                "fpr": fpr.tolist(),
                "tpr": tpr.tolist(),
                "thresholds": [None if not np.isfinite(t) else float(t) for t in thresholds],
            },
        }
        write_text_atomic(self.output_dir / "report.json", json.dumps(report, indent=2) + "\n")
        from monai_bundle.io import save_confusion_matrix_png, save_roc_png

        save_roc_png(fpr, tpr, metrics, self.output_dir / "roc_curve.png")
        save_confusion_matrix_png(metrics, self.class_names, self.output_dir / "confusion_matrix.png")
        logger.info(
            "accuracy %.3f, sensitivity %.3f, specificity %.3f, ROC AUC %s -> %s",
            metrics["accuracy"],
            metrics["sensitivity"] or 0.0,
            metrics["specificity"] or 0.0,
            "n/a" if metrics["roc_auc"] is None else f"{metrics['roc_auc']:.3f}",
            self.output_dir / "report.json",
        )
