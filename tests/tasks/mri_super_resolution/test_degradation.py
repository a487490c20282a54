"""The thick-slice degradation model and the fine grid, on signals with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from monai_bundle.io import ImageReadError
from monai_bundle.tasks.mri_super_resolution import (
    FWHM_TO_SIGMA,
    check_thick,
    degrade,
    fine_affine,
    fine_size,
    fine_target,
    slice_profile,
    thick_affine,
    upsample,
)

PERIOD = 12  # voxels


def _sinusoid(length: int = 120, axis: int = 2) -> np.ndarray:
    wave = np.sin(2 * np.pi * np.arange(length) / PERIOD).astype(np.float32)
    shape = [3, 3, 3]
    shape[axis] = length
    return np.broadcast_to(np.expand_dims(wave, [a for a in range(3) if a != axis]), shape).copy()


@pytest.mark.parametrize("axis", [0, 2])
def test_gaussian_slice_profile_attenuates_a_sinusoid_as_its_transfer_function(axis):
    """FWHM 3 voxels, sigma = 3 / 2.355: a period-12 sinusoid keeps exp(-2 pi^2 sigma^2 / 144) = 0.80 of itself."""
    averaged = np.moveaxis(slice_profile(_sinusoid(axis=axis), axis, 3), axis, -1)[1, 1, 24:96]
    expected = np.exp(-2 * np.pi**2 * (3 * FWHM_TO_SIGMA) ** 2 / PERIOD**2)
    assert expected == pytest.approx(0.8005, abs=1e-4)
    assert np.abs(averaged).max() == pytest.approx(expected, rel=1e-3)


def test_boxcar_slice_profile_attenuates_a_sinusoid_as_a_discrete_boxcar():
    """A 3-voxel mean keeps sin(3 pi / P) / (3 sin(pi / P)) of a sinusoid of period P."""
    averaged = slice_profile(_sinusoid(), 2, 3, "boxcar")[1, 1, 24:96]
    expected = np.sin(3 * np.pi / PERIOD) / (3 * np.sin(np.pi / PERIOD))
    assert np.abs(averaged).max() == pytest.approx(expected, rel=1e-3)


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="slice profile"):
        slice_profile(_sinusoid(), 2, 3, "sinc")


def test_degradation_samples_every_factor_th_profile_averaged_slice_from_the_first():
    """A linear ramp survives a symmetric profile: thick slice k holds the ramp's value at fine slice 3k."""
    ramp = np.broadcast_to(np.arange(31, dtype=np.float32), (4, 5, 31)).copy()
    thick = degrade(ramp, 2, 3)
    assert thick.shape == (4, 5, 11)
    np.testing.assert_allclose(thick[0, 0, 2:-2], np.arange(0, 31, 3)[2:-2], atol=1e-4)


def test_noise_is_seeded_and_scaled_to_the_volume():
    volume = np.random.default_rng(0).random((20, 20, 30)).astype(np.float32) * 100
    a, b = degrade(volume, 2, 3, noise=0.05, seed=1), degrade(volume, 2, 3, noise=0.05, seed=1)
    clean = degrade(volume, 2, 3)
    np.testing.assert_array_equal(a, b)
    assert np.std(a - clean) == pytest.approx(0.05 * np.percentile(volume, 99.5), rel=0.05)


@pytest.mark.parametrize("order", [1, 3])
def test_upsampling_keeps_the_thick_slices_and_has_the_fine_grid_size(order):
    thick = np.random.default_rng(1).random((5, 6, 9)).astype(np.float32)
    fine = upsample(thick, 1, 3, order)
    assert fine.shape == (5, fine_size(6, 3), 9) == (5, 16, 9)
    np.testing.assert_allclose(fine[:, ::3], thick, atol=1e-5)


def test_linear_upsampling_is_exact_on_a_ramp():
    ramp = np.broadcast_to(np.arange(0, 30, 3, dtype=np.float32), (2, 2, 10)).copy()
    np.testing.assert_allclose(upsample(ramp, 2, 3, 1)[0, 0], np.arange(28, dtype=np.float32), atol=1e-5)


def test_fine_grid_puts_every_factor_th_voxel_on_a_thick_slice():
    """Oblique, anisotropic: the fine grid's voxel 3k lies where the thick grid's voxel k does (physical mm)."""
    rotation = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))[0]
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.9, 1.1, 1.0])
    affine[:3, 3] = [12.5, -40.0, 7.25]
    thick = thick_affine(affine, 1, 3)
    fine = fine_affine(thick, 1, 3)
    np.testing.assert_allclose(fine, affine, atol=1e-12)
    index = np.array([2, 4, 5, 1.0])
    np.testing.assert_allclose(thick @ index, fine @ (index * [1, 3, 1, 1]), atol=1e-12)
    assert fine_target(np.zeros((3, 31, 3)), 1, 3).shape == (3, 31, 3)
    assert fine_target(np.zeros((3, 32, 3)), 1, 3).shape == (3, 31, 3)  # slice 31 has no thick slice after it


def test_only_thick_slice_volumes_are_accepted():
    assert check_thick("a.nii", (1.0, 0.9, 3.0), 3) == 2
    assert check_thick("a.nii", (4.0, 1.0, 1.0), 3) == 0
    with pytest.raises(ImageReadError, match=r"^iso\.nii: slice spacing 1 mm / 3 = 0\.333 mm would be finer"):
        check_thick("iso.nii", (1.0, 1.0, 1.0), 3)
    with pytest.raises(ImageReadError, match=r"^flat\.nii: super-resolution needs a 3D volume"):
        check_thick("flat.nii", (1.0, 1.0), 3)


def test_the_reports_psnr_is_the_whole_volumes_and_finite_when_a_slice_is_exact():
    """Air slices at a volume's edge are exact for every method: PSNR over the volume's mean squared error."""
    from monai_bundle.tasks.ct_denoising.metrics import scores

    reference = np.zeros((16, 16, 8), np.float32)
    reference[4:12, 4:12, 2:6] = 0.5
    image = reference.copy()
    image[4:12, 4:12, 2:6] += 0.1  # error 0.1 on 256 of the 2048 voxels; slices 0, 1, 6, 7 exact
    expected = 10 * np.log10(1.0 / (0.01 * 256 / 2048))
    assert scores(image, reference, (0.0, 1.0), volume_psnr=True)["psnr_db"] == pytest.approx(expected, abs=1e-3)
    assert np.isinf(scores(image, reference, (0.0, 1.0))["psnr_db"])  # the mean of slice PSNRs is not usable here
