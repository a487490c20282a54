"""MONAI `ImageReader`s over `read_image`, `read_suv` (PET) and `read_radiograph`, for `LoadImaged(reader=...)`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.data import ImageReader
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

from monai_bundle.io.errors import ImageReadError
from monai_bundle.io.geometry import GRID_TOLERANCE_MM, Volume, c_ordered
from monai_bundle.io.pet import F18_HALF_LIFE_S, StatedUnit, read_suv
from monai_bundle.io.registry import DEFAULT_MAX_BYTES, image_suffix, radiograph_format, read_image, read_radiograph

PathLike = str | os.PathLike


class _VolumeReader(ImageReader):
    """A MONAI ImageReader over one of this package's readers (`_read_one`).

    Meta data follows MONAI's NibabelReader: RAS 'affine'/'original_affine', 'spatial_shape',
    'original_channel_dim' ('no_channel'), 'space', 'filename_or_obj', plus 'source_format'.
    Several files are stacked as channels; they must share one grid.
    """

    def _read_one(self, name: PathLike) -> Volume:
        raise NotImplementedError

    def read(self, data: PathLike | Sequence[PathLike], **kwargs) -> Volume | list[Volume] | ImageReadError:
        try:
            volumes = [self._read_one(name) for name in ensure_tuple(data)]
        except ImageReadError as error:
            # LoadImage would try its other readers on a file we refused (nibabel skips gzip CRCs, for one):
            # hand the error over to get_data, which LoadImage does not guard.
            return error
        return volumes if len(volumes) > 1 else volumes[0]

    def get_data(self, img: Volume | list[Volume] | ImageReadError) -> tuple[np.ndarray, dict]:
        if isinstance(img, ImageReadError):
            raise img
        volumes = list(ensure_tuple(img))
        first = volumes[0]
        for other in volumes[1:]:
            same_affine = np.allclose(other.affine, first.affine, atol=GRID_TOLERANCE_MM)
            if other.array.shape != first.array.shape or not same_affine:
                raise ImageReadError(other.path, f"grid differs from {first.path}'s; cannot stack them as channels")
        meta = {
            MetaKeys.AFFINE: first.affine.copy(),
            MetaKeys.ORIGINAL_AFFINE: first.affine.copy(),
            MetaKeys.SPATIAL_SHAPE: np.asarray(first.array.shape),
            MetaKeys.ORIGINAL_CHANNEL_DIM: "no_channel" if len(volumes) == 1 else 0,
            MetaKeys.SPACE: SpaceKeys.RAS,
            "filename_or_obj": first.path,
            "source_format": first.format,
        }
        array = c_ordered(first.array) if len(volumes) == 1 else np.stack([v.array for v in volumes])
        return array, meta


class MedImgReader(_VolumeReader):
    """`read_image` for MONAI: `LoadImaged(keys="image", reader=MedImgReader)`.

    Reads NIfTI, NRRD, MetaImage files and DICOM series with their exact RAS grid, and refuses bad
    input with one line instead of letting MONAI fall back to a reader that would accept it.

    Args:
        ndim: 2 or 3 to require that rank (a singleton trailing axis is squeezed); None accepts 2D or 3D.
        max_bytes: refuse images whose decoded voxel data would be larger, before decoding them.
        dtype: cast the voxel data to this type; None keeps integer types and reads the rest as float32.
        kwargs: ignored (MONAI passes reader options through).
    """

    def __init__(
        self, ndim: int | None = None, max_bytes: int = DEFAULT_MAX_BYTES, dtype: np.dtype | str | None = None, **kwargs
    ) -> None:
        super().__init__()
        self.ndim, self.max_bytes, self.dtype = ndim, max_bytes, dtype

    def verify_suffix(self, filename: PathLike | Sequence[PathLike]) -> bool:
        return all(image_suffix(name) is not None for name in ensure_tuple(filename))

    def _read_one(self, name: PathLike) -> Volume:
        return read_image(name, ndim=self.ndim, max_bytes=self.max_bytes, dtype=self.dtype)


class SUVReader(MedImgReader):
    """`read_suv` for MONAI: `LoadImaged(keys="pet", reader=SUVReader)` gives a PET image in body-weight SUV.

    A DICOM PET series is converted from its own attributes; a NIfTI/NRRD/MetaImage PET needs its unit stated.

    Args:
        unit: the unit of a non-DICOM PET: "SUV" or "BQML" (then weight_kg and dose_bq); None refuses such files.
        weight_kg, dose_bq, decay_s, half_life_s: what `pet.StatedUnit` takes for BQML.
        max_bytes: refuse images whose decoded voxel data would be larger, before decoding them.
        kwargs: ignored (MONAI passes reader options through).
    """

    def __init__(
        self,
        unit: str | None = None,
        weight_kg: float | None = None,
        dose_bq: float | None = None,
        decay_s: float = 0.0,
        half_life_s: float = F18_HALF_LIFE_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
        **kwargs,
    ) -> None:
        super().__init__(ndim=3, max_bytes=max_bytes)
        self.stated = StatedUnit(unit, weight_kg, dose_bq, decay_s, half_life_s) if unit else None

    def _read_one(self, name: PathLike) -> Volume:
        return read_suv(name, self.stated, max_bytes=self.max_bytes)


class RadiographReader(_VolumeReader):
    """`read_radiograph` for MONAI: `LoadImaged(keys="image", reader=RadiographReader)` gives [i, j] float32.

    With `EnsureChannelFirstd` the image is (1, columns, rows) with the radiograph's RAS affine.

    Args:
        max_bytes: refuse radiographs whose decoded pixels would be larger, before decoding them.
        kwargs: ignored (MONAI passes reader options through).
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, **kwargs) -> None:
        super().__init__()
        self.max_bytes = max_bytes

    def verify_suffix(self, filename: PathLike | Sequence[PathLike]) -> bool:
        return all(radiograph_format(Path(name)) is not None for name in ensure_tuple(filename))

    def _read_one(self, name: PathLike) -> Volume:
        return read_radiograph(name, max_bytes=self.max_bytes)
