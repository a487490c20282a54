"""MONAI transforms and helpers that write results on the grid of the input they came from, reusing its header."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_bundle.io.geometry import GRID_TOLERANCE_MM
from monai_bundle.io.radiograph import PICTURE_SUFFIXES
from monai_bundle.io.registry import image_suffix, read_header, read_radiograph, write_image

logger = logging.getLogger(__name__)


INPUT_KINDS = ("volume", "radiograph")


def source_path(item) -> str:
    """The file or DICOM folder an image (MetaTensor) was read from."""
    meta = getattr(item, "meta", {}) or {}
    path = meta.get("filename_or_obj")
    if not path:
        raise ValueError("the prediction carries no source file name (was it loaded with LoadImaged?)")
    return str(path)


def case_name(path: str) -> str:
    """A file's (or DICOM folder's) name without its image suffix ('.dcm' and picture suffixes included)."""
    suffix = image_suffix(path)
    name = Path(path).name
    if suffix and suffix != "dicom":
        return name[: -len(suffix)]
    stem, extension = os.path.splitext(name)
    return stem if Path(path).is_file() and extension.lower() in (".dcm", *PICTURE_SUFFIXES) else name


def output_path(source: str, output_dir: str, postfix: str, ext: str | None) -> Path:
    """`<output_dir>/<case>_<postfix><ext>`; ext defaults to the source's own format (DICOM -> .nii.gz)."""
    suffix = ext or image_suffix(source)
    if suffix in (None, "dicom", ".mhd", ".nhdr"):
        suffix = {".mhd": ".mha", ".nhdr": ".nrrd"}.get(suffix, ".nii.gz")
    return Path(output_dir) / f"{case_name(source)}_{postfix}{suffix}"


class SaveOnInputGridd(MapTransform):
    """Write each key's array on the grid of the image it came from, reusing that file's header.

    Run it after `Invertd`: the array must then have the source's shape and affine, which is checked
    (a mismatch is an error, never a silently shifted result). NIfTI and NRRD sources get their own
    header back byte-for-byte apart from the data type; DICOM sources are written as NIfTI.
    Writing is atomic: a temp file renamed into place. With `output_dir_key`, an item that carries
    that key is written to the folder it names instead of `output_dir` (batch runs mirror input folders).
    `input_kind="radiograph"` checks the grid the way radiographs are read (`read_radiograph`).

    Args:
        keys: keys of the channel-first predictions to write; each item gets `<key>_path`, the file written.
        output_dir: folder of the written files.
        output_postfix: the written file is `<case>_<output_postfix><ext>`.
        output_ext: suffix of the written files; None: the source's (.mhd, .nhdr: .mha, .nrrd; DICOM: .nii.gz).
        output_dtype: voxel type written (the array is cast to it).
        output_dir_key: key of an item's own output folder, used instead of `output_dir` when present.
        input_kind: one of `INPUT_KINDS`: how the source is read to check the grid ('volume' or 'radiograph').
        allow_missing_keys: don't raise for keys missing from an item.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str,
        output_postfix: str = "seg",
        output_ext: str | None = None,
        output_dtype: str = "uint8",
        output_dir_key: str | None = None,
        input_kind: str = "volume",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {', '.join(INPUT_KINDS)}, not {input_kind!r}")
        self.input_kind = input_kind
        self.output_dir = output_dir
        self.output_postfix = output_postfix
        self.output_ext = output_ext
        self.output_dtype = np.dtype(output_dtype)
        self.output_dir_key = output_dir_key

    def __call__(self, data):
        d = dict(data)
        output_dir = d.get(self.output_dir_key, self.output_dir) if self.output_dir_key else self.output_dir
        for key in self.key_iterator(d):
            d[f"{key}_path"] = str(self.save(d[key], output_dir))
        return d

    def save(self, item, output_dir: str | None = None) -> Path:
        """Write one channel-first prediction on its source's grid (in `output_dir`, default self.output_dir)."""
        source = source_path(item)
        array = np.asarray(item.detach().cpu() if hasattr(item, "detach") else item)
        if array.ndim in (3, 4) and array.shape[0] == 1:
            array = array[0]
        affine = np.asarray(item.meta["affine"], dtype=np.float64)
        check_same_grid(source, array.shape, affine, self.input_kind)
        target = output_path(source, output_dir or self.output_dir, self.output_postfix, self.output_ext)
        write_image(array.astype(self.output_dtype), affine, target, reference=_header_source(source))
        logger.info("wrote %s", target)
        return target


def source_grid(source: str, input_kind: str = "volume") -> tuple[tuple[int, ...], np.ndarray]:
    """(shape, RAS affine) of an input as the bundle reads it: a volume's header, or a radiograph."""
    if input_kind == "radiograph":
        image = read_radiograph(source)
        return image.array.shape, image.affine
    shape, affine, _ = read_header(source)
    return shape, affine


def check_same_grid(source: str, shape: tuple[int, ...], affine: np.ndarray, input_kind: str = "volume") -> None:
    """Raise if `shape`/`affine` differ from the source image's grid."""
    source_shape, source_affine = source_grid(source, input_kind)
    if tuple(shape) != tuple(source_shape):
        raise ValueError(f"{source}: result shape {tuple(shape)} differs from the input's {tuple(source_shape)}")
    error = float(np.abs(np.asarray(affine) - source_affine).max())
    if error > GRID_TOLERANCE_MM:
        raise ValueError(f"{source}: result affine differs from the input's by {error:.3g} mm")


def _header_source(source: str) -> str | None:
    """The file whose header a result may reuse (a single-file NIfTI/NRRD/MetaImage; not DICOM or a picture)."""
    return source if Path(source).is_file() and image_suffix(source) not in (None, "dicom") else None
