"""What runs a task, whatever the task: device and precision, inferers, training handlers and GAN trainers, metrics in mm, weight loading and transfer."""

from .gan import GAN_KEYS, lsgan_loss, Pix2PixTrainer, SegmentationGANTrainer
from .handlers import SkipNonFiniteSteps
from .inferers import AutocastInferer, FlipEnsembleInferer
from .metrics import HausdorffDistanceMM
from .precision import CPU_BF16_FLAGS, default_device, cpu_flags, cpu_name, bf16_is_fast, autocast_dtype, autocast_context
from .transfer import read_state_dict, load_matching_weights, freeze_layers
from .weights import shipped_weights_sha256, WeightsError, check_weights_file, load_weights


__all__ = ['GAN_KEYS', 'lsgan_loss', 'Pix2PixTrainer', 'SegmentationGANTrainer', 'SkipNonFiniteSteps', 'AutocastInferer', 'FlipEnsembleInferer', 'HausdorffDistanceMM', 'CPU_BF16_FLAGS', 'default_device', 'cpu_flags', 'cpu_name', 'bf16_is_fast', 'autocast_dtype', 'autocast_context', 'read_state_dict', 'load_matching_weights', 'freeze_layers', 'shipped_weights_sha256', 'WeightsError', 'check_weights_file', 'load_weights']
