"""The classifiers a config can name, one logit out (the sigmoid lives in the loss and in post-processing).

Each network outputs one logit for the positive class (`BCEWithLogitsLoss` in training,
`Activationsd(sigmoid=True)` after inference), so one probability per image comes out of every config.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import DenseNet121
from torch import nn

NETWORKS = ("seed_cnn", "densenet121")


GRADCAM_LAYERS = {"seed_cnn": "relu2", "densenet121": "class_layers.relu"}
"""The layer whose activations Grad-CAM weighs: the last convolutional feature map of each network."""


FEATURE_LAYERS = {"seed_cnn": ("conv1", "conv2"), "densenet121": ("features",)}
"""The feature extractor of each network: what fine-tuning may freeze."""


class SeedCNN(nn.Module):
    """The seed's small CNN: Conv32-Pool-Drop, Conv64-Pool-Drop, Dense128-Drop, 1 output.

    Valid (unpadded) 3x3 convolutions and 2x2 max-pooling as in the seed's Keras model; with a
    150x150 input the flattened features are 36x36x64 = 82944 values. Returns a logit.

    Args:
        in_channels: image channels (1: grey radiographs).
        spatial_size: input (height, width), or one int for a square; fixes the dense layer's size.
    """

    def __init__(self, in_channels: int = 1, spatial_size: int | Sequence[int] = 150) -> None:
        super().__init__()
        height, width = (spatial_size, spatial_size) if isinstance(spatial_size, int) else spatial_size
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=3)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.drop1 = nn.Dropout(0.25)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.drop2 = nn.Dropout(0.25)
        self.flatten = nn.Flatten()
        features = 64 * _seed_feature_size(height) * _seed_feature_size(width)
        self.fc1 = nn.Linear(features, 128)
        self.relu3 = nn.ReLU()
        self.drop3 = nn.Dropout(0.5)
        self.out = nn.Linear(128, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.pool1(self.relu1(self.conv1(x))))
        x = self.drop2(self.pool2(self.relu2(self.conv2(x))))
        return self.out(self.drop3(self.relu3(self.fc1(self.flatten(x)))))


def _seed_feature_size(size: int) -> int:
    """Side of the seed CNN's last feature map: two rounds of 3x3 valid convolution and 2x2 pooling."""
    return ((size - 2) // 2 - 2) // 2


def classifier(name: str, spatial_size: int | Sequence[int] = 150, in_channels: int = 1) -> nn.Module:
    """The network a config names: 'seed_cnn' or 'densenet121' (MONAI's), one logit out.

    Args:
        name: one of NETWORKS.
        spatial_size: input size (only the seed CNN depends on it).
        in_channels: image channels.

    Raises:
        ValueError: `name` is not one of NETWORKS.
    """
    if name == "seed_cnn":
        return SeedCNN(in_channels, spatial_size)
    if name == "densenet121":
        return DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=1)
    raise ValueError(f"unknown network {name!r}; choose one of {', '.join(NETWORKS)}")
