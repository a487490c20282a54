"""The denoiser's generator: a residual MONAI UNet."""

from __future__ import annotations

import torch
from monai.networks.nets import UNet
from torch import nn


class ResidualUNet(nn.Module):
    """A MONAI UNet that predicts a correction added to its input: output = input + UNet(input).

    Denoising then starts from the identity, and the network only has to learn the noise. Batch
    norm (not instance norm): at inference its statistics do not depend on the slice or window
    size, so patches in training and whole slices in inference give the same answer.
    """

    def __init__(self, spatial_dims: int = 2, channels: tuple[int, ...] = (32, 64, 128, 256),
                 strides: tuple[int, ...] = (2, 2, 2), num_res_units: int = 2, norm: str = "batch"):
        super().__init__()
        self.unet = UNet(spatial_dims, 1, 1, channels, strides, num_res_units=num_res_units, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.unet(x)
