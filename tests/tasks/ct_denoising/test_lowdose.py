"""Low-dose CT simulation (noise insertion through Radon/FBP) and the scores a denoiser is judged by."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from monai_bundle.io import read_header, read_image, write_image
from monai_bundle.tasks import ct_denoising as lowdose

from conftest import run_cli


def _phantom(size: int = 96) -> np.ndarray:
    """A water disc (0 HU) with a bone insert (+700 HU) and a lung-like hole (-800 HU), in air."""
    yy, xx = np.mgrid[:size, :size] - size / 2
    hu = np.full((size, size), -1000.0)
    hu[xx**2 + yy**2 < (0.4 * size) ** 2] = 0.0
    hu[(xx - 0.15 * size) ** 2 + yy**2 < (0.08 * size) ** 2] = 700.0
    hu[(xx + 0.15 * size) ** 2 + yy**2 < (0.1 * size) ** 2] = -800.0
    return hu


def test_fewer_photons_more_noise_and_the_image_is_otherwise_unchanged():
    hu = _phantom()
    water = (np.hypot(*(np.mgrid[:96, :96] - 48)) < 20) & (hu == 0)
    noise = {}
    for photons in (1e6, 1e5, 1e4):
        low = lowdose.simulate_low_dose_slice(hu, 1.0, photons, 180, np.random.default_rng(0))
        assert low.shape == hu.shape and low.dtype == np.float32
        assert abs(float((low - hu)[water].mean())) < 10.0  # noise, not a bias
        noise[photons] = lowdose.noise_hu(low, hu, water)
    assert noise[1e6] < noise[1e5] < noise[1e4]
    assert 2.0 < noise[1e4] / noise[1e5] < 4.5  # Poisson: about sqrt(10)


def test_scores_rank_a_smoothed_image_above_the_noisy_one():
    hu = _phantom()
    low = lowdose.simulate_low_dose_slice(hu, 1.0, 1e4, 180, np.random.default_rng(1))
    noisy = lowdose.scores(low, hu)
    assert lowdose.scores(hu, hu)["ssim"] == pytest.approx(1.0, abs=1e-4)
    assert noisy["psnr_db"] < 40 and noisy["ssim"] < 0.95
    denoised = {name: lowdose.scores(denoise(low), hu) for name, denoise in lowdose.classical_denoisers().items()}
    best = lowdose.best_baselines({"low_dose_input": noisy, **denoised})
    methods = {"gaussian", "bilateral", "non-local means"} | ({"bm3d"} if lowdose.bm3d_available() else set())
    assert set(best) == methods
    for method in methods - {"gaussian"}:  # edge-preserving: better on both scores
        score = denoised[best[method]]
        assert score["psnr_db"] == max(v["psnr_db"] for k, v in denoised.items() if k.startswith(method + " ("))
        assert score["psnr_db"] > noisy["psnr_db"] + 3 and score["ssim"] > noisy["ssim"], method
    # a Gaussian blurs this phantom's sharp edges: PSNR drops, SSIM still rises
    assert denoised["gaussian (sigma 1 px)"]["ssim"] > noisy["ssim"]


def test_in_plane_downsampling_averages_blocks_and_keeps_world_positions():
    hu = np.arange(6 * 4 * 3, dtype=np.float32).reshape(6, 4, 3)
    affine = np.array([[0.7, 0, 0, 10], [0, -0.7, 0, 20], [0, 0, 2.5, 30], [0, 0, 0, 1]])
    small, scaled = lowdose.downsample_in_plane(hu, affine, 2)
    assert small.shape == (3, 2, 3) and small[1, 0, 2] == hu[2:4, 0:2, 2].mean()
    # the centre of block (1, 0) is the mean world position of the four pixels it averages
    pixels = [affine @ [i, j, 0, 1] for i in (2, 3) for j in (0, 1)]
    assert np.allclose(scaled @ [1, 0, 0, 1], np.mean(pixels, axis=0))
    assert np.allclose(np.diag(scaled)[:3], [1.4, -1.4, 2.5])
    assert lowdose.downsample_in_plane(hu, affine, 1)[0] is hu


def test_noise_level_estimate_follows_added_noise():
    rng = np.random.default_rng(0)
    flat = np.zeros((128, 128))
    assert lowdose.noise_sigma(flat + rng.normal(0, 0.05, flat.shape)) == pytest.approx(0.05, rel=0.1)


def test_command_line_writes_a_low_dose_copy_on_the_same_grid(tmp_path):
    volume = np.stack([_phantom(64)] * 3, axis=2).astype(np.int16)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    affine[:3, 3] = [10, -20, 30]
    source = tmp_path / "ct.nii.gz"
    write_image(volume, affine, source)
    target = tmp_path / "ct_lowdose.nii.gz"
    result = run_cli(
        [
            sys.executable,
            "-m",
            "monai_bundle.tasks.ct_denoising",
            str(source),
            str(target),
            "--photons",
            "2e4",
            "--angles",
            "90",
        ]
    )
    assert "inserted noise std" in result.stdout
    shape, out_affine, _ = read_header(target)
    assert shape == volume.shape and np.allclose(out_affine, affine)
    low = np.asarray(read_image(target).array)
    assert low.dtype == np.int16 and np.abs(low.astype(float) - volume).std() > 5
    part = tmp_path / "part.nii.gz"
    scored = run_cli(
        [
            sys.executable,
            "-m",
            "monai_bundle.tasks.ct_denoising",
            str(source),
            str(part),
            "--photons",
            "2e4",
            "--angles",
            "90",
            "--slices",
            "1:3",
            "--score",
        ]
    )
    assert "non-local means" in scored.stdout and "PSNR" in scored.stdout
    shape, part_affine, _ = read_header(part)
    assert shape == (64, 64, 2) and np.allclose(part_affine[:3, 3], affine[:3, 3] + affine[:3, 2])
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a CT")
    failed = subprocess.run(
        [sys.executable, "-m", "monai_bundle.tasks.ct_denoising", str(bad), str(tmp_path / "x.nii.gz")],
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 1 and "bad.nii.gz" in failed.stderr and not (tmp_path / "x.nii.gz").exists()
