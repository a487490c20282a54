"""Low-dose CT from a normal-dose CT, by noise insertion in the projection domain.

The simulation (per axial slice, parallel-beam geometry):

1. HU -> linear attenuation mu = MU_WATER * (1 + HU / 1000) (mm^-1; air 0, water MU_WATER).
2. Line integrals p = Radon(mu) * pixel size, at `angles` views over 180 degrees (scikit-image).
3. Detector counts N ~ Poisson(I0 * exp(-p)), I0 = `photons` per ray (unattenuated); N >= 1.
4. Noisy line integrals p' = -ln(N / I0); the noise image is the filtered back-projection (ramp
   filter) of p' - p, in HU, added to the original slice.

Adding only the back-projected noise keeps everything else of the original image (no extra FBP
blur or streaks from the simulation's own geometry), as in the noise-insertion methods used to
make low-dose training pairs. The original scan's own noise stays: the result is that scan at
lower dose, approximately. Fewer photons = more noise; `noise_hu` measures what a setting gives.
"""

from __future__ import annotations

import numpy as np
from skimage.transform import iradon, radon

MU_WATER = 0.0192  # mm^-1: water's linear attenuation at about 70 keV (0.192 cm^-1)


DEFAULT_PHOTONS = 1e5


DEFAULT_ANGLES = 360


def hu_to_mu(hu: np.ndarray) -> np.ndarray:
    return np.clip(MU_WATER * (1.0 + np.asarray(hu, np.float64) / 1000.0), 0.0, None)


def simulate_low_dose_slice(
    hu: np.ndarray,
    pixel_mm: float,
    photons: float = DEFAULT_PHOTONS,
    angles: int = DEFAULT_ANGLES,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One axial slice (HU, square pixels of `pixel_mm`) as it would look at `photons` per ray (float32 HU)."""
    hu = np.asarray(hu, np.float64)
    if hu.ndim != 2:
        raise ValueError(f"a slice is 2D, got shape {hu.shape}")
    if photons <= 0 or angles < 2 or pixel_mm <= 0:
        raise ValueError("photons, angles and pixel size must be positive (angles >= 2)")
    rng = rng or np.random.default_rng()
    theta = np.linspace(0.0, 180.0, angles, endpoint=False)
    line_integrals = radon(hu_to_mu(hu), theta, circle=False) * pixel_mm
    counts = np.maximum(rng.poisson(photons * np.exp(-line_integrals)), 1)
    noise_sinogram = -np.log(counts / photons) - line_integrals
    size = max(hu.shape)
    noise_mu = iradon(noise_sinogram / pixel_mm, theta, output_size=size, filter_name="ramp", circle=False)
    top, left = (size - hu.shape[0]) // 2, (size - hu.shape[1]) // 2
    noise_hu = 1000.0 * noise_mu[top : top + hu.shape[0], left : left + hu.shape[1]] / MU_WATER
    return (hu + noise_hu).astype(np.float32)


def simulate_low_dose_volume(
    hu: np.ndarray, pixel_mm: float, photons: float = DEFAULT_PHOTONS, angles: int = DEFAULT_ANGLES, seed: int = 0
) -> np.ndarray:
    """Every axial slice (axis 2 of an [i, j, k] volume) through `simulate_low_dose_slice`."""
    rng = np.random.default_rng(seed)
    return np.stack(
        [simulate_low_dose_slice(hu[:, :, k], pixel_mm, photons, angles, rng) for k in range(hu.shape[2])], axis=2
    )


def noise_hu(low_dose: np.ndarray, normal_dose: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Standard deviation (HU) of the inserted noise, inside `mask` when given."""
    difference = np.asarray(low_dose, np.float64) - np.asarray(normal_dose, np.float64)
    return float(difference[mask].std() if mask is not None else difference.std())
