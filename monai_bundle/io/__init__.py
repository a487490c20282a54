"""Images read and written with exact geometry (NIfTI, NRRD, MetaImage, DICOM, radiographs), atomic files, figures,
and the transforms that write results on an input's grid.

DICOM results: dicom_seg.write_dicom_seg (SEG) and dicom_sr (TID 1500 SR) write derived objects that reference
a DICOM input; codes per label are in dicom_codes (docs/dicom.md).

Adding a file format: a module beside nifti.py (its header reader, data reader, writer or radiograph reader)
and one `ImageFormat` entry in `registry.FORMATS`; read_image, write_image, find_images and the MONAI readers
then know it. Errors are `ImageReadError` (errors.py); grids and LPS/RAS conversion are in geometry.py.

The DICOM SEG and SR writers load on first use (`_LAZY`): they need highdicom and pydicom's code dictionary,
half a second of imports that a run writing NIfTI does not need.
"""

from importlib import import_module

from .dicom import SLICE_JITTER_MM, SLICE_SPACING_RTOL
from .dicom_codes import CLASS_CODES, LABEL_CODES
from .errors import ImageReadError
from .figures import (
    LABEL_COLOURS,
    display_window,
    label_colour,
    save_confusion_matrix_png,
    save_heatmap_png,
    save_overlay_png,
    save_roc_png,
    to_ras,
)
from .files import sha256_of, write_bytes_atomic, write_text_atomic
from .geometry import GRID_TOLERANCE_MM, Volume, lps_to_ras, ras_to_lps
from .itk import GZIP_LEVEL
from .nifti import NIFTI_GZIP_LEVEL, write_displacement_field
from .pet import PET_UNITS, StatedUnit, read_suv
from .png import png_bytes
from .radiograph import LUMA_BT601, PICTURE_SUFFIXES
from .readers import MedImgReader, RadiographReader, SUVReader
from .registry import (
    DEFAULT_MAX_BYTES,
    find_images,
    find_radiographs,
    image_suffix,
    read_header,
    read_image,
    read_radiograph,
    write_image,
)
from .transforms import (
    GRIDS,
    INPUT_KINDS,
    OUTPUT_FORMATS,
    SaveOnInputGridd,
    case_name,
    check_result_grid,
    check_same_grid,
    dicom_result_paths,
    is_dicom,
    output_path,
    output_paths,
    source_grid,
    source_path,
)

_LAZY = {
    "write_dicom_seg": "dicom_seg",
    "write_dicom_sr": "dicom_sr",
    "write_dicom_sr_classification": "dicom_sr",
}
"""Names exported from a module that is imported only when one of them is first used."""


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "png_bytes",
    "SLICE_JITTER_MM", "SLICE_SPACING_RTOL",
    "LABEL_CODES", "CLASS_CODES", "write_dicom_seg", "write_dicom_sr", "write_dicom_sr_classification",
    "ImageReadError",
    "LABEL_COLOURS", "label_colour", "to_ras", "display_window",
    "save_overlay_png", "save_roc_png", "save_confusion_matrix_png", "save_heatmap_png",
    "sha256_of", "write_text_atomic", "write_bytes_atomic",
    "GRID_TOLERANCE_MM", "Volume", "lps_to_ras", "ras_to_lps",
    "GZIP_LEVEL",
    "NIFTI_GZIP_LEVEL", "write_displacement_field",
    "PICTURE_SUFFIXES", "LUMA_BT601",
    "MedImgReader", "RadiographReader", "SUVReader",
    "PET_UNITS", "StatedUnit", "read_suv",
    "DEFAULT_MAX_BYTES", "image_suffix", "find_images", "find_radiographs",
    "read_header", "read_image", "read_radiograph", "write_image",
    "INPUT_KINDS", "source_path", "case_name", "output_path", "SaveOnInputGridd", "source_grid", "check_same_grid",
    "GRIDS", "check_result_grid",
    "OUTPUT_FORMATS", "output_paths", "is_dicom", "dicom_result_paths",
]  # fmt: skip
