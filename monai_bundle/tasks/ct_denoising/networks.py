"""The denoiser's generator: a residual MONAI UNet."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers import Conv
from monai.networks.nets import UNet
from torch import nn
from torch.nn import functional as F

NOISE_INPUT_SCALE = 10.0
"""The noise level given to the network is multiplied by this (levels of 0.005-0.1 of the window become 0.05-1)."""


def noise_level(images: torch.Tensor, low: float = 0.02, high: float = 0.98) -> torch.Tensor:
    """Gaussian noise level of each 2D image in a batch (N, 1, H, W), in the images' own units.

    Immerkaer's Laplacian difference mask (as `metrics.noise_sigma`) with a robust spread: 1.4826 x the median
    absolute response / 6 (the mask's norm), so edges barely count. Only pixels whose 3x3 neighbourhood lies
    strictly inside (low, high) are used: air, padding and bone clipped by the HU window carry no noise. An
    image without such pixels gets 0. Measured in float32 even under autocast, so that a bf16 machine gives the
    network the same level as any other.
    """
    with torch.autocast(images.device.type, enabled=False):
        images = images.float()
        mask = images.new_tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]).view(1, 1, 3, 3)
        response = F.conv2d(images, mask).abs() / 6.0
        clipped = ((images <= low) | (images >= high)).float()
        usable = F.max_pool2d(clipped, 3, stride=1) == 0
        response = torch.where(usable, response, torch.full_like(response, float("nan")))
        return torch.nan_to_num(1.4826 * response.flatten(1).nanmedian(dim=1).values, nan=0.0)


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
        noise_input: 2D only. The UNet also sees the input's noise level (`noise_level`, measured by the network on
            each image or window it is given, x `NOISE_INPUT_SCALE`) as a second, constant channel, so one network
            can denoise as hard as each scan's noise needs without being told the dose (FFDNet's noise map,
            estimated instead of given).
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
        noise_input: bool = False,
    ) -> None:
        super().__init__()
        if noise_input and spatial_dims != 2:
            raise ValueError(f"noise_input needs 2D images (spatial_dims 2, got {spatial_dims})")
        out = int(head_channels) or 1
        self.noise_input = bool(noise_input)
        inputs = 2 if noise_input else 1
        self.unet = UNet(spatial_dims, inputs, out, channels, strides, num_res_units=num_res_units, norm=norm)
        self.residual_scale = float(residual_scale)
        self.head = None
        if head_channels:
            self.head = Conv[Conv.CONV, spatial_dims](out, 1, kernel_size=1)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = x
        if self.noise_input:
            level = noise_level(x).to(x.dtype) * NOISE_INPUT_SCALE
            features = torch.cat([x, level.view(-1, 1, 1, 1).expand_as(x)], dim=1)
        correction = self.unet(features)
        if self.head is not None:
            correction = self.head(correction)
        return x + self.residual_scale * correction
