"""Task ct_denoising: low-dose CT denoising with a pix2pix GAN, low-dose simulation and classical baselines.

Modules: `lowdose` (simulating a low-dose scan), `data` (training pairs and their data lists),
`prepare` (the prepare workflow), `networks` (the generator), `transforms` (its output back to HU),
`metrics` (PSNR/SSIM in a HU window, RMS error per HU band), `baselines` (classical denoisers, BM3D with the
`bm3d` extra), `reports` (the evaluation report), `real_cts` (every real sample CT at two doses),
`cli` (`python -m monai_bundle.tasks.ct_denoising`: a simulated low-dose copy of a CT).
"""

from .baselines import (
    BASELINE_SETTINGS,
    best_baselines,
    bm3d_available,
    classical_denoisers,
    denoise_slices,
    measured_noise,
)
from .data import (
    PAIR_SOURCES,
    PHOTONS_RANGE,
    PIXEL_MM_RANGE,
    SAME_PATIENT,
    VARIED_SOURCES,
    downsample_in_plane,
    pair_datalist,
    resample_in_plane,
    write_denoise_dataset,
    write_pairs,
    write_varied_pairs,
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
from .metrics import DEFAULT_WINDOW, HU_BANDS, band_rms_hu, noise_sigma, scores, window
from .networks import NOISE_INPUT_SCALE, ResidualUNet, noise_level
from .prepare import prepare_dataset, prepared_pairs
from .real_cts import (
    EVAL_PHOTONS,
    HEAD_CTS,
    REAL_CTS,
    UNSEEN_CTS,
    leave_one_out_folds,
    markdown_tables,
    real_ct_rows,
    trained_on,
    write_real_ct_pairs,
)
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
    "HU_BANDS",
    "band_rms_hu",
    "BASELINE_SETTINGS",
    "bm3d_available",
    "measured_noise",
    "classical_denoisers",
    "denoise_slices",
    "best_baselines",
    "PAIR_SOURCES",
    "VARIED_SOURCES",
    "PIXEL_MM_RANGE",
    "PHOTONS_RANGE",
    "SAME_PATIENT",
    "downsample_in_plane",
    "resample_in_plane",
    "write_denoise_dataset",
    "write_pairs",
    "write_varied_pairs",
    "pair_datalist",
    "prepare_dataset",
    "prepared_pairs",
    "ResidualUNet",
    "NOISE_INPUT_SCALE",
    "noise_level",
    "WindowToHUd",
    "DenoiseReport",
    "REAL_CTS",
    "UNSEEN_CTS",
    "HEAD_CTS",
    "leave_one_out_folds",
    "trained_on",
    "EVAL_PHOTONS",
    "write_real_ct_pairs",
    "real_ct_rows",
    "markdown_tables",
]
