"""Task xray_classification: normal vs pneumonia-like opacity on a chest radiograph, with Grad-CAM."""

from .classification import NETWORKS, GRADCAM_LAYERS, FEATURE_LAYERS, DEFAULT_THRESHOLD, SeedCNN, classifier, positive_weight, roc_curve, youden_threshold, wilson_interval, binary_metrics, threshold_path, stored_threshold, DecisionThresholdSaver, CSV_COLUMNS, prediction_table, PredictionWriter, ClassificationReport, GradCAMd, SaveHeatmapPNGd


__all__ = ['NETWORKS', 'GRADCAM_LAYERS', 'FEATURE_LAYERS', 'DEFAULT_THRESHOLD', 'SeedCNN', 'classifier', 'positive_weight', 'roc_curve', 'youden_threshold', 'wilson_interval', 'binary_metrics', 'threshold_path', 'stored_threshold', 'DecisionThresholdSaver', 'CSV_COLUMNS', 'prediction_table', 'PredictionWriter', 'ClassificationReport', 'GradCAMd', 'SaveHeatmapPNGd']
