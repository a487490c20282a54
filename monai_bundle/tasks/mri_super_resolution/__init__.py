"""Task mri_super_resolution: thick-slice MRI onto a 3x finer slice grid (pix2pix GAN on slices across the slice axis).

Modules: `degradation` (the thick-slice model and the fine grid), `data` (training pairs from the real
templates, written by the prepare workflow), `transforms` (onto the fine grid and back), `reports`
(the evaluation against trilinear and cubic B-spline interpolation). The generator is ct_denoising's
`ResidualUNet`: it learns the correction to the B-spline upsampled volume.
"""

from .data import PAIR_SOURCES, SLICE_AXES, prepared_pairs, write_sr_dataset
from .degradation import (
    DEFAULT_FACTOR,
    FWHM_TO_SIGMA,
    PROFILES,
    degrade,
    fine_affine,
    fine_size,
    fine_target,
    slice_axis,
    slice_profile,
    thick_affine,
    upsample,
)
from .reports import SuperResolutionReport
from .transforms import FromFineGridd, ToFineGridd, check_thick

__all__ = [
    "DEFAULT_FACTOR",
    "FWHM_TO_SIGMA",
    "PROFILES",
    "slice_profile",
    "degrade",
    "upsample",
    "thick_affine",
    "fine_affine",
    "fine_size",
    "fine_target",
    "slice_axis",
    "PAIR_SOURCES",
    "SLICE_AXES",
    "write_sr_dataset",
    "prepared_pairs",
    "ToFineGridd",
    "FromFineGridd",
    "check_thick",
    "SuperResolutionReport",
]
