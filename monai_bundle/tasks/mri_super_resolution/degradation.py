"""Thick slices from a fine volume (the degradation model) and the grids a thick volume is upsampled on.

The degradation model, along one array axis (the slice axis) of a finely sampled volume:

1. Slice profile: each thick slice integrates the object over its thickness. The profile is a
   Gaussian of FWHM = the thick spacing (`factor` fine voxels), `sigma = FWHM / (2 sqrt(2 ln 2))`,
   the usual model of a 2D MRI acquisition's slice-select profile (a boxcar is the idealised one:
   `profile="boxcar"`). A sinusoid of period P voxels is attenuated by exp(-2 pi^2 sigma^2 / P^2).
2. Sampling at the thick spacing: every `factor`-th profile-averaged slice, starting with the
   first, so the first thick slice's centre is the first fine voxel's centre (the grids share
   their origin and direction; only the slice axis' spacing changes).
3. Optional Gaussian noise, `noise` x the volume's 99.5th percentile (Rician magnitude noise is
   close to Gaussian in tissue).

Upsampling back goes to the *fine grid* of a thick volume: the same origin and direction, spacing /
`factor` along the slice axis and (n - 1) x factor + 1 voxels there, so the first and last voxel
centres are the thick volume's (no extrapolation) and every `factor`-th fine voxel lies exactly on
a thick slice (Slicer overlays the two).
"""

from __future__ import annotations

import numpy as np

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))

DEFAULT_FACTOR = 3
"""Thick / fine spacing: 3 mm slices -> 1 mm, the common thick-slice clinical MRI against the 1 mm
isotropic research scans (and the training volumes' 1 mm voxels)."""

PROFILES = ("gaussian", "boxcar")


def slice_profile(volume: np.ndarray, axis: int, factor: int, profile: str = "gaussian") -> np.ndarray:
    """`volume` averaged along `axis` by a slice profile of FWHM `factor` voxels (float32, same shape).

    Args:
        volume: the fine volume.
        axis: the slice axis.
        factor: slice thickness in fine voxels (the profile's FWHM; a boxcar's width).
        profile: "gaussian" or "boxcar" (see the module docstring).
    """
    from scipy.ndimage import gaussian_filter1d, uniform_filter1d

    volume = np.asarray(volume, np.float32)
    if profile == "gaussian":
        return gaussian_filter1d(volume, factor * FWHM_TO_SIGMA, axis=axis, mode="nearest", truncate=4.0)
    if profile == "boxcar":
        return uniform_filter1d(volume, factor, axis=axis, mode="nearest")
    raise ValueError(f"slice profile must be one of {', '.join(PROFILES)}, not {profile!r}")


def thick_affine(affine: np.ndarray, axis: int, factor: float) -> np.ndarray:
    """The affine of every `factor`-th slice along `axis` from the first: that column scaled, origin kept."""
    scaled = np.array(affine, np.float64)
    scaled[:3, axis] *= factor
    return scaled


def fine_affine(affine: np.ndarray, axis: int, factor: float) -> np.ndarray:
    """The affine of a thick grid's fine grid (see the module docstring): the inverse of `thick_affine`."""
    return thick_affine(affine, axis, 1.0 / factor)


def fine_size(size: int, factor: int) -> int:
    """Voxels along the slice axis of the fine grid of `size` thick slices: (size - 1) x factor + 1."""
    return (size - 1) * factor + 1


def degrade(
    volume: np.ndarray,
    axis: int,
    factor: int = DEFAULT_FACTOR,
    profile: str = "gaussian",
    noise: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """A thick-slice copy of a fine volume: slice profile, sampling at the thick spacing, optional noise.

    Its grid is `thick_affine(affine, axis, factor)`; fine slices 0, factor, 2 x factor ... are its slices.

    Args:
        volume: the fine volume.
        axis: the slice axis.
        factor: thick / fine spacing (an integer).
        profile: the slice profile (`PROFILES`).
        noise: Gaussian noise std as a fraction of the volume's 99.5th percentile (0: none).
        seed: seed of the noise.
    """
    averaged = slice_profile(volume, axis, factor, profile)
    thick = np.take(averaged, np.arange(0, volume.shape[axis], factor), axis=axis)
    if noise > 0:
        scale = float(np.percentile(volume, 99.5))
        thick = thick + np.random.default_rng(seed).normal(0.0, noise * scale, thick.shape).astype(np.float32)
    return np.ascontiguousarray(thick, np.float32)


def upsample(thick: np.ndarray, axis: int, factor: int = DEFAULT_FACTOR, order: int = 3) -> np.ndarray:
    """A thick volume interpolated onto its fine grid along `axis` (float32).

    Args:
        thick: the thick-slice volume.
        axis: the slice axis.
        factor: thick / fine spacing.
        order: 1 linear (the other axes are already on the grid, so this is trilinear
            interpolation), 3 cubic B-spline (SciPy's spline prefilter: an interpolating spline).
    """
    from scipy.ndimage import map_coordinates

    thick = np.asarray(thick, np.float32)
    size = fine_size(thick.shape[axis], factor)
    moved = np.moveaxis(thick, axis, 0)
    grid = np.meshgrid(np.arange(size) / factor, *(np.arange(n) for n in moved.shape[1:]), indexing="ij", sparse=True)
    coordinates = np.broadcast_arrays(*grid)
    fine = map_coordinates(moved, coordinates, order=order, mode="nearest", output=np.float32)
    return np.ascontiguousarray(np.moveaxis(fine, 0, axis))


def fine_target(volume: np.ndarray, axis: int, factor: int = DEFAULT_FACTOR) -> np.ndarray:
    """The part of a fine volume that its thick copy's fine grid covers (the first fine_size(...) slices)."""
    thick_size = len(range(0, volume.shape[axis], factor))
    return np.take(volume, np.arange(fine_size(thick_size, factor)), axis=axis)


def slice_axis(spacing: tuple[float, ...]) -> int:
    """The slice axis of a thick-slice volume: the axis of its largest spacing."""
    return int(np.argmax(spacing))
