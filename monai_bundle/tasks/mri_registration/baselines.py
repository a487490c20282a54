"""The classical baseline a learned registration is compared with: SimpleITK B-spline with mutual information."""

from __future__ import annotations

import numpy as np

from monai_bundle.tasks.mri_registration.data import SPACING_MM


def sitk_bspline(
    moving: np.ndarray, fixed: np.ndarray, spacing: float = SPACING_MM, mesh: int = 8, iterations: int = 100
) -> np.ndarray:
    """Classical baseline: SimpleITK B-spline registration with Mattes mutual information (LBFGSB, 2 levels).

    Arrays (H, W) on the same grid; returns the displacement (2, H, W) in voxels along the array axes,
    MONAI `Warp` convention (the ITK transform maps fixed points to moving points, the same).
    """
    import SimpleITK as sitk

    def image(array):
        result = sitk.GetImageFromArray(np.ascontiguousarray(array, np.float64))
        result.SetSpacing((spacing, spacing))
        return result

    fixed_image, moving_image = image(fixed), image(moving)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=iterations)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetInitialTransform(sitk.BSplineTransformInitializer(fixed_image, [mesh, mesh]), inPlace=True)
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1, 0])
    transform = method.Execute(fixed_image, moving_image)
    field = sitk.TransformToDisplacementField(
        transform,
        sitk.sitkVectorFloat64,
        fixed_image.GetSize(),
        fixed_image.GetOrigin(),
        fixed_image.GetSpacing(),
        fixed_image.GetDirection(),
    )
    vectors = sitk.GetArrayFromImage(field)  # (H, W, 2): x along the last array axis, y along the first
    return np.stack([vectors[..., 1], vectors[..., 0]]) / spacing
