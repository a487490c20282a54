"""Class-conditional GAN synthesis of 2D images, and how to judge synthetic images.

Networks: MONAI's DCGAN-style `Generator` and `Discriminator`, made class-conditional the
classic way (cGAN): the generator gets a one-hot class code after its noise vector, and the
discriminator sees the image with the class as constant extra channels. The generator returns
that same (image, class channels) stack, so MONAI's own `GanTrainer` trains the pair unchanged
(`ClassLatents` makes its latents, `LabelledImages` its real batches, `GanLosses` its losses).
Stabilisers: spectral norm in the discriminator, one-sided label smoothing, two learning rates.

Judging (`synthesis_report`): KID (kernel inception distance: unbiased MMD^2 with a cubic
polynomial kernel) on features of a network trained here, MS-SSIM between samples (diversity),
and a nearest-neighbour privacy report (are samples closer to training images than unseen real
images are?).
"""
from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import Discriminator, Generator
from torch import nn
from torch.nn import functional as F

from monai_bundle.engines import autocast_context, autocast_dtype

logger = logging.getLogger(__name__)


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""The standard MS-SSIM scale weights (Wang et al. 2003), finest first."""


SYNTHETIC_PREFIX = "synthetic_gan"
"""File names of generated images start with this, so nobody takes them for real ones."""


def class_maps(codes: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(B, classes) one-hot codes -> (B, classes, *size) constant maps."""
    return codes[(...,) + (None,) * len(size)].expand(*codes.shape, *size)


class ConditionalGenerator(nn.Module):
    """MONAI `Generator`: (noise, one-hot class) -> image in [0, 1] (sigmoid), returned with its class maps.

    Input: (B, latent_size + num_classes). Output: (B, 1 + num_classes, H, W); channel 0 is the image.
    """

    def __init__(self, latent_size: int = 64, num_classes: int = 2, image_size: int = 64,
                 channels: Sequence[int] = (128, 64, 32, 16), num_res_units: int = 1, norm: str = "batch"):
        super().__init__()
        start = image_size // 2 ** len(channels)
        if start * 2 ** len(channels) != image_size or start < 1:
            raise ValueError(f"image_size {image_size} must be a multiple of 2**{len(channels)}")
        self.latent_size, self.num_classes, self.image_size = latent_size, num_classes, image_size
        self.net = Generator((latent_size + num_classes,), (2 * channels[0], start, start), (*channels, 1),
                             (2,) * len(channels) + (1,), num_res_units=num_res_units, norm=norm)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        image = torch.sigmoid(self.net(latents))
        codes = latents[:, self.latent_size :].to(image.dtype)
        return torch.cat([image, class_maps(codes, image.shape[2:])], 1)


class ConditionalDiscriminator(nn.Module):
    """MONAI `Discriminator` on (image, class maps) with spectral norm on every conv and linear layer; returns logits."""

    def __init__(self, num_classes: int = 2, image_size: int = 64, channels: Sequence[int] = (32, 64, 128, 256),
                 dropout: float = 0.25):
        super().__init__()
        self.net = Discriminator((1 + num_classes, image_size, image_size), channels, (2,) * len(channels),
                                 num_res_units=0, act=("leakyrelu", {"negative_slope": 0.2}), norm=None,
                                 dropout=dropout, last_act=None)
        for module in list(self.net.modules()):
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.utils.parametrizations.spectral_norm(module)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class ClassLatents:
    """`GanTrainer`'s `g_prepare_batch`: Gaussian noise followed by the one-hot code of a random class."""

    def __init__(self, num_classes: int, generator: torch.Generator | None = None):
        self.num_classes, self.generator = num_classes, generator

    def __call__(self, num_latents: int, latent_size: int, device=None, non_blocking: bool = False, **kwargs):
        classes = torch.randint(self.num_classes, (num_latents,), generator=self.generator)
        return latents_for(classes, latent_size, self.num_classes, self.generator).to(device, non_blocking=non_blocking)


def latents_for(classes: torch.Tensor, latent_size: int, num_classes: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise vectors with the one-hot codes of `classes` appended."""
    noise = torch.randn(len(classes), latent_size, generator=generator)
    return torch.cat([noise, F.one_hot(classes.long(), num_classes).float()], 1)


class LabelledImages:
    """`GanTrainer`'s `d_prepare_batch`: a batch dict's images with their class maps (what the generator returns)."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def __call__(self, batchdata, device=None, non_blocking: bool = False, **kwargs) -> torch.Tensor:
        images = torch.as_tensor(batchdata["image"]).float()
        labels = torch.as_tensor(batchdata["label"]).reshape(-1).long()
        codes = F.one_hot(labels, self.num_classes).float()
        return torch.cat([images, class_maps(codes, images.shape[2:])], 1).to(device, non_blocking=non_blocking)


class GanLosses:
    """Non-saturating GAN losses for `GanTrainer`, the discriminator under autocast; real labels smoothed to `real_label`."""

    def __init__(self, discriminator: nn.Module, precision: str = "auto", device="cpu", real_label: float = 0.9):
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


@torch.no_grad()
def generate(generator: ConditionalGenerator, classes: Sequence[int], seed: int = 0, batch_size: int = 64,
             device="cpu") -> torch.Tensor:
    """Images (N, 1, H, W) in [0, 1] of the given classes, reproducible by `seed`."""
    generator.eval()
    rng = torch.Generator().manual_seed(int(seed))
    latents = latents_for(torch.as_tensor(list(classes)), generator.latent_size, generator.num_classes, rng)
    return torch.cat([generator(chunk.to(device))[:, :1].float().cpu() for chunk in latents.split(batch_size)])


def write_samples(generator: ConditionalGenerator, output_dir, class_names: Sequence[str], num_samples: int,
                  seed: int = 0, device="cpu") -> Path:
    """`num_samples` images per class as 8-bit PNGs in `output_dir/<CLASS>/`, with samples.csv; returns output_dir.

    The layout is a class-folder dataset (usable as `--synthetic_dir` of `xray_train.json`); every
    file is named `synthetic_gan_...` and samples.csv says they are synthetic.
    """
    from monai_bundle.data.drr import png_bytes
    from monai_bundle.io import write_bytes_atomic, write_text_atomic

    if len(class_names) != generator.num_classes:
        raise ValueError(f"{len(class_names)} class names for a generator of {generator.num_classes} classes")
    out = Path(output_dir)
    classes = [k for k in range(len(class_names)) for _ in range(int(num_samples))]
    images = generate(generator, classes, seed, device=device)
    rows = []
    for index, (label, image) in enumerate(zip(classes, images, strict=True)):
        path = out / class_names[label] / f"{SYNTHETIC_PREFIX}_{class_names[label].lower()}_{index:05d}.png"
        pixels = np.round(255 * image[0].clamp(0, 1).numpy()).astype(np.uint8).T  # loaders give (columns, rows)
        write_bytes_atomic(path, png_bytes(np.ascontiguousarray(pixels)))
        rows.append({"file": str(path.relative_to(out)), "class": class_names[label], "seed": seed, "synthetic": "yes"})
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / "samples.csv", table.getvalue())
    write_text_atomic(out / "README.txt", "SYNTHETIC images made by a GAN (monai_bundle.tasks.xray_synthesis); not patients.\n")
    return out


def kernel_inception_distance(real: torch.Tensor, fake: torch.Tensor, subsets: int = 20, subset_size: int = 100,
                              seed: int = 0) -> tuple[float, float]:
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
    metric = MultiScaleSSIMMetric(spatial_dims=2, data_range=1.0, kernel_size=kernel_size,
                                  weights=MS_SSIM_WEIGHTS[:scales])
    return float(metric(images[first].float(), images[second].float()).mean())


def _nearest(queries: torch.Tensor, references: torch.Tensor, exclude_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """RMS pixel distance from each query to its nearest reference, and that reference's index."""
    q, r = queries.float().flatten(1), references.float().flatten(1)
    distances = torch.cdist(q, r) / q.shape[1] ** 0.5
    if exclude_self:
        distances.fill_diagonal_(float("inf"))
    return distances.min(1)


def privacy_report(synthetic: torch.Tensor, training: torch.Tensor, held_out: torch.Tensor,
                   near_copy_percentile: float = 5.0, seed: int = 0) -> dict:
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
        "n_synthetic": len(synthetic), "n_training_reference": len(training), "n_held_out": len(held_out),
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
    """Features of a trained classifier: the input of its last linear layer, at `image_size` (images resized)."""

    def __init__(self, network: nn.Module, image_size: int, device="cpu"):
        self.network, self.image_size, self.device = network.eval(), int(image_size), torch.device(device)
        self.last_linear = [m for m in network.modules() if isinstance(m, nn.Linear)][-1]

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        hook = self.last_linear.register_forward_hook(lambda _m, args, _out: captured.append(args[0].float().cpu()))
        try:
            for chunk in images.split(batch_size):
                resized = F.interpolate(chunk.float(), size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
                self.network(resized.to(self.device))
        finally:
            hook.remove()
        return torch.cat(captured)


def synthesis_report(generator: ConditionalGenerator, real_sets: dict[str, tuple[torch.Tensor, torch.Tensor]],
                     features: Callable[[torch.Tensor], torch.Tensor], class_names: Sequence[str],
                     num_samples: int = 500, seed: int = 0, device="cpu") -> dict:
    """KID and diversity per class against real images, and the privacy report.

    `real_sets`: {"training": (images, labels), "held_out": (images, labels), ...}, images (N, 1, H, W)
    in [0, 1] at the generator's size. KID is measured against every set; "training" and "held_out"
    also give the real-vs-real floor and the privacy report. (An untrained generator scored the
    same way is the other reference: scripts/train_synthesis_demo_weights.py does that.)
    """
    report: dict = {"kid_features": "penultimate layer of the feature network", "classes": {}}
    for label, name in enumerate(class_names):
        fake = generate(generator, [label] * num_samples, seed + label, device=device)
        fake_features = features(fake)
        entry = {"n_synthetic": num_samples, "ms_ssim_synthetic": ms_ssim_diversity(fake, seed=seed)}
        real = {set_name: images[labels == label] for set_name, (images, labels) in real_sets.items()}
        real_features = {set_name: features(images) for set_name, images in real.items()}
        for set_name, images in real.items():
            kid, kid_std = kernel_inception_distance(real_features[set_name], fake_features, seed=seed)
            entry[f"kid_vs_{set_name}"] = {"mean": kid, "std": kid_std, "n_real": len(images)}
            entry[f"ms_ssim_{set_name}"] = ms_ssim_diversity(images, seed=seed)
        if "training" in real and "held_out" in real:
            floor, floor_std = kernel_inception_distance(real_features["training"], real_features["held_out"], seed=seed)
            entry["kid_training_vs_held_out"] = {"mean": floor, "std": floor_std}
            entry["privacy"] = privacy_report(fake, real["training"], real["held_out"], seed=seed)
        report["classes"][name] = entry
    return report


def load_image_set(datalist: Sequence[dict], transform: Callable) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 1, H, W), labels (N,)) of a class-folder datalist through a MONAI transform."""
    items = [transform(dict(item)) for item in datalist]
    images = torch.stack([torch.as_tensor(item["image"]).float() for item in items])
    labels = torch.as_tensor([int(np.asarray(item["label"]).reshape(-1)[0]) for item in items])
    return images, labels


def write_report(report: dict, output_dir) -> Path:
    """report.json in `output_dir`, and a one-line summary per class in the log."""
    from monai_bundle.io import write_text_atomic

    path = Path(output_dir) / "report.json"
    write_text_atomic(path, json.dumps(report, indent=2) + "\n")
    for name, entry in report["classes"].items():
        privacy = entry.get("privacy", {})
        logger.info("%s: KID vs held-out %.4f, MS-SSIM synthetic %.3f, near copies %.1f%%", name,
                    entry.get("kid_vs_held_out", {}).get("mean", float("nan")), entry["ms_ssim_synthetic"],
                    100 * privacy.get("fraction_near_copies", float("nan")))
    return path
