"""The low-dose CT denoiser (pix2pix) through MONAI's CLI: train a few steps, evaluate, infer on the input grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.networks.nets import PatchDiscriminator

from monai_bundle.engines import Pix2PixTrainer, gan
from monai_bundle.io import read_header, read_image, write_image
from monai_bundle.tasks import ct_denoising as lowdose
from monai_bundle.tasks.ct_denoising import ResidualUNet, WindowToHUd, noise_level

from conftest import bundle_run

TINY = {"patch_size": [32, 32], "patches_per_volume": 4, "batch_size": 4, "max_epochs": 2, "epoch_length": 2}


def _phantom_volume(size: int = 48, slices: int = 4) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] - size / 2
    hu = np.full((size, size), -1000.0)
    hu[xx**2 + yy**2 < (0.4 * size) ** 2] = 40.0
    hu[(xx - 5) ** 2 + yy**2 < 16] = 900.0
    return np.repeat(hu[:, :, None], slices, axis=2)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """A dataset.json of simulated low-dose / normal-dose phantom pairs (train and test)."""
    root = tmp_path_factory.mktemp("pairs")
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    spec = {}
    for split, seed in (("train", 0), ("test", 1)):
        clean = _phantom_volume()
        low = lowdose.simulate_low_dose_volume(clean, 1.0, 1e4, 60, seed)
        write_image(clean.astype(np.int16), affine, root / split / "ct.nii.gz")
        write_image(np.round(low).astype(np.int16), affine, root / split / "ct_lowdose.nii.gz")
        spec[split] = [{"image": f"{split}/ct_lowdose.nii.gz", "label": f"{split}/ct.nii.gz"}]
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


@pytest.mark.parametrize("noise_input", [False, True], ids=["blind", "noise input"])
def test_pix2pix_trainer_learns_to_remove_noise(noise_input):
    """A few hundred steps on a known distribution (smooth images + Gaussian noise): L1 to the clean target halves."""
    torch.manual_seed(0)
    generator = ResidualUNet(channels=(16, 32, 64), strides=(2, 2), noise_input=noise_input)
    discriminator = PatchDiscriminator(2, 16, 2, num_layers_d=2, norm="INSTANCE")
    base = torch.nn.functional.avg_pool2d(torch.rand(256, 1, 40, 40), 9, stride=1)  # smooth 32x32 images
    batches = [
        {"image": base[i : i + 16] + 0.08 * torch.randn(16, 1, 32, 32), "label": base[i : i + 16]}
        for i in range(0, 256, 16)
    ]
    noisy_l1 = float(torch.mean(torch.abs(torch.cat([b["image"] - b["label"] for b in batches]))))
    trainer = Pix2PixTrainer(
        "cpu",
        20,
        batches,
        generator,
        discriminator,
        torch.optim.Adam(generator.parameters(), 1e-3, betas=(0.5, 0.999)),
        torch.optim.Adam(discriminator.parameters(), 2e-4, betas=(0.5, 0.999)),
    )
    trainer.run()  # 320 steps
    generator.eval()
    with torch.no_grad():
        denoised_l1 = float(torch.mean(torch.cat([torch.abs(generator(b["image"]) - b["label"]) for b in batches])))
    assert denoised_l1 < 0.5 * noisy_l1, (denoised_l1, noisy_l1)
    assert np.isfinite(trainer.state.output["d_loss"])


def test_without_the_adversarial_term_the_discriminator_is_not_run():
    """adversarial_weight 0 (the shipped recipe): L1 alone trains the generator; the discriminator stays as it was."""
    torch.manual_seed(0)
    generator = ResidualUNet(channels=(8, 16), strides=(2,), head_channels=4)
    discriminator = PatchDiscriminator(2, 8, 2, num_layers_d=1, norm="INSTANCE")
    before = {k: v.clone() for k, v in discriminator.state_dict().items()}
    clean = torch.nn.functional.avg_pool2d(torch.rand(8, 1, 24, 24), 9, stride=1)
    batches = [{"image": clean + 0.1 * torch.randn_like(clean), "label": clean}] * 4
    trainer = Pix2PixTrainer(
        "cpu",
        1,
        batches,
        generator,
        discriminator,
        torch.optim.Adam(generator.parameters(), 1e-3),
        torch.optim.Adam(discriminator.parameters(), 1e-3),
        adversarial_weight=0.0,
    )
    trainer.run()
    assert all(torch.equal(before[k], v) for k, v in discriminator.state_dict().items())
    assert trainer.state.output["d_loss"] == 0.0 and trainer.state.output["recon_loss"] > 0
    assert not torch.equal(generator.head.weight, torch.zeros_like(generator.head.weight))  # the generator learned


def test_the_zero_initialised_head_starts_the_denoiser_as_the_exact_identity():
    image = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(ResidualUNet(channels=(8, 16), strides=(2,), head_channels=4).eval()(image), image)
        assert torch.equal(
            ResidualUNet(channels=(8, 16), strides=(2,), head_channels=4, noise_input=True).eval()(image), image
        )
        assert not torch.equal(ResidualUNet(channels=(8, 16), strides=(2,)).eval()(image), image)


def test_noise_level_measures_known_noise_and_ignores_clipped_air_and_edges():
    """Known answers: Gaussian noise of sigma 0.01-0.1 on a smooth image with a sharp edge, beside clipped air."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 128), torch.linspace(0, 1, 128), indexing="ij")
    tissue = 0.4 + 0.1 * torch.sin(4 * xx) * torch.cos(3 * yy) + 0.2 * (xx > 0.6)  # a step edge of 0.2
    for sigma in (0.01, 0.03, 0.1):
        image = (tissue + sigma * torch.randn_like(tissue)).clamp(0, 1)
        image[:, :40] = 0.0  # air, clipped by the window: no noise to see there
        assert float(noise_level(image[None, None])) == pytest.approx(sigma, rel=0.08)
    batch = torch.stack([tissue + 0.02 * torch.randn_like(tissue), torch.zeros_like(tissue)])[:, None]
    levels = noise_level(batch)
    assert levels[0] == pytest.approx(0.02, rel=0.08) and levels[1] == 0.0  # each image its own; all air: 0
    with torch.autocast("cpu", torch.bfloat16):  # the same level on a machine that runs the network in bf16
        assert torch.equal(noise_level(batch), levels)


def test_the_noise_input_is_seen_by_the_network_and_is_2d_only(monkeypatch):
    """The measured level reaches the UNet as a second channel: the same image at another level gives another output."""
    from monai_bundle.tasks.ct_denoising import networks

    torch.manual_seed(0)
    generator = ResidualUNet(channels=(8, 16), strides=(2,), noise_input=True).eval()
    image = 0.5 + 0.02 * torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        measured = generator(image)
        monkeypatch.setattr(networks, "noise_level", lambda images: torch.full((len(images),), 0.1))
        told_noisier = generator(image)
        monkeypatch.setattr(networks, "noise_level", lambda images: noise_level(images))
        assert torch.equal(generator(image), measured)
    assert not torch.allclose(measured, told_noisier)
    with pytest.raises(ValueError, match="2D"):
        ResidualUNet(spatial_dims=3, channels=(8, 16), strides=(2,), noise_input=True)


def test_train_evaluate_and_infer_through_the_bundle_cli(pairs, tmp_path):
    bundle_run(
        ["ct_denoising_inference.json", "ct_denoising_train.json"],
        dataset_dir=pairs,
        output_dir=tmp_path / "train",
        **TINY,
    )
    checkpoint = tmp_path / "train" / "models" / "model.pt"
    assert checkpoint.is_file()
    bundle_run(
        ["ct_denoising_inference.json", "ct_denoising_evaluate.json"],
        dataset_dir=pairs,
        output_dir=tmp_path / "eval",
        checkpoint=checkpoint,
    )
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    case = report["cases"][0]
    assert report["hu_window"] == [-1000, 1000]
    assert {"denoiser", "low_dose_input", *lowdose.classical_denoisers()} <= set(case)
    source = pairs / "test" / "ct_lowdose.nii.gz"
    bundle_run(["ct_denoising_inference.json"], dataset_dir=source, output_dir=tmp_path / "out", checkpoint=checkpoint)
    result = tmp_path / "out" / "ct_lowdose_denoised.nii.gz"
    shape, affine, _ = read_header(result)
    source_shape, source_affine, _ = read_header(source)
    assert shape == source_shape and np.allclose(affine, source_affine)
    denoised = np.asarray(read_image(result).array)
    assert denoised.dtype == np.int16
    original = np.asarray(read_image(source).array)
    outside = (original < -1000) | (original > 1000)
    # beyond the window: the input's HU where the network's output is at that edge (WindowToHUd), else its value
    assert np.all((denoised[outside] == original[outside]) | (np.abs(denoised[outside]) <= 1000))


@pytest.mark.realdata
def test_slicer_command_denoises_a_real_ct_on_its_grid(tmp_path):
    """The Slicer module's exact command with the shipped denoiser on the real held-out CT (as NRRD)."""
    from monai_bundle.data import sample_data

    from helpers import slicer_image_task_volume

    ct = read_image(sample_data.fetch("ts_thorax_ct"), ndim=3)
    run, (shape, affine, _) = slicer_image_task_volume("ct_denoising", ct.array, ct.affine, tmp_path)
    assert shape == ct.array.shape and np.allclose(affine, ct.affine, atol=1e-4)
    run.finish()


def test_relative_recon_is_each_samples_share_of_its_inputs_error():
    """Known answer: two samples, one 10x noisier; each keeps half its input's error, so both count 0.5."""
    targets = torch.zeros(2, 1, 4, 4)
    inputs = torch.stack([torch.full((1, 4, 4), 0.02), torch.full((1, 4, 4), 0.2)])
    fakes = inputs / 2
    trainer = Pix2PixTrainer("cpu", 1, [], ResidualUNet(channels=(4, 8), strides=(2,)), None, None, None)
    floor = gan.RELATIVE_FLOOR
    assert trainer._recon_loss(inputs, fakes, targets).item() == pytest.approx(0.055)  # plain L1: the noisy one decides
    trainer.relative_recon = True
    expected = (0.01 / (0.02 + floor) + 0.1 / (0.2 + floor)) / 2
    assert trainer._recon_loss(inputs, fakes, targets).item() == pytest.approx(expected, rel=1e-5)


def test_window_to_hu_keeps_the_input_beyond_the_window_only_where_the_network_is_at_that_edge():
    """Known answers, one voxel each: the window is -1000..1000 HU, margins 20 HU (low edge) and 100 HU (high)."""
    original = torch.tensor([-1050.0, -3024.0, -1010.0, 1500.0, 1050.0, 40.0, -1010.0])
    network_hu = torch.tensor([-900.0, -1000.0, -992.0, 940.0, 700.0, 45.0, -960.0])
    # lung whose noise fell below the window: the network's -900; padding and air at the edge: their input;
    # bone the output saturates on: its input; noise above the window in soft tissue: the network's 700;
    # inside the window: the network's; air 40 HU inside the low edge: the network's
    expected = torch.tensor([-900.0, -3024.0, -1010.0, 1500.0, 700.0, 45.0, -960.0])
    data = {"pred": (network_hu + 1000.0) / 2000.0, "original": original}
    assert torch.allclose(WindowToHUd("pred")(data)["pred"], expected, atol=1e-3)
    wider = WindowToHUd("pred", edge_margin_hu=(50.0, 400.0))(data)["pred"]
    assert wider[6].item() == pytest.approx(-1010.0) and wider[4].item() == pytest.approx(1050.0)
