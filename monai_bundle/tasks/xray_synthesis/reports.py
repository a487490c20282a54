"""The synthesis report: KID and diversity per class against real image sets, the privacy report, report.json."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from monai_bundle.tasks.xray_synthesis.metrics import (
    kernel_inception_distance,
    ms_ssim_diversity,
    privacy_report,
)
from monai_bundle.tasks.xray_synthesis.networks import ConditionalGenerator
from monai_bundle.tasks.xray_synthesis.sampling import generate

logger = logging.getLogger(__name__)


def synthesis_report(
    generator: ConditionalGenerator,
    real_sets: dict[str, tuple[torch.Tensor, torch.Tensor]],
    features: Callable[[torch.Tensor], torch.Tensor],
    class_names: Sequence[str],
    num_samples: int = 500,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict:
    """KID and diversity per class against real images, and the privacy report.

    KID is measured against every real set; "training" and "held_out" also give the real-vs-real
    floor and the privacy report. (An untrained generator scored the same way is the other
    reference: scripts/train_synthesis_demo_weights.py does that.)

    Args:
        generator: the generator to judge.
        real_sets: {"training": (images, labels), "held_out": (images, labels), ...}, images
            (N, 1, H, W) in [0, 1] at the generator's size (`load_image_set`).
        features: images -> feature vectors for KID (`PenultimateFeatures`).
        class_names: class names in class order; the report's keys.
        num_samples: synthetic images per class.
        seed: seed of the samples (class k uses seed + k) and of the random subsets and pairs.
        device: the device the generator runs on.
    """
    report: dict = {"kid_features": "penultimate layer of the feature network", "classes": {}}
    for label, name in enumerate(class_names):
        fake = generate(generator, [label] * num_samples, seed + label, device=device)
        fake_features = features(fake)
        entry = {"n_synthetic": num_samples, "ms_ssim_synthetic": ms_ssim_diversity(fake, seed=seed)}
        real = {set_name: images[labels == label] for set_name, (images, labels) in real_sets.items()}
        real_features = {set_name: features(images) for set_name, images in real.items()}
        for set_name, images in real.items():
            kid, kid_std = kernel_inception_distance(real_features[set_name], fake_features, seed=seed)
            entry[f"kid_vs_{set_name}"] = {"mean": kid, "std": kid_std, "n_real": len(images)}
            entry[f"ms_ssim_{set_name}"] = ms_ssim_diversity(images, seed=seed)
        if "training" in real and "held_out" in real:
            floor, floor_std = kernel_inception_distance(
                real_features["training"], real_features["held_out"], seed=seed
            )
            entry["kid_training_vs_held_out"] = {"mean": floor, "std": floor_std}
            entry["privacy"] = privacy_report(fake, real["training"], real["held_out"], seed=seed)
        report["classes"][name] = entry
    return report


def load_image_set(datalist: Sequence[dict], transform: Callable) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 1, H, W), labels (N,)) of a class-folder datalist through a MONAI transform.

    Args:
        datalist: items with "image" and "label" (`class_folder_datalist`).
        transform: the preprocessing that gives the generator's image size and range.
    """
    items = [transform(dict(item)) for item in datalist]
    images = torch.stack([torch.as_tensor(item["image"]).float() for item in items])
    labels = torch.as_tensor([int(np.asarray(item["label"]).reshape(-1)[0]) for item in items])
    return images, labels


def write_report(report: dict, output_dir: str | os.PathLike) -> Path:
    """report.json in `output_dir`, and a one-line summary per class in the log; returns the path.

    Args:
        report: what `synthesis_report` returns.
        output_dir: folder of report.json.
    """
    from monai_bundle.io import write_text_atomic

    path = Path(output_dir) / "report.json"
    write_text_atomic(path, json.dumps(report, indent=2) + "\n")
    for name, entry in report["classes"].items():
        privacy = entry.get("privacy", {})
        logger.info(
            "%s: KID vs held-out %.4f, MS-SSIM synthetic %.3f, near copies %.1f%%",
            name,
            entry.get("kid_vs_held_out", {}).get("mean", float("nan")),
            entry["ms_ssim_synthetic"],
            100 * privacy.get("fraction_near_copies", float("nan")),
        )
    return path
