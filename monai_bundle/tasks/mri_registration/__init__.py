"""Task mri_registration: GAN-aided cross-modality registration of brain MRI slices."""

from .registration import SPACING_MM, T2_LIKE, TISSUES, write_icbm_slices, save_slices, load_slices, random_smooth_ddf, t2_like, tissue_labels, SyntheticWarpDataset, keyed_batch, TranslateAndRegister, RegistrationLoss, folding_fraction, score, sitk_bspline, pair_datalist, SaveRegistrationd


__all__ = ['SPACING_MM', 'T2_LIKE', 'TISSUES', 'write_icbm_slices', 'save_slices', 'load_slices', 'random_smooth_ddf', 't2_like', 'tissue_labels', 'SyntheticWarpDataset', 'keyed_batch', 'TranslateAndRegister', 'RegistrationLoss', 'folding_fraction', 'score', 'sitk_bspline', 'pair_datalist', 'SaveRegistrationd']
