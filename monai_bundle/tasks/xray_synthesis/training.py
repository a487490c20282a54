"""What MONAI's `GanTrainer` needs for a conditional GAN: latents with classes, labelled real batches, losses.

Stabilisers: one-sided label smoothing of the real labels (`GanLosses`); the two learning rates
are the config's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from monai_bundle.engines import autocast_context, autocast_dtype
from monai_bundle.tasks.xray_synthesis.networks import class_maps


class ClassLatents:
    """`GanTrainer`'s `g_prepare_batch`: Gaussian noise followed by the one-hot code of a random class.

    Args:
        num_classes: number of classes.
        generator: random number generator of the classes and the noise (None: torch's global one).
    """

    def __init__(self, num_classes: int, generator: torch.Generator | None = None) -> None:
        self.num_classes, self.generator = num_classes, generator

    def __call__(
        self,
        num_latents: int,
        latent_size: int,
        device: torch.device | str | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> torch.Tensor:
        classes = torch.randint(self.num_classes, (num_latents,), generator=self.generator)
        latents = latents_for(classes, latent_size, self.num_classes, self.generator)
        return latents.to(device, non_blocking=non_blocking)


def latents_for(
    classes: torch.Tensor, latent_size: int, num_classes: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Noise vectors with the one-hot codes of `classes` appended."""
    noise = torch.randn(len(classes), latent_size, generator=generator)
    return torch.cat([noise, F.one_hot(classes.long(), num_classes).float()], 1)


class LabelledImages:
    """`GanTrainer`'s `d_prepare_batch`: a batch dict's images with their class maps (what the generator returns).

    Args:
        num_classes: number of classes.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def __call__(
        self,
        batchdata: Mapping[str, Any],
        device: torch.device | str | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> torch.Tensor:
        images = torch.as_tensor(batchdata["image"]).float()
        labels = torch.as_tensor(batchdata["label"]).reshape(-1).long()
        codes = F.one_hot(labels, self.num_classes).float()
        return torch.cat([images, class_maps(codes, images.shape[2:])], 1).to(device, non_blocking=non_blocking)


class GanLosses:
    """Non-saturating GAN losses for `GanTrainer`, the discriminator under autocast; real labels smoothed.

    Args:
        discriminator: the discriminator both losses run.
        precision: autocast of the discriminator: 'auto', 'bf16', 'fp16' or 'fp32'.
        device: the device the discriminator runs on.
        real_label: target of real images (below 1: one-sided label smoothing).
    """

    def __init__(
        self,
        discriminator: nn.Module,
        precision: str = "auto",
        device: torch.device | str = "cpu",
        real_label: float = 0.9,
    ) -> None:
        self.discriminator, self.real_label = discriminator, float(real_label)
        self.device = torch.device(device)
        self.dtype = autocast_dtype(precision, self.device)

    def _logits(self, images: torch.Tensor) -> torch.Tensor:
        with autocast_context(self.dtype, self.device):
            return self.discriminator(images).float()

    def discriminator_loss(self, fakes: torch.Tensor, reals: torch.Tensor) -> torch.Tensor:
        real_logits, fake_logits = self._logits(reals), self._logits(fakes.detach())
        real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, self.real_label))
        fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        return 0.5 * (real + fake)

    def generator_loss(self, fakes: torch.Tensor) -> torch.Tensor:
        logits = self._logits(fakes)
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
