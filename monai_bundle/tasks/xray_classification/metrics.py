"""A binary classifier's numbers: class balance, ROC, the decision threshold and metrics with confidence intervals."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_roc_auc

logger = logging.getLogger(__name__)


DEFAULT_THRESHOLD = 0.5


def positive_weight(datalist: Sequence[dict]) -> torch.Tensor:
    """`pos_weight` for BCEWithLogitsLoss: negatives / positives of a training list (1 when balanced).

    Weighing the rarer class up keeps an imbalanced set from teaching the network to call everything
    the common class.

    Args:
        datalist: training items, each with "label" (the class index, or a one-element list of it).

    Raises:
        ValueError: the list lacks one of the classes.
    """
    labels = [int(np.ravel(item["label"])[0]) for item in datalist]
    positives = sum(labels)
    if positives == 0 or positives == len(labels):
        raise ValueError(f"the training list needs both classes; it has {positives} positive of {len(labels)}")
    weight = (len(labels) - positives) / positives
    logger.info(
        "class balance: %d positive, %d negative -> pos_weight %.3f", positives, len(labels) - positives, weight
    )
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
        "n": int(y.size),
        "positives": int(y.sum()),
        "threshold": float(threshold),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "accuracy": ratio(tp + tn, y.size),
        "sensitivity": sensitivity,
        "specificity": ratio(tn, tn + fp),
        "precision": precision,
        "f1": f1,
        "roc_auc": auc,
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
    """The decision threshold stored with a checkpoint; `default` (with a warning) when none is.

    Args:
        checkpoint: the checkpoint; its threshold card is `threshold_path(checkpoint)`.
        default: the threshold when no card is stored.

    Raises:
        ValueError: the card is unreadable or its threshold is outside [0, 1].
    """
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
