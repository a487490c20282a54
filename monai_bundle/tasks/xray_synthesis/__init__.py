"""Task xray_synthesis: a class-conditional GAN for synthetic radiographs, its KID/MS-SSIM/privacy report.

Modules: `networks` (the conditional generator and discriminator), `training` (latents, real
batches and losses for MONAI's `GanTrainer`), `sampling` (images of a trained generator, a
class-folder set of SYNTHETIC PNGs), `metrics` (KID, MS-SSIM diversity, privacy, the feature
network), `reports` (the synthesis report).
"""

from .metrics import (
    MS_SSIM_WEIGHTS,
    PenultimateFeatures,
    kernel_inception_distance,
    ms_ssim_diversity,
    privacy_report,
)
from .networks import ConditionalDiscriminator, ConditionalGenerator, class_maps
from .reports import load_image_set, synthesis_report, write_report
from .sampling import SYNTHETIC_PREFIX, generate, write_samples
from .training import ClassLatents, GanLosses, LabelledImages, latents_for

__all__ = [
    "class_maps",
    "ConditionalGenerator",
    "ConditionalDiscriminator",
    "ClassLatents",
    "latents_for",
    "LabelledImages",
    "GanLosses",
    "SYNTHETIC_PREFIX",
    "generate",
    "write_samples",
    "MS_SSIM_WEIGHTS",
    "kernel_inception_distance",
    "ms_ssim_diversity",
    "privacy_report",
    "PenultimateFeatures",
    "synthesis_report",
    "load_image_set",
    "write_report",
]
