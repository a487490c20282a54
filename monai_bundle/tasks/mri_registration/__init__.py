"""Task mri_registration: GAN-aided cross-modality registration of brain MRI slices.

Cross-modality (T1 -> T2-like) deformable registration helped by a GAN, with known synthetic warps.
Modules: `data` (synthetic-from-real pairs with a known warp, data lists), `prepare` (the prepare
workflow), `networks` (translator + registration network, its loss), `metrics` (scores against the
known warp), `baselines` (SimpleITK B-spline), `transforms` (the results written on the fixed grid).
"""

from .baselines import sitk_bspline
from .data import (
    SPACING_MM,
    T2_LIKE,
    TISSUES,
    SyntheticWarpDataset,
    keyed_batch,
    load_slices,
    pair_datalist,
    random_smooth_ddf,
    save_slices,
    t2_like,
    tissue_labels,
    write_icbm_slices,
)
from .metrics import folding_fraction, score
from .networks import RegistrationLoss, TranslateAndRegister
from .prepare import prepare_dataset, prepared_slices
from .transforms import SaveRegistrationd

__all__ = [
    "SPACING_MM",
    "T2_LIKE",
    "TISSUES",
    "write_icbm_slices",
    "save_slices",
    "load_slices",
    "random_smooth_ddf",
    "t2_like",
    "tissue_labels",
    "SyntheticWarpDataset",
    "keyed_batch",
    "pair_datalist",
    "prepare_dataset",
    "prepared_slices",
    "TranslateAndRegister",
    "RegistrationLoss",
    "folding_fraction",
    "score",
    "sitk_bspline",
    "SaveRegistrationd",
]
