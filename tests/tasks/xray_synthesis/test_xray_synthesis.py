"""Class-conditional GAN synthesis: it learns a known distribution; sampling, the report and the privacy check."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from monai_bundle.tasks import xray_synthesis as synthesis

from conftest import bundle_run

SIZE = 32
CLASSES = ["normal", "pneumonia"]
GENERATOR = {"image_size": SIZE, "generator_def#channels": "[64,32]"}
NETWORKS = {**GENERATOR, "discriminator_def#channels": "[32,64,128]"}


def _shapes(label: int, n: int, seed: int) -> np.ndarray:
    """Known distribution: class 0 = a white disc on black, class 1 = a black square on white (random size and place).

    Pure black and white, so the bundle's percentile intensity scaling leaves the images as they are.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = np.full((n, SIZE, SIZE), float(label), np.float32)
    for image in images:
        r = rng.uniform(4, 8)
        cy, cx = rng.uniform(r + 1, SIZE - r - 1, 2)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2 if label == 0 else (abs(yy - cy) < r) & (abs(xx - cx) < r)
        image[inside] = 1.0 - label
    return images


@pytest.fixture(scope="module")
def shapes_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    for split, n, seed in (("train", 96, 0), ("test", 16, 1)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name.upper()
            folder.mkdir(parents=True)
            for k, image in enumerate(_shapes(label, n, seed + 10 * label)):
                Image.fromarray(np.round(255 * image).astype(np.uint8)).save(folder / f"shape_{k:03d}.png")
    return root


@pytest.fixture(scope="module")
def trained(shapes_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("gan")
    bundle_run(
        ["xray_synthesis_inference.json", "xray_synthesis_train.json"],
        dataset_dir=shapes_dataset,
        output_dir=out,
        max_epochs=6,
        epoch_length=50,
        batch_size=32,
        **NETWORKS,
    )  # 300 steps
    return out / "models" / "model.pt"


def _generator() -> synthesis.ConditionalGenerator:
    return synthesis.ConditionalGenerator(num_classes=2, image_size=SIZE, channels=(64, 32))


def _kid(images: torch.Tensor, label: int) -> float:
    real = torch.from_numpy(_shapes(label, 256, 100 + label))[:, None]
    return synthesis.kernel_inception_distance(real, images, subsets=10)[0]


def test_adversarial_training_learns_a_known_distribution(trained):
    """Pixel-space KID to fresh samples of each class drops far below the untrained generator's, per class."""
    torch.manual_seed(0)
    untrained, generator = _generator(), _generator()
    generator.load_state_dict(torch.load(trained, weights_only=True))
    for label in (0, 1):
        before = _kid(synthesis.generate(untrained, [label] * 256, seed=1), label)
        fakes = synthesis.generate(generator, [label] * 256, seed=1)
        after = _kid(fakes, label)
        assert after < 0.25 * before, (label, after, before)
        assert after < _kid(fakes, 1 - label), label  # class-conditional: closer to its own class than to the other


def test_sampling_and_report_through_the_bundle_cli(shapes_dataset, trained, tmp_path):
    bundle_run(
        ["xray_synthesis_inference.json"],
        checkpoint=trained,
        output_dir=tmp_path / "samples",
        num_samples=6,
        seed=3,
        **GENERATOR,
    )
    rows = list(csv.DictReader((tmp_path / "samples" / "samples.csv").open()))
    assert len(rows) == 12 and {row["class"] for row in rows} == set(CLASSES)
    assert all(row["file"].split("/")[-1].startswith(synthesis.SYNTHETIC_PREFIX) for row in rows)
    pngs = sorted((tmp_path / "samples").glob("*/*.png"))
    assert len(pngs) == 12 and Image.open(pngs[0]).size == (SIZE, SIZE)

    bundle_run(
        ["xray_synthesis_inference.json", "xray_synthesis_evaluate.json"],
        checkpoint=trained,
        dataset_dir=shapes_dataset,
        output_dir=tmp_path / "eval",
        num_samples=40,
        **GENERATOR,
    )
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    for name in CLASSES:
        entry = report["classes"][name]
        assert {"kid_vs_training", "kid_vs_held_out", "kid_vs_test", "privacy", "ms_ssim_synthetic"} <= set(entry)
        assert 0 <= entry["privacy"]["fraction_near_copies"] <= 1


def test_privacy_report_flags_copies_and_passes_fresh_samples():
    training = torch.from_numpy(_shapes(0, 100, 0))[:, None]
    held_out = torch.from_numpy(_shapes(0, 100, 1))[:, None]
    copies = synthesis.privacy_report(training[:50] + 0.001, training, held_out)
    assert copies["fraction_near_copies"] == 1.0 and copies["median_memorisation_ratio"] < 0.1
    fresh = synthesis.privacy_report(torch.from_numpy(_shapes(0, 50, 2))[:, None], training, held_out)
    assert fresh["fraction_near_copies"] < 0.2 and 0.7 < fresh["median_memorisation_ratio"] < 1.4


def test_kid_is_near_zero_for_one_distribution_and_large_for_two():
    a, b = (torch.from_numpy(_shapes(0, 200, seed))[:, None] for seed in (0, 1))
    other = torch.from_numpy(_shapes(1, 200, 2))[:, None]
    same = synthesis.kernel_inception_distance(a, b)[0]
    different = synthesis.kernel_inception_distance(a, other)[0]
    assert abs(same) < 0.1 * different, (same, different)
