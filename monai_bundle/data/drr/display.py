"""How line integrals are shown the way a radiograph is: window, compression, gamma, blur, noise, edges."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from monai_bundle.data.drr.sources import SourceCT


@dataclass(frozen=True)
class Display:
    """How line integrals become an 8-bit radiograph (bone bright, air dark).

    The line integrals L first get a Gaussian detector blur of `blur_px` output pixels and quantum
    noise for `photons` unattenuated photons a pixel (Gaussian approximation of Poisson counts,
    drawn from `noise_seed`; 0: no noise). Then t = clip((L - lo) / (hi - lo)), compressed as
    (1 - exp(-k t)) / (1 - exp(-k)) (k > 0 brightens mid-tones, k < 0 darkens them, 0: linear),
    raised to `gamma`, and edge-enhanced by unsharp masking of strength `unsharp`.
    """

    size: int = 256
    lo: float = 0.0
    hi: float = 6.0
    k: float = 1.0
    gamma: float = 1.0
    blur_px: float = 0.0
    photons: float = 0.0
    unsharp: float = 0.0
    noise_seed: int = 0


def to_display(integral: np.ndarray, display: Display) -> np.ndarray:
    """uint8 (size, size) radiograph from line integrals (any square size; resized linearly)."""
    if integral.shape[0] != display.size:
        integral = ndimage.zoom(integral, display.size / integral.shape[0], order=1, grid_mode=True, mode="nearest")
    if display.blur_px > 0:
        integral = ndimage.gaussian_filter(integral, display.blur_px)
    if display.photons > 0:
        noise = np.random.default_rng(display.noise_seed).standard_normal(integral.shape)
        integral = integral + noise / np.sqrt(display.photons * np.exp(-integral))
    t = np.clip((integral - display.lo) / max(display.hi - display.lo, 1e-6), 0.0, 1.0)
    if abs(display.k) > 1e-3:
        t = (1.0 - np.exp(-display.k * t)) / (1.0 - math.exp(-display.k))
    t = t**display.gamma
    if display.unsharp > 0:
        t = t + display.unsharp * (t - ndimage.gaussian_filter(t, display.size / 24))
    return np.rint(np.clip(t, 0.0, 1.0) * 255.0).astype(np.uint8)


def random_display(rng: np.random.Generator, source: SourceCT, size: int) -> Display:
    """Display and detector settings varied around the source's levels.

    The photon count is drawn for a 256-pixel image and scaled by the pixel area: the same dose
    over fewer, larger pixels is less noisy per pixel.
    """
    hi = source.level_hi * rng.uniform(0.75, 1.0)
    return Display(
        size=size,
        lo=round(float(hi * rng.uniform(0.05, 0.3)), 4),
        hi=round(float(hi), 4),
        k=round(float(rng.uniform(-1.5, 1.5)), 3),
        gamma=round(float(math.exp(rng.uniform(math.log(0.8), math.log(1.25)))), 3),
        blur_px=round(float(rng.uniform(0.3, 1.5) * size / 256), 3),
        photons=round(float(math.exp(rng.uniform(math.log(5e3), math.log(1e5))) * (256 / size) ** 2), 1),
        unsharp=round(float(rng.uniform(0.2, 1.0)), 3),
        noise_seed=int(rng.integers(2**31)),
    )
