"""Writing a registration's results on the fixed image's grid."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.networks.blocks import Warp
from monai.transforms import MapTransform

from monai_bundle.io import (
    check_same_grid,
    image_suffix,
    output_path,
    write_displacement_field,
    write_image,
)

logger = logging.getLogger(__name__)


class SaveRegistrationd(MapTransform):
    """Write the warped moving image and the displacement field, both on the fixed image's grid.

    `keys`: the displacement (channel-first, voxels of the fixed grid, MONAI `Warp` convention).
    The warped image is `<moving>_warped.<fixed's format>` with the fixed file's header; the field is
    `<moving>_ddf.nii.gz`: a NIfTI vector image, per fixed-grid point x the displacement u(x) in LPS mm
    with moving(x + u(x)) ~ fixed(x) (see monai_bundle.io.write_displacement_field).

    Args:
        keys: key of the displacement.
        moving_key: key of the moving image as read (its metadata names the source file).
        fixed_key: key of the fixed image (its metadata gives the grid and the reference file).
        output_dir: folder of the outputs.
        allow_missing_keys: do not fail when a key is missing.
    """

    def __init__(
        self, keys: KeysCollection, moving_key: str, fixed_key: str, output_dir: str, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.moving_key, self.fixed_key, self.output_dir = moving_key, fixed_key, output_dir
        self.warp = Warp(mode="bilinear", padding_mode="zeros")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            moving, fixed, ddf = d[self.moving_key], d[self.fixed_key], d[key].float()
            fixed_path, moving_path = str(fixed.meta["filename_or_obj"]), str(moving.meta["filename_or_obj"])
            affine = np.asarray(fixed.meta["affine"], np.float64)
            warped = self.warp(torch.as_tensor(moving)[None].float(), torch.as_tensor(ddf)[None])[0, 0].numpy()
            check_same_grid(fixed_path, warped.shape, affine)
            warped_path = output_path(moving_path, self.output_dir, "warped", image_suffix(fixed_path))
            write_image(
                warped.astype(np.float32),
                affine,
                warped_path,
                reference=fixed_path if Path(fixed_path).is_file() else None,
            )
            displacement_ras = np.einsum("wc,c...->...w", affine[:3, : ddf.shape[0]], ddf.numpy())
            ddf_path = output_path(moving_path, self.output_dir, "ddf", ".nii.gz")
            write_displacement_field(displacement_ras, affine, ddf_path)
            d.update({f"{key}_warped_path": str(warped_path), f"{key}_ddf_path": str(ddf_path)})
            logger.info("wrote %s and %s", warped_path, ddf_path)
        return d
