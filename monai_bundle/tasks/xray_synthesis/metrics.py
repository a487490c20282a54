"""How synthetic images are judged: KID on a trained network's features, MS-SSIM diversity, and privacy.

KID (kernel inception distance) is an unbiased MMD^2 with a cubic polynomial kernel; MS-SSIM between
samples measures diversity; the nearest-neighbour privacy report asks whether samples are closer to
training images than unseen real images are.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""The standard MS-SSIM scale weights (Wang et al. 2003), finest first."""


def kernel_inception_distance(
    real: torch.Tensor, fake: torch.Tensor, subsets: int = 20, subset_size: int = 100, seed: int = 0
) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 over random subsets; (mean, std).

    0 for samples of one distribution (up to noise; it can go slightly negative).
    """
    real, fake = real.double().flatten(1), fake.double().flatten(1)
    size = min(subset_size, len(real), len(fake))
    rng = np.random.default_rng(seed)
    kernel = lambda a, b: (a @ b.T / a.shape[1] + 1.0) ** 3  # noqa: E731
    values = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), size, replace=False)]
        y = fake[rng.choice(len(fake), size, replace=False)]
        kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
        off = lambda k: (k.sum() - k.diagonal().sum()) / (size * (size - 1))  # noqa: E731
        values.append(float(off(kxx) + off(kyy) - 2 * kxy.mean()))
    return float(np.mean(values)), float(np.std(values))


def ms_ssim_diversity(images: torch.Tensor, pairs: int = 200, seed: int = 0, kernel_size: int = 7) -> float:
    """Mean MS-SSIM (MONAI) between random pairs of different images: lower = more diverse.

    A 7-pixel Gaussian window and as many of the standard five scales as the image size allows
    (4 at 64x64).
    """
    from monai.metrics import MultiScaleSSIMMetric

    size = min(images.shape[2:])
    scales = max(s for s in range(1, 6) if (kernel_size - 1) * 2 ** (s - 1) < size)
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(images), pairs)
    second = (first + rng.integers(1, len(images), pairs)) % len(images)
    metric = MultiScaleSSIMMetric(
        spatial_dims=2, data_range=1.0, kernel_size=kernel_size, weights=MS_SSIM_WEIGHTS[:scales]
    )
    return float(metric(images[first].float(), images[second].float()).mean())


def _nearest(
    queries: torch.Tensor, references: torch.Tensor, exclude_self: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """RMS pixel distance from each query to its nearest reference, and that reference's index."""
    q, r = queries.float().flatten(1), references.float().flatten(1)
    distances = torch.cdist(q, r) / q.shape[1] ** 0.5
    if exclude_self:
        distances.fill_diagonal_(float("inf"))
    return distances.min(1)


def privacy_report(
    synthetic: torch.Tensor,
    training: torch.Tensor,
    held_out: torch.Tensor,
    near_copy_percentile: float = 5.0,
    seed: int = 0,
) -> dict:
    """Are synthetic images closer to the GAN's training images than unseen real images are?

    Distances: root-mean-square pixel difference to the nearest image. The training images are
    subsampled to as many as the held-out ones, so both reference sets have the same size.
    - `memorisation_ratio` per sample: distance to nearest training image / to nearest held-out image
      (about 1 when the GAN does not favour its training images; << 1 for copies).
    - near-copy threshold: the `near_copy_percentile` of the held-out images' distances to each
      other (how close two different real images get); samples closer than that to a training
      image are flagged.
    """
    rng = np.random.default_rng(seed)
    keep = torch.as_tensor(np.sort(rng.choice(len(training), min(len(training), len(held_out)), replace=False)))
    training = training[keep]
    to_train, train_index = _nearest(synthetic, training)
    to_held, _ = _nearest(synthetic, held_out)
    held_to_held, _ = _nearest(held_out, held_out, exclude_self=True)
    held_to_train, _ = _nearest(held_out, training)
    threshold = float(np.percentile(held_to_held.numpy(), near_copy_percentile))
    ratio = (to_train / to_held.clamp_min(1e-12)).numpy()
    flagged = (to_train < threshold).numpy()
    return {
        "distance": "RMS pixel difference to the nearest image (images in [0, 1])",
        "n_synthetic": len(synthetic),
        "n_training_reference": len(training),
        "n_held_out": len(held_out),
        "median_synthetic_to_training": float(to_train.median()),
        "median_synthetic_to_held_out": float(to_held.median()),
        "median_held_out_to_training": float(held_to_train.median()),
        "median_memorisation_ratio": float(np.median(ratio)),
        "fraction_closer_to_training_than_to_held_out": float((ratio < 1).mean()),
        "near_copy_threshold": threshold,
        "near_copy_rule": f"distance to a training image below the {near_copy_percentile:g}th percentile of "
        "held-out images' distances to each other",
        "fraction_near_copies": float(flagged.mean()),
        "near_copies": [int(i) for i in np.flatnonzero(flagged)],
        "near_copy_training_index": [int(keep[train_index[i]]) for i in np.flatnonzero(flagged)],
    }


class PenultimateFeatures:
    """Features of a trained classifier: the input of its last linear layer, at `image_size` (images resized).

    KID on a network trained on radiographs compares what matters for them; an ImageNet Inception
    network, the usual choice, has never seen one.

    Args:
        network: the trained classifier (put in eval mode).
        image_size: width and height the network takes; images are resized to it.
        device: the device the network runs on.
    """

    def __init__(self, network: nn.Module, image_size: int, device: torch.device | str = "cpu") -> None:
        self.network, self.image_size, self.device = network.eval(), int(image_size), torch.device(device)
        self.last_linear = [m for m in network.modules() if isinstance(m, nn.Linear)][-1]

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        hook = self.last_linear.register_forward_hook(lambda _m, args, _out: captured.append(args[0].float().cpu()))
        try:
            for chunk in images.split(batch_size):
                resized = F.interpolate(
                    chunk.float(), size=(self.image_size,) * 2, mode="bilinear", align_corners=False
                )
                self.network(resized.to(self.device))
        finally:
            hook.remove()
        return torch.cat(captured)
