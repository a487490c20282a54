"""Reading and writing images with exact geometry (NIfTI, NRRD, MetaImage, DICOM, radiographs), atomic files, figures, and the transforms that write results on an input's grid."""

from .figures import LABEL_COLOURS, label_colour, to_ras, display_window, save_overlay_png, save_roc_png, save_confusion_matrix_png, save_heatmap_png
from .files import sha256_of, write_text_atomic, write_bytes_atomic
from .image_io import DEFAULT_MAX_BYTES, GZIP_LEVEL, NIFTI_GZIP_LEVEL, SLICE_SPACING_RTOL, REFERENCE_TOLERANCE_MM, PICTURE_SUFFIXES, LUMA_BT601, ImageReadError, Volume, lps_to_ras, ras_to_lps, image_suffix, find_images, find_radiographs, read_header, read_image, read_radiograph, write_image, write_displacement_field, MedImgReader, RadiographReader
from .transforms import GRID_TOLERANCE_MM, INPUT_KINDS, source_path, case_name, output_path, SaveOnInputGridd, source_grid, check_same_grid


__all__ = ['LABEL_COLOURS', 'label_colour', 'to_ras', 'display_window', 'save_overlay_png', 'save_roc_png', 'save_confusion_matrix_png', 'save_heatmap_png', 'sha256_of', 'write_text_atomic', 'write_bytes_atomic', 'DEFAULT_MAX_BYTES', 'GZIP_LEVEL', 'NIFTI_GZIP_LEVEL', 'SLICE_SPACING_RTOL', 'REFERENCE_TOLERANCE_MM', 'PICTURE_SUFFIXES', 'LUMA_BT601', 'ImageReadError', 'Volume', 'lps_to_ras', 'ras_to_lps', 'image_suffix', 'find_images', 'find_radiographs', 'read_header', 'read_image', 'read_radiograph', 'write_image', 'write_displacement_field', 'MedImgReader', 'RadiographReader', 'GRID_TOLERANCE_MM', 'INPUT_KINDS', 'source_path', 'case_name', 'output_path', 'SaveOnInputGridd', 'source_grid', 'check_same_grid']
