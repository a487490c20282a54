"""The denoiser's generator: a residual MONAI UNet."""

from __future__ import annotations

from collections.abc import Sequence

import torch
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
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        channels: Sequence[int] = (32, 64, 128, 256),
        strides: Sequence[int] = (2, 2, 2),
        num_res_units: int = 2,
        norm: str = "batch",
        residual_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.unet = UNet(spatial_dims, 1, 1, channels, strides, num_res_units=num_res_units, norm=norm)
        self.residual_scale = float(residual_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual_scale * self.unet(x)
