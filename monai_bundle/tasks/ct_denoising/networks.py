"""The denoiser's generator: a residual MONAI UNet."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers import Conv
from monai.networks.nets import UNet
from torch import nn


class ResidualUNet(nn.Module):
    """A MONAI UNet that predicts a correction added to its input: output = input + UNet(input).

    Denoising then starts from the identity, and the network only has to learn the noise. Batch
    norm (not instance norm): at inference its statistics do not depend on the slice or window
    size, so patches in training and whole slices in inference give the same answer.

    Args:
        spatial_dims: 2 for slices, 3 for volumes.
        channels: feature channels of each UNet level.
        strides: downsampling stride between levels (one fewer than `channels`).
        num_res_units: residual units per UNet block.
        norm: normalisation layer of the UNet ("batch", see above).
        residual_scale: the UNet's output is multiplied by this fixed number before it is added. Below 1 the
            network starts close to the identity (its random initial output, about unit size after batch norm,
            becomes a small correction), as super-resolution wants: its corrections are a few percent.
        head_channels: 0: the UNet's one output channel is the correction. Above 0: the UNet outputs this many
            feature channels and a 1x1 convolution initialised to zero maps them to the correction, so the
            network starts as the exact identity and keeps every HU until training moves it (the UNet's last
            residual unit passes a batch-normalised channel straight through, so zeroing its own weights
            would not).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        channels: Sequence[int] = (32, 64, 128, 256),
        strides: Sequence[int] = (2, 2, 2),
        num_res_units: int = 2,
        norm: str = "batch",
        residual_scale: float = 1.0,
        head_channels: int = 0,
    ) -> None:
        super().__init__()
        out = int(head_channels) or 1
        self.unet = UNet(spatial_dims, 1, out, channels, strides, num_res_units=num_res_units, norm=norm)
        self.residual_scale = float(residual_scale)
        self.head = None
        if head_channels:
            self.head = Conv[Conv.CONV, spatial_dims](out, 1, kernel_size=1)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        correction = self.unet(x)
        if self.head is not None:
            correction = self.head(correction)
        return x + self.residual_scale * correction
