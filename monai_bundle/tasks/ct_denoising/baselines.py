"""The classical denoisers a learned one has to beat (Gaussian, bilateral, non-local means, BM3D), at several strengths.

BM3D comes from the optional extra `bm3d` (PyPI `bm3d`, Tampere University's implementation; its licence allows
non-commercial use only, hence not a core dependency); without it the other methods are scored alone.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np

from monai_bundle.tasks.ct_denoising.metrics import DEFAULT_WINDOW, noise_sigma, window

BASELINE_SETTINGS = {
    "gaussian": (0.25, 0.35, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0),
    "bilateral": (0.05, 0.1),
    "non-local means": (0.4, 0.6, 0.8, 1.2, 1.6, 2.0, 2.5, 3.0, 4.0, 6.0),
    "bm3d": (0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 9.0),
}
"""Strengths each classical denoiser is run at: Gaussian sigma (pixels), bilateral colour sigma (in the [0, 1]
window), non-local means h and BM3D's noise sigma (x the slice's measured noise, `measured_noise`). A learned
denoiser is compared with each method's best setting on the very volume scored, which favours the baselines;
the grids are wide because the best setting moves a lot between CTs and doses (the docs' "Other CTs and
doses"): 0.35-1.25 px for the Gaussian, 0.5-6 sigma for BM3D (CT noise is correlated and streaky: the
measured sigma can be half the true one at fine pixels, and more than it at 3 mm, where structure counts)."""


def bm3d_available() -> bool:
    """Whether the optional `bm3d` package is installed (BM3D is then one of the baselines)."""
    return importlib.util.find_spec("bm3d") is not None


def measured_noise(hu: np.ndarray, hu_window: tuple[float, float] = DEFAULT_WINDOW) -> float:
    """Noise sigma of a HU slice in units of the [0, 1] window (`noise_sigma` of the unclipped HU / window width).

    Measured before clipping: the window clips air's noise to 0 and would halve the estimate.
    """
    return noise_sigma(hu) / (hu_window[1] - hu_window[0])


def classical_denoisers(
    settings: dict[str, tuple[float, ...]] = BASELINE_SETTINGS, hu_window: tuple[float, float] = DEFAULT_WINDOW
) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Baselines a learned denoiser has to beat, each HU slice -> HU slice, one per method and strength.

    BM3D is left out when its package is not installed (`bm3d_available`). It runs its hard-thresholding
    stage only: on a 0.70 mm chest slice at 2e4 photons/ray that scored 0.7 dB above both stages at the
    best sigma, in half the time (about 7 s per 512x512 slice on one core).
    """
    from functools import partial

    from scipy.ndimage import gaussian_filter
    from skimage.restoration import denoise_bilateral, denoise_nl_means

    low, high = hu_window
    to_hu = lambda scaled: np.asarray(scaled, np.float32) * (high - low) + low  # noqa: E731

    def gaussian(hu, strength):
        return gaussian_filter(np.asarray(hu, np.float32), sigma=strength)

    def bilateral(hu, strength):
        return to_hu(denoise_bilateral(window(hu, hu_window), sigma_color=strength, sigma_spatial=1.5))

    def nl_means(hu, strength):
        sigma = measured_noise(hu, hu_window)
        scaled = window(hu, hu_window)
        return to_hu(
            denoise_nl_means(scaled, h=strength * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True)
        )

    def bm3d(hu, strength):
        import bm3d as bm3d_package

        sigma = strength * measured_noise(hu, hu_window)
        stage = bm3d_package.BM3DStages.HARD_THRESHOLDING
        return to_hu(bm3d_package.bm3d(window(hu, hu_window), sigma_psd=sigma, stage_arg=stage))

    methods = {
        "gaussian": (gaussian, "sigma {:g} px"),
        "bilateral": (bilateral, "colour {:g}"),
        "non-local means": (nl_means, "h {:g} sigma"),
        "bm3d": (bm3d, "{:g} sigma"),
    }
    if not bm3d_available():
        del methods["bm3d"]
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
