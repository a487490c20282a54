"""ProgressInferer: the fraction of network windows done, exact for the inferers the configs use, outputs unchanged."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import Inferer, SimpleInferer, SliceInferer, SlidingWindowInferer

from monai_bundle.engines.inferers import AutocastInferer, FlipEnsembleInferer, ProgressInferer, network_windows


def network(batch: torch.Tensor) -> torch.Tensor:
    """Position-dependent, so a window placed or blended wrongly would change the output."""
    ramp = torch.arange(batch.shape[-1], dtype=batch.dtype)
    return batch.mean(1, keepdim=True) * 2 + ramp


@pytest.mark.parametrize(
    ("inferer", "shape"),
    [
        (SlidingWindowInferer((32, 32, 32), 4, 0.5), (1, 1, 85, 70, 40)),  # 5 x 4 x 2 windows
        (SlidingWindowInferer((64, 64, 64), 3, 0.25), (2, 1, 40, 70, 130)),  # two images, one axis under the ROI
        (SlidingWindowInferer((64, -1, 64), 4, 0.5), (1, 1, 100, 30, 64)),  # -1: the whole axis
        (SlidingWindowInferer(32, 5, 0.7), (1, 1, 50, 33)),  # 2D, one int for every axis
        (SliceInferer(spatial_dim=2, roi_size=(64, 64), sw_batch_size=3, overlap=0.0), (1, 1, 100, 90, 17)),
        (FlipEnsembleInferer(SliceInferer(spatial_dim=0, roi_size=(-1, -1), sw_batch_size=8)), (1, 1, 20, 32, 32)),
        (SimpleInferer(), (3, 1, 20, 20)),
    ],
)
def test_progress_counts_every_window_once_and_leaves_outputs_alone(inferer, shape):
    torch.manual_seed(0)
    inputs = torch.rand(shape)
    windows, fractions = [], []

    def counted(batch):
        windows.append(batch.shape[0])
        return network(batch)

    wrapped = ProgressInferer(AutocastInferer(inferer, precision="fp32"), fractions.append)
    outputs = wrapped(inputs, counted)
    assert network_windows(wrapped.inferer, inputs) == sum(windows)
    assert len(fractions) == len(windows) and fractions == sorted(fractions) and fractions[-1] == 1.0
    torch.testing.assert_close(outputs, AutocastInferer(inferer, precision="fp32")(inputs, network), rtol=0, atol=0)


def test_an_inferer_of_unknown_layout_runs_unchanged_and_reports_nothing():
    class OwnInferer(Inferer):
        def __call__(self, inputs, network, *args, **kwargs):
            return network(inputs[..., ::2])

    inputs, fractions = torch.rand(1, 1, 8, 8), []
    assert network_windows(OwnInferer(), inputs) is None
    outputs = ProgressInferer(OwnInferer(), fractions.append)(inputs, network)
    assert fractions == [] and torch.equal(outputs, network(inputs[..., ::2]))
