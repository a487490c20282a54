"""Task ct_denoising: low-dose CT denoising with a pix2pix GAN, low-dose simulation and classical baselines.

Modules: `lowdose` (simulating a low-dose scan), `data` (training pairs and their data lists),
`prepare` (the prepare workflow), `networks` (the generator), `transforms` (its output back to HU),
`metrics` (PSNR/SSIM in a HU window), `baselines` (classical denoisers), `reports` (the evaluation
report), `cli` (`python -m monai_bundle.tasks.ct_denoising`: a simulated low-dose copy of a CT).
"""

from .baselines import (
    BASELINE_SETTINGS,
    best_baselines,
    classical_denoisers,
    denoise_slices,
)
from .data import (
    PAIR_SOURCES,
    downsample_in_plane,
    pair_datalist,
    write_denoise_dataset,
)
from .lowdose import (
    DEFAULT_ANGLES,
    DEFAULT_PHOTONS,
    MU_WATER,
    hu_to_mu,
    noise_hu,
    simulate_low_dose_slice,
    simulate_low_dose_volume,
)
from .metrics import DEFAULT_WINDOW, noise_sigma, scores, window
from .networks import ResidualUNet
from .prepare import prepare_dataset, prepared_pairs
from .reports import DenoiseReport
from .transforms import WindowToHUd

__all__ = [
    "MU_WATER",
    "DEFAULT_PHOTONS",
    "DEFAULT_ANGLES",
    "hu_to_mu",
    "simulate_low_dose_slice",
    "simulate_low_dose_volume",
    "noise_hu",
    "DEFAULT_WINDOW",
    "window",
    "scores",
    "noise_sigma",
    "BASELINE_SETTINGS",
    "classical_denoisers",
    "denoise_slices",
    "best_baselines",
    "PAIR_SOURCES",
    "downsample_in_plane",
    "write_denoise_dataset",
    "pair_datalist",
    "prepare_dataset",
    "prepared_pairs",
    "ResidualUNet",
    "WindowToHUd",
    "DenoiseReport",
]
