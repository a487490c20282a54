"""Sampling a trained generator: reproducible images per class, and a class-folder set of SYNTHETIC PNGs."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from monai_bundle.io import write_bytes_atomic, write_text_atomic
from monai_bundle.io.png import png_bytes
from monai_bundle.tasks.xray_synthesis.networks import ConditionalGenerator
from monai_bundle.tasks.xray_synthesis.training import latents_for

SYNTHETIC_PREFIX = "synthetic_gan"
"""File names of generated images start with this, so nobody takes them for real ones."""


@torch.no_grad()
def generate(
    generator: ConditionalGenerator,
    classes: Sequence[int],
    seed: int = 0,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Images (N, 1, H, W) in [0, 1] of the given classes, reproducible by `seed`."""
    generator.eval()
    rng = torch.Generator().manual_seed(int(seed))
    latents = latents_for(torch.as_tensor(list(classes)), generator.latent_size, generator.num_classes, rng)
    return torch.cat([generator(chunk.to(device))[:, :1].float().cpu() for chunk in latents.split(batch_size)])


def write_samples(
    generator: ConditionalGenerator,
    output_dir: str | os.PathLike,
    class_names: Sequence[str],
    num_samples: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Path:
    """`num_samples` images per class as 8-bit PNGs in `output_dir/<CLASS>/`, with samples.csv; returns output_dir.

    The layout is a class-folder dataset (usable as `--synthetic_dir` of `xray_classification_train.json`); every
    file is named `synthetic_gan_...` and samples.csv says they are synthetic.

    Args:
        generator: the trained generator.
        output_dir: folder of the class folders, samples.csv and README.txt.
        class_names: one folder name per class of the generator, in class order.
        num_samples: images per class.
        seed: seed of the latents (`generate`): the same seed gives the same images.
        device: the device the generator runs on.

    Raises:
        ValueError: the number of class names is not the generator's number of classes.
    """
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
    write_text_atomic(
        out / "README.txt", "SYNTHETIC images made by a GAN (monai_bundle.tasks.xray_synthesis); not patients.\n"
    )
    return out
