"""How a denoiser is scored: PSNR and SSIM (MONAI's metrics) in a HU window, and a noise level estimate.

Both images are clipped to a HU window (default -1000..1000, data range 2000 HU) and scaled to
[0, 1] before scoring against the original (normal-dose) image.
"""

from __future__ import annotations

import numpy as np

DEFAULT_WINDOW = (-1000.0, 1000.0)


def window(hu: np.ndarray, hu_window: tuple[float, float] = DEFAULT_WINDOW) -> np.ndarray:
    """HU clipped to the window and scaled to [0, 1]."""
    low, high = hu_window
    return ((np.clip(np.asarray(hu, np.float32), low, high) - low) / (high - low)).astype(np.float32)


def scores(
    image: np.ndarray,
    reference: np.ndarray,
    hu_window: tuple[float, float] = DEFAULT_WINDOW,
    volume_psnr: bool = False,
) -> dict[str, float]:
    """PSNR (dB) and SSIM of a 2D or 3D HU image against the reference, both windowed to [0, 1] (MONAI metrics).

    A 3D image is scored slice by slice (SSIM's 2D 11x11 Gaussian window) and averaged; with `volume_psnr`, PSNR
    is that of the whole volume's mean squared error instead (a slice equal to the reference, e.g. empty air at
    a volume's edge, would make the mean of slice PSNRs infinite).
    """
    import torch
    from monai.metrics import PSNRMetric, SSIMMetric

    a, b = window(image, hu_window), window(reference, hu_window)
    if a.ndim == 2:
        a, b = a[:, :, None], b[:, :, None]
    # slices as a batch of 2D images: [k, 1, i, j]
    to_batch = lambda x: torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, 2, 0)[:, None]))  # noqa: E731
    ta, tb = to_batch(a), to_batch(b)
    if volume_psnr:
        psnr = PSNRMetric(max_val=1.0)(ta.reshape(1, 1, -1), tb.reshape(1, 1, -1)).item()
    else:
        psnr = PSNRMetric(max_val=1.0)(ta, tb).mean().item()
    ssim = SSIMMetric(spatial_dims=2, data_range=1.0)(ta, tb).mean().item()
    return {"psnr_db": psnr, "ssim": ssim}


def noise_sigma(image: np.ndarray) -> float:
    """Gaussian noise level of a 2D image (Immerkaer 1996: the image's response to a Laplacian difference mask)."""
    from scipy.signal import convolve2d

    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
    response = np.abs(convolve2d(np.asarray(image, np.float64), mask, mode="valid"))
    return float(np.sqrt(np.pi / 2) * response.sum() / (6.0 * response.size))


HU_BANDS = {"lung": (-900.0, -500.0), "soft tissue": (-500.0, 300.0), "bright": (300.0, float("inf"))}
"""HU bands a denoiser's error is broken down by, by the reference (normal-dose) value: lung parenchyma,
soft tissue and fat, and bone or contrast (lower bound included, upper excluded)."""


def band_rms_hu(
    image: np.ndarray,
    reference: np.ndarray,
    hu_window: tuple[float, float] = DEFAULT_WINDOW,
    bands: dict[str, tuple[float, float]] = HU_BANDS,
) -> dict[str, float | None]:
    """RMS error (HU) of an image in each HU band of the reference, both clipped to the window first.

    Clipped as PSNR and SSIM are: a denoiser that works in the window is not charged for bone above it.
    A band with no voxel gets None.
    """
    image, reference = np.asarray(image, np.float64), np.asarray(reference, np.float64)
    if image.shape != reference.shape:
        raise ValueError(f"image and reference differ in shape: {image.shape} vs {reference.shape}")
    error = np.clip(image, *hu_window) - np.clip(reference, *hu_window)
    result: dict[str, float | None] = {}
    for name, (low, high) in bands.items():
        inside = (reference >= low) & (reference < high)
        result[name] = float(np.sqrt(np.mean(error[inside] ** 2))) if inside.any() else None
    return result
