"""What runs a task, whatever the task.

Modules: `precision` (device and bf16 autocast choice), `inferers` (autocast and flip-ensemble
wrappers), `handlers` (training handlers), `gan` (GAN trainers), `metrics` (metrics in mm),
`weights` (checked weight loading), `transfer` (loading what fits of another model's weights),
`pipeline` (the bundle engine: a declared task, ours or an outside bundle, run image by image), `zoo`
(outside Model Zoo bundles: declared, checked, adapted) and `tuning` (an Optuna search over a task's training
overrides); those three are imported by name, not here.
"""

from .gan import GAN_KEYS, Pix2PixTrainer, SegmentationGANTrainer, lsgan_loss
from .handlers import CaseReport, SkipNonFiniteSteps
from .inferers import AutocastInferer, FlipEnsembleInferer
from .metrics import HausdorffDistanceMM
from .precision import (
    CPU_BF16_FLAGS,
    autocast_context,
    autocast_dtype,
    bf16_is_fast,
    cpu_flags,
    cpu_name,
    default_device,
)
from .transfer import freeze_layers, load_matching_weights, read_state_dict
from .weights import (
    WeightsError,
    check_weights_file,
    load_weights,
    shipped_weights_sha256,
)

__all__ = [
    "GAN_KEYS",
    "lsgan_loss",
    "Pix2PixTrainer",
    "SegmentationGANTrainer",
    "SkipNonFiniteSteps",
    "CaseReport",
    "AutocastInferer",
    "FlipEnsembleInferer",
    "HausdorffDistanceMM",
    "CPU_BF16_FLAGS",
    "default_device",
    "cpu_flags",
    "cpu_name",
    "bf16_is_fast",
    "autocast_dtype",
    "autocast_context",
    "read_state_dict",
    "load_matching_weights",
    "freeze_layers",
    "shipped_weights_sha256",
    "WeightsError",
    "check_weights_file",
    "load_weights",
]
