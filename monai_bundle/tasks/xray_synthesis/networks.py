"""The class-conditional generator and discriminator: MONAI's DCGAN-style networks, conditioned the cGAN way.

The generator gets a one-hot class code after its noise vector, and the discriminator sees the
image with the class as constant extra channels. The generator returns that same (image, class
channels) stack, so MONAI's own `GanTrainer` trains the pair unchanged. Spectral norm in the
discriminator stabilises training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import Discriminator, Generator
from torch import nn


def class_maps(codes: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(B, classes) one-hot codes -> (B, classes, *size) constant maps."""
    return codes[(...,) + (None,) * len(size)].expand(*codes.shape, *size)


class ConditionalGenerator(nn.Module):
    """MONAI `Generator`: (noise, one-hot class) -> image in [0, 1] (sigmoid), returned with its class maps.

    Input: (B, latent_size + num_classes). Output: (B, 1 + num_classes, H, W); channel 0 is the image.

    Args:
        latent_size: length of the noise vector.
        num_classes: number of classes (length of the one-hot code).
        image_size: output width and height; a multiple of 2 ** len(channels).
        channels: feature channels of the upsampling layers, coarsest first.
        num_res_units: residual units per layer.
        norm: normalisation layer.

    Raises:
        ValueError: `image_size` is not a multiple of 2 ** len(channels).
    """

    def __init__(
        self,
        latent_size: int = 64,
        num_classes: int = 2,
        image_size: int = 64,
        channels: Sequence[int] = (128, 64, 32, 16),
        num_res_units: int = 1,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        start = image_size // 2 ** len(channels)
        if start * 2 ** len(channels) != image_size or start < 1:
            raise ValueError(f"image_size {image_size} must be a multiple of 2**{len(channels)}")
        self.latent_size, self.num_classes, self.image_size = latent_size, num_classes, image_size
        self.net = Generator(
            (latent_size + num_classes,),
            (2 * channels[0], start, start),
            (*channels, 1),
            (2,) * len(channels) + (1,),
            num_res_units=num_res_units,
            norm=norm,
        )

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        image = torch.sigmoid(self.net(latents))
        codes = latents[:, self.latent_size :].to(image.dtype)
        return torch.cat([image, class_maps(codes, image.shape[2:])], 1)


class ConditionalDiscriminator(nn.Module):
    """MONAI `Discriminator` on (image, class maps) with spectral norm on every conv and linear layer; returns logits.

    Args:
        num_classes: number of classes (class map channels after the image).
        image_size: input width and height.
        channels: feature channels of the downsampling layers, finest first.
        dropout: dropout probability.
    """

    def __init__(
        self,
        num_classes: int = 2,
        image_size: int = 64,
        channels: Sequence[int] = (32, 64, 128, 256),
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        self.net = Discriminator(
            (1 + num_classes, image_size, image_size),
            channels,
            (2,) * len(channels),
            num_res_units=0,
            act=("leakyrelu", {"negative_slope": 0.2}),
            norm=None,
            dropout=dropout,
            last_act=None,
        )
        for module in list(self.net.modules()):
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.utils.parametrizations.spectral_norm(module)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)
