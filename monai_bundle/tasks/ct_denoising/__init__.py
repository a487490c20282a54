"""Task ct_denoising: low-dose CT denoising with a pix2pix GAN, low-dose simulation and classical baselines."""

from .lowdose import MU_WATER, DEFAULT_PHOTONS, DEFAULT_ANGLES, DEFAULT_WINDOW, hu_to_mu, simulate_low_dose_slice, simulate_low_dose_volume, noise_hu, window, scores, noise_sigma, BASELINE_SETTINGS, classical_denoisers, best_baselines, PAIR_SOURCES, downsample_in_plane, write_denoise_dataset, pair_datalist, WindowToHUd, DenoiseReport
from .networks import ResidualUNet


__all__ = ['MU_WATER', 'DEFAULT_PHOTONS', 'DEFAULT_ANGLES', 'DEFAULT_WINDOW', 'hu_to_mu', 'simulate_low_dose_slice', 'simulate_low_dose_volume', 'noise_hu', 'window', 'scores', 'noise_sigma', 'BASELINE_SETTINGS', 'classical_denoisers', 'best_baselines', 'PAIR_SOURCES', 'downsample_in_plane', 'write_denoise_dataset', 'pair_datalist', 'WindowToHUd', 'DenoiseReport', 'ResidualUNet']
