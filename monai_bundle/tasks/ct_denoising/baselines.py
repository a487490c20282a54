"""The classical denoisers a learned one has to beat (Gaussian, bilateral, non-local means), at several strengths."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from monai_bundle.tasks.ct_denoising.metrics import noise_sigma, window

BASELINE_SETTINGS = {"gaussian": (0.5, 0.75, 1.0), "bilateral": (0.05, 0.1), "non-local means": (0.8, 1.2, 1.6)}
"""Strengths each classical denoiser is run at: Gaussian sigma (pixels), bilateral colour sigma (in the
[0, 1] window), non-local means h (x the slice's estimated noise sigma). A learned denoiser is
compared with each method's best setting on the very volume scored, which favours the baselines."""


def classical_denoisers(settings: dict[str, tuple[float, ...]] = BASELINE_SETTINGS) -> dict[str, callable]:
    """Baselines a learned denoiser has to beat, each HU slice -> HU slice, one per method and strength."""
    from functools import partial

    from scipy.ndimage import gaussian_filter
    from skimage.restoration import denoise_bilateral, denoise_nl_means

    def gaussian(hu, strength):
        return gaussian_filter(np.asarray(hu, np.float32), sigma=strength)

    def bilateral(hu, strength):
        return denoise_bilateral(window(hu), sigma_color=strength, sigma_spatial=1.5) * 2000.0 - 1000.0

    def nl_means(hu, strength):
        scaled = window(hu)
        sigma = noise_sigma(scaled)
        return (
            denoise_nl_means(scaled, h=strength * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True)
            * 2000.0
            - 1000.0
        )

    methods = {
        "gaussian": (gaussian, "sigma {:g} px"),
        "bilateral": (bilateral, "colour {:g}"),
        "non-local means": (nl_means, "h {:g} sigma"),
    }
    return {
        f"{method} ({label.format(value)})": partial(denoise, strength=value)
        for method, (denoise, label) in methods.items()
        for value in settings.get(method, ())
    }


def denoise_slices(denoise: Callable[[np.ndarray], np.ndarray], volume: np.ndarray) -> np.ndarray:
    """A slice denoiser applied to every axial slice (axis 2) of an [i, j, k] HU volume."""
    return np.stack([denoise(volume[:, :, k]) for k in range(volume.shape[2])], axis=2)


def best_baselines(case: dict[str, dict[str, float]]) -> dict[str, str]:
    """For each classical method in a scored case, the name of its setting with the highest PSNR."""
    best: dict[str, str] = {}
    for name, score in case.items():
        method = name.split(" (")[0]
        if method in BASELINE_SETTINGS and (method not in best or score["psnr_db"] > case[best[method]]["psnr_db"]):
            best[method] = name
    return best
