"""X-ray classification: the networks, the decision threshold, metrics, reports and Grad-CAM heat maps.

The networks output one logit for the positive class (the seed's sigmoid lives in the loss,
`BCEWithLogitsLoss`, and in post-processing, `Activationsd(sigmoid=True)`), so one
probability per image comes out of every config.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.metrics import compute_roc_auc
from monai.networks.nets import DenseNet121
from monai.transforms import MapTransform
from monai.visualize import GradCAM
from torch import nn

from monai_bundle.io import source_path, write_text_atomic

logger = logging.getLogger(__name__)


NETWORKS = ("seed_cnn", "densenet121")


GRADCAM_LAYERS = {"seed_cnn": "relu2", "densenet121": "class_layers.relu"}
"""The layer whose activations Grad-CAM weighs: the last convolutional feature map of each network."""


FEATURE_LAYERS = {"seed_cnn": ("conv1", "conv2"), "densenet121": ("features",)}
"""The feature extractor of each network: what fine-tuning may freeze."""


DEFAULT_THRESHOLD = 0.5


class SeedCNN(nn.Module):
    """The seed's small CNN: Conv32-Pool-Drop, Conv64-Pool-Drop, Dense128-Drop, 1 output.

    Valid (unpadded) 3x3 convolutions and 2x2 max-pooling as in the seed's Keras model; with a
    150x150 input the flattened features are 36x36x64 = 82944 values. Returns a logit.
    """

    def __init__(self, in_channels: int = 1, spatial_size: int | Sequence[int] = 150):
        super().__init__()
        height, width = (spatial_size, spatial_size) if isinstance(spatial_size, int) else spatial_size
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=3)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.drop1 = nn.Dropout(0.25)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.drop2 = nn.Dropout(0.25)
        self.flatten = nn.Flatten()
        features = 64 * _seed_feature_size(height) * _seed_feature_size(width)
        self.fc1 = nn.Linear(features, 128)
        self.relu3 = nn.ReLU()
        self.drop3 = nn.Dropout(0.5)
        self.out = nn.Linear(128, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.pool1(self.relu1(self.conv1(x))))
        x = self.drop2(self.pool2(self.relu2(self.conv2(x))))
        return self.out(self.drop3(self.relu3(self.fc1(self.flatten(x)))))


def _seed_feature_size(size: int) -> int:
    """Side of the seed CNN's last feature map: two rounds of 3x3 valid convolution and 2x2 pooling."""
    return ((size - 2) // 2 - 2) // 2


def classifier(name: str, spatial_size: int | Sequence[int] = 150, in_channels: int = 1) -> nn.Module:
    """The network a config names: 'seed_cnn' or 'densenet121' (MONAI's), one logit out."""
    if name == "seed_cnn":
        return SeedCNN(in_channels, spatial_size)
    if name == "densenet121":
        return DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=1)
    raise ValueError(f"unknown network {name!r}; choose one of {', '.join(NETWORKS)}")


def positive_weight(datalist: Sequence[dict]) -> torch.Tensor:
    """`pos_weight` for BCEWithLogitsLoss: negatives / positives of a training list (1 when balanced)."""
    labels = [int(np.ravel(item["label"])[0]) for item in datalist]
    positives = sum(labels)
    if positives == 0 or positives == len(labels):
        raise ValueError(f"the training list needs both classes; it has {positives} positive of {len(labels)}")
    weight = (len(labels) - positives) / positives
    logger.info("class balance: %d positive, %d negative -> pos_weight %.3f", positives, len(labels) - positives, weight)
    return torch.tensor([weight], dtype=torch.float32)


def roc_curve(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rates, true-positive rates and the thresholds (predict positive at p >= t) between them."""
    probabilities, labels = np.asarray(probabilities, np.float64), np.asarray(labels).astype(bool)
    thresholds = np.unique(probabilities)[::-1]
    positive = probabilities[None, :] >= thresholds[:, None]
    tpr = (positive & labels).sum(1) / max(labels.sum(), 1)
    fpr = (positive & ~labels).sum(1) / max((~labels).sum(), 1)
    return np.r_[0.0, fpr], np.r_[0.0, tpr], np.r_[np.inf, thresholds]


def youden_threshold(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (Youden's J); midway between neighbouring scores."""
    fpr, tpr, thresholds = roc_curve(probabilities, labels)
    best = int(np.argmax(tpr - fpr))
    if not np.isfinite(thresholds[best]):
        return 1.0
    below = np.asarray(probabilities)[np.asarray(probabilities) < thresholds[best]]
    return float((thresholds[best] + below.max()) / 2) if below.size else float(thresholds[best])


def wilson_interval(successes: int, total: int, z: float = 1.959964) -> tuple[float | None, float | None]:
    """95% Wilson score interval of a proportion (None, None when total is 0)."""
    if total == 0:
        return None, None
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def binary_metrics(probabilities: Sequence[float], labels: Sequence[int], threshold: float) -> dict[str, Any]:
    """Accuracy, sensitivity, specificity, precision, F1 (with counts and 95% Wilson intervals) and ROC AUC."""
    p, y = np.asarray(probabilities, np.float64), np.asarray(labels).astype(bool)
    predicted = p >= threshold
    tp, fp = int((predicted & y).sum()), int((predicted & ~y).sum())
    tn, fn = int((~predicted & ~y).sum()), int((~predicted & y).sum())

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    precision, sensitivity = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f1 = 2 * precision * sensitivity / (precision + sensitivity) if precision and sensitivity else 0.0
    both_classes = 0 < y.sum() < y.size
    auc = float(compute_roc_auc(torch.as_tensor(p), torch.as_tensor(y.astype(np.float64)))) if both_classes else None
    return {
        "n": int(y.size), "positives": int(y.sum()), "threshold": float(threshold),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "accuracy": ratio(tp + tn, y.size), "sensitivity": sensitivity, "specificity": ratio(tn, tn + fp),
        "precision": precision, "f1": f1, "roc_auc": auc,
        "ci95": {
            "accuracy": wilson_interval(tp + tn, y.size),
            "sensitivity": wilson_interval(tp, tp + fn),
            "specificity": wilson_interval(tn, tn + fp),
            "precision": wilson_interval(tp, tp + fp),
        },
    }


def threshold_path(checkpoint: str | os.PathLike) -> Path:
    """Where a checkpoint's decision threshold is stored: beside it, same name, `.json`."""
    return Path(checkpoint).with_suffix(".json")


def stored_threshold(checkpoint: str | os.PathLike, default: float = DEFAULT_THRESHOLD) -> float:
    """The decision threshold stored with a checkpoint; `default` (with a warning) when none is."""
    path = threshold_path(checkpoint)
    if not path.is_file():
        logger.warning("%s: no stored decision threshold; using %.3f", path, default)
        return float(default)
    try:
        threshold = float(json.loads(path.read_text())["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: cannot read the decision threshold ({error})") from None
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"{path}: decision threshold {threshold} is outside [0, 1]")
    return threshold


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
            self.rows.append({
                "file": str((getattr(item["image"], "meta", None) or {}).get("filename_or_obj", "")),
                "probability": float(torch.as_tensor(item["pred"]).float().reshape(-1)[0]),
                "label": None if label is None else int(torch.as_tensor(label).reshape(-1)[0]),
                "heatmap": item.get("cam_path", ""),
            })

    @property
    def probabilities(self) -> np.ndarray:
        return np.array([row["probability"] for row in self.rows])

    @property
    def labels(self) -> np.ndarray:
        return np.array([row["label"] for row in self.rows])

    def epoch_completed(self, engine) -> None:
        raise NotImplementedError


class DecisionThresholdSaver(_PredictionCollector):
    """Validation handler: whenever the key metric improves, store the Youden threshold of that epoch beside the checkpoint."""

    def __init__(self, checkpoint: str, network_name: str, spatial_size, class_names: Sequence[str]):
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
            "validation": {key: metrics[key] for key in ("n", "positives", "roc_auc", "sensitivity", "specificity", "accuracy")},
        }
        write_text_atomic(self.path, json.dumps(card, indent=2) + "\n")
        logger.info("epoch %d: decision threshold %.3f (validation sensitivity %.3f, specificity %.3f) -> %s",
                    engine.state.epoch, threshold, metrics["sensitivity"], metrics["specificity"], self.path)


CSV_COLUMNS = ("file", "probability", "predicted_class", "threshold", "label", "heatmap")


def prediction_table(rows: Sequence[dict], class_names: Sequence[str], threshold: float) -> str:
    """CSV text: one row per image with its probability, predicted class and the threshold used."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    with_labels = any(row["label"] is not None for row in rows)
    columns = [c for c in CSV_COLUMNS if c != "label" or with_labels]
    writer.writerow(columns)
    for row in rows:
        values = {**row, "probability": f"{row['probability']:.6f}", "threshold": f"{threshold:.6f}",
                  "predicted_class": class_names[int(row["probability"] >= threshold)],
                  "label": "" if row["label"] is None else class_names[row["label"]]}
        writer.writerow([values[c] for c in columns])
    return text.getvalue()


class PredictionWriter(_PredictionCollector):
    """Inference handler: writes `predictions.csv` (file, probability, predicted class, threshold, heat map)."""

    def __init__(self, output_dir: str, class_names: Sequence[str], threshold: float):
        super().__init__()
        self.output_dir, self.class_names, self.threshold = Path(output_dir), list(class_names), float(threshold)

    def epoch_completed(self, engine) -> None:
        path = self.output_dir / "predictions.csv"
        write_text_atomic(path, prediction_table(self.rows, self.class_names, self.threshold))
        positives = sum(row["probability"] >= self.threshold for row in self.rows)
        logger.info("%d image(s): %d %s, threshold %.3f -> %s", len(self.rows), positives, self.class_names[1], self.threshold, path)


class ClassificationReport(PredictionWriter):
    """Evaluation handler: predictions.csv, report.json with every metric, and ROC / confusion-matrix PNGs."""

    def __init__(self, output_dir: str, class_names: Sequence[str], threshold: float, checkpoint: str = ""):
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
            "roc_curve": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": [None if not np.isfinite(t) else float(t) for t in thresholds]},
        }
        write_text_atomic(self.output_dir / "report.json", json.dumps(report, indent=2) + "\n")
        from monai_bundle.io import save_confusion_matrix_png, save_roc_png

        save_roc_png(fpr, tpr, metrics, self.output_dir / "roc_curve.png")
        save_confusion_matrix_png(metrics, self.class_names, self.output_dir / "confusion_matrix.png")
        logger.info("accuracy %.3f, sensitivity %.3f, specificity %.3f, ROC AUC %s -> %s", metrics["accuracy"],
                    metrics["sensitivity"] or 0.0, metrics["specificity"] or 0.0,
                    "n/a" if metrics["roc_auc"] is None else f"{metrics['roc_auc']:.3f}", self.output_dir / "report.json")


class GradCAMd(MapTransform):
    """Add a Grad-CAM heat map (values in [0, 1], same grid as the network input) of the positive logit.

    Runs the network once more with gradients (the evaluator's own pass has none) in fp32.
    """

    def __init__(self, keys: KeysCollection, network: nn.Module, network_name: str, output_key: str = "cam"):
        super().__init__(keys)
        self.network, self.layer, self.output_key = network, GRADCAM_LAYERS[network_name], output_key

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            training = self.network.training
            self.network.eval()
            try:
                with torch.enable_grad(), torch.autocast(image.device.type, enabled=False):
                    cam = GradCAM(nn_module=self.network, target_layers=self.layer)(
                        image.as_tensor()[None].float().detach().clone(), class_idx=0)
            finally:
                self.network.train(training)
            heat = image.clone()
            heat.array = cam[0].detach().to(image.device)
            d[self.output_key] = heat
        return d


class SaveHeatmapPNGd(MapTransform):
    """Write `<case>_gradcam.png`: the radiograph as read with the heat map (already on its grid) over it."""

    def __init__(self, keys: KeysCollection, output_dir: str, class_names: Sequence[str], threshold: float,
                 output_postfix: str = "gradcam"):
        super().__init__(keys)
        self.output_dir, self.class_names, self.threshold = output_dir, list(class_names), float(threshold)
        self.output_postfix = output_postfix

    def __call__(self, data):
        from monai_bundle.io import output_path, read_radiograph, save_heatmap_png

        d = dict(data)
        for key in self.key_iterator(d):
            source = source_path(d[key])
            probability = float(torch.as_tensor(d["pred"]).float().reshape(-1)[0])
            verdict = self.class_names[int(probability >= self.threshold)]
            title = f"{Path(source).name}: p({self.class_names[1]}) = {probability:.3f} -> {verdict} (threshold {self.threshold:.3f})"
            target = output_path(source, self.output_dir, self.output_postfix, ".png")
            heat = np.asarray(d[key].detach().cpu())[0]
            d[f"{key}_png_path"] = str(save_heatmap_png(read_radiograph(source).array, heat, target, title))
        return d
