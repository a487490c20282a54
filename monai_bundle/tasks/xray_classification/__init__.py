"""Task xray_classification: normal vs pneumonia-like opacity on a chest radiograph, with Grad-CAM.

Modules: `networks` (the classifiers a config names), `metrics` (class balance, ROC, the decision
threshold, metrics with confidence intervals), `handlers` (the threshold saver, predictions.csv and
the evaluation report), `transforms` (Grad-CAM heat maps and their PNGs).
"""

from .handlers import (
    CSV_COLUMNS,
    ClassificationReport,
    DecisionThresholdSaver,
    PredictionWriter,
    prediction_table,
)
from .metrics import (
    DEFAULT_THRESHOLD,
    binary_metrics,
    positive_weight,
    roc_curve,
    stored_threshold,
    threshold_path,
    wilson_interval,
    youden_threshold,
)
from .networks import FEATURE_LAYERS, GRADCAM_LAYERS, NETWORKS, SeedCNN, classifier
from .transforms import GradCAMd, SaveHeatmapPNGd

__all__ = [
    "NETWORKS",
    "GRADCAM_LAYERS",
    "FEATURE_LAYERS",
    "SeedCNN",
    "classifier",
    "DEFAULT_THRESHOLD",
    "positive_weight",
    "roc_curve",
    "youden_threshold",
    "wilson_interval",
    "binary_metrics",
    "threshold_path",
    "stored_threshold",
    "DecisionThresholdSaver",
    "CSV_COLUMNS",
    "prediction_table",
    "PredictionWriter",
    "ClassificationReport",
    "GradCAMd",
    "SaveHeatmapPNGd",
]
