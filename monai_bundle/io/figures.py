"""PNG pictures for a quick look without a viewer: label overlays, heat maps, ROC curves, confusion matrices."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
from nibabel.orientations import apply_orientation, io_orientation

from monai_bundle.io.registry import read_image
from monai_bundle.palette import LABEL_COLOURS, label_colour  # noqa: F401 - LABEL_COLOURS: re-exported by io


def to_ras(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder/flip array axes so they run R, A, S (nearest axes for oblique grids); also return the voxel size."""
    orientation = io_orientation(affine)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    return apply_orientation(array, orientation), spacing[orientation[:, 0].astype(int)]


def display_window(image: np.ndarray, modality: str) -> tuple[float, float]:
    """Soft-tissue window for CT (W 400, L 40); 1st-99th percentile otherwise."""
    if modality.upper() == "CT":
        return -160.0, 240.0
    low, high = np.percentile(image, [1, 99])
    return float(low), float(high)


def save_overlay_png(
    image_path: str | os.PathLike,
    label_path: str | os.PathLike,
    png_path: str | os.PathLike,
    class_names: list[str],
    modality: str = "CT",
    title: str = "",
) -> Path:
    """Three axial and two coronal slices through the labelled region, labels in colour with a legend."""
    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    image_vol, label_vol = read_image(image_path, ndim=3), read_image(label_path, ndim=3)
    image, spacing = to_ras(np.asarray(image_vol.array, np.float32), image_vol.affine)
    labels, _ = to_ras(np.asarray(label_vol.array).astype(np.int64), label_vol.affine)
    low, high = display_window(image, modality)
    overlay = [(*label_colour(k, class_names[k]), 0.45) for k in range(1, len(class_names))]
    colours = ListedColormap([(0, 0, 0, 0)] + overlay)

    k_range = np.nonzero(labels.any(axis=(0, 1)))[0]
    j_range = np.nonzero(labels.any(axis=(0, 2)))[0]
    k_slices = np.linspace(*(k_range[[0, -1]] if len(k_range) else (0, labels.shape[2] - 1)), 5)[1:4].astype(int)
    j_slices = np.linspace(*(j_range[[0, -1]] if len(j_range) else (0, labels.shape[1] - 1)), 4)[1:3].astype(int)
    views = [("axial", k, image[:, :, k], labels[:, :, k], spacing[1] / spacing[0]) for k in k_slices]
    views += [("coronal", j, image[:, j, :], labels[:, j, :], spacing[2] / spacing[0]) for j in j_slices]

    figure, axes = plt.subplots(1, len(views), figsize=(3.2 * len(views), 3.8), facecolor="black")
    for axis, (plane, index, grey, mask, aspect) in zip(axes, views):
        # radiological view: anterior (axial) or superior (coronal) at the top, the patient's right on the left
        axis.imshow(grey.T[::-1, ::-1], cmap="gray", vmin=low, vmax=high, aspect=aspect, interpolation="bilinear")
        axis.imshow(
            mask.T[::-1, ::-1], cmap=colours, vmin=0, vmax=len(class_names) - 1, aspect=aspect, interpolation="nearest"
        )
        axis.set_title(f"{plane} {index}", color="white", fontsize=9)
        axis.axis("off")
    present = sorted(int(v) for v in np.unique(labels) if v > 0 and v < len(class_names))
    handles = [Patch(color=label_colour(k, class_names[k]), label=class_names[k]) for k in present]
    figure.legend(
        handles=handles, loc="lower center", ncol=min(len(handles), 8) or 1, frameon=False, labelcolor="white"
    )
    figure.suptitle(title, color="white")
    figure.tight_layout(rect=(0, 0.08, 1, 0.95))
    return _save_figure(figure, png_path, dpi=110, facecolor="black")


def _save_figure(figure, png_path: str | os.PathLike, **savefig) -> Path:
    """Save a matplotlib figure to a PNG atomically (temp name, then rename) and close it."""
    import matplotlib.pyplot as plt

    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    temp = png_path.with_name(f".{png_path.name}.tmp.png")
    try:
        figure.savefig(temp, **savefig)
    finally:
        plt.close(figure)
    os.replace(temp, png_path)
    return png_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_roc_png(fpr: np.ndarray, tpr: np.ndarray, metrics: dict, png_path: str | os.PathLike) -> Path:
    """The ROC curve with its AUC and the operating point of the decision threshold."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.6, 4.4))
    auc = metrics.get("roc_auc")
    axis.plot(fpr, tpr, color="tab:blue", label="ROC" + ("" if auc is None else f" (AUC {auc:.3f})"))
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    if metrics.get("sensitivity") is not None and metrics.get("specificity") is not None:
        axis.plot(
            1 - metrics["specificity"],
            metrics["sensitivity"],
            "o",
            color="tab:red",
            label=f"threshold {metrics['threshold']:.3f}",
        )
    axis.set(
        xlabel="1 - specificity (false-positive rate)",
        ylabel="sensitivity (true-positive rate)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=f"ROC, n = {metrics['n']}",
    )
    axis.legend(loc="lower right")
    figure.tight_layout()
    return _save_figure(figure, png_path, dpi=110)


def save_confusion_matrix_png(metrics: dict, class_names: list[str], png_path: str | os.PathLike) -> Path:
    """The 2x2 confusion matrix (rows: reference class, columns: predicted class) with counts."""
    plt = _pyplot()
    table = np.array([[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]])
    figure, axis = plt.subplots(figsize=(4.2, 3.8))
    axis.imshow(table, cmap="Blues")
    for (row, column), count in np.ndenumerate(table):
        colour = "white" if count > table.max() / 2 else "black"
        axis.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=14)
    axis.set_xticks([0, 1], class_names[:2])
    axis.set_yticks([0, 1], class_names[:2])
    axis.set(xlabel="predicted", ylabel="reference", title=f"threshold {metrics['threshold']:.3f}")
    figure.tight_layout()
    return _save_figure(figure, png_path, dpi=110)


def save_heatmap_png(image: np.ndarray, heat: np.ndarray, png_path: str | os.PathLike, title: str = "") -> Path:
    """A radiograph [i, j] (i = column, j = row, as read) with a heat map in [0, 1] over it, displayed rows down."""
    plt = _pyplot()
    grey, heat = np.asarray(image, np.float32).T, np.asarray(heat, np.float32).T
    low, high = np.percentile(grey, [0.5, 99.5])
    height, width = grey.shape
    figure, axis = plt.subplots(figsize=(5.0, 5.0 * height / width + 0.4), facecolor="black")
    axis.imshow(grey, cmap="gray", vmin=low, vmax=high if high > low else low + 1)
    shown = axis.imshow(
        np.ma.masked_less(heat, 0.2), cmap="jet", alpha=0.4, vmin=0.0, vmax=1.0
    )  # faint values left clear
    figure.colorbar(shown, ax=axis, fraction=0.04, pad=0.02).ax.tick_params(colors="white")
    axis.set_title(textwrap.fill(title, 70), color="white", fontsize=8)
    axis.axis("off")
    figure.tight_layout()
    return _save_figure(figure, png_path, dpi=100, facecolor="black")
