"""MONAI transforms and helpers that write results on the grid of the input they came from, reusing its header."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_bundle.io.dicom_derived import Algorithm
from monai_bundle.io.geometry import GRID_TOLERANCE_MM
from monai_bundle.io.radiograph import PICTURE_SUFFIXES
from monai_bundle.io.registry import image_suffix, read_header, read_radiograph, write_image

logger = logging.getLogger(__name__)


INPUT_KINDS = ("volume", "radiograph")


OUTPUT_FORMATS = ("nifti", "dicom", "both")
"""What a segmentation is written as. 'nifti': a label map in the input's format (a DICOM input's as NIfTI);
'dicom': a DICOM SEG and its SR volume report (DICOM inputs only); 'both': the label map, and for a DICOM input the
SEG and SR too."""


GRIDS = ("input", "refined")
"""The grid a result lies on. 'input': exactly the input's (shape and affine). 'refined': the input's grid
made finer along some axes, as super-resolution writes it: the same origin (first voxel centre) and
direction, spacing / f and (n - 1) x f + 1 voxels along an axis refined f times (f a whole number, 1 for
the others), so every f-th voxel lies on an input voxel and a viewer overlays the two."""


SR_POSTFIX = "sr"
"""A DICOM input's SR report is `<case>_sr.dcm`."""


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


def is_dicom(source: str) -> bool:
    """Whether an input is DICOM (a series folder or a DICOM file)."""
    return image_suffix(source) == "dicom"


def dicom_result_paths(source: str, output_dir: str, postfix: str) -> dict[str, Path]:
    """{'seg': <case>_<postfix>.dcm, 'sr': <case>_sr.dcm} in `output_dir`: a DICOM input's derived objects."""
    case = case_name(source)
    return {"seg": Path(output_dir) / f"{case}_{postfix}.dcm", "sr": Path(output_dir) / f"{case}_{SR_POSTFIX}.dcm"}


def output_paths(
    source: str, output_dir: str, postfix: str, ext: str | None, output_format: str = "nifti"
) -> list[Path]:
    """The files a result of `source` is written as, the label map first (see OUTPUT_FORMATS).

    Raises:
        ValueError: an unknown format, or 'dicom' for an input that is not DICOM (one line naming it).
    """
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}")
    label_map = [output_path(source, output_dir, postfix, ext)] if output_format != "dicom" else []
    if output_format == "nifti" or (output_format == "both" and not is_dicom(source)):
        return label_map
    if not is_dicom(source):
        raise ValueError(
            f"{source}: output format 'dicom' (SEG and SR) needs a DICOM input; use 'nifti' or 'both' for this one"
        )
    return [*label_map, *dicom_result_paths(source, output_dir, postfix).values()]


class SaveOnInputGridd(MapTransform):
    """Write each key's array on the grid of the image it came from, reusing that file's header.

    Run it after `Invertd`: the array must then have the source's shape and affine, which is checked
    (a mismatch is an error, never a silently shifted result). NIfTI and NRRD sources get their own
    header back byte-for-byte apart from the data type; DICOM sources are written as NIfTI.
    Writing is atomic: a temp file renamed into place. With `output_dir_key`, an item that carries
    that key is written to the folder it names instead of `output_dir` (batch runs mirror input folders).
    `input_kind="radiograph"` checks the grid the way radiographs are read (`read_radiograph`).
    `grid="refined"` accepts a result on a finer grid of the input's (see `GRIDS`; written with a header of
    its own, since the input's declares the old grid).
    `output_format` "dicom" or "both" writes a label map of a DICOM input as a DICOM SEG (one segment per label,
    with its codes and the algorithm) and an SR (TID 1500) of each segment's volume, referencing SEG and source;
    a failure leaves none of the files of that result.

    Args:
        keys: keys of the channel-first predictions to write; each item gets `<key>_path`, the first file written,
            and `<key>_paths`, all of them (label map, SEG, SR); `<key>_sr_path` where an SR was written.
        output_dir: folder of the written files.
        output_postfix: the written file is `<case>_<output_postfix><ext>`.
        output_ext: suffix of the written files; None: the source's (.mhd, .nhdr: .mha, .nrrd; DICOM: .nii.gz).
        output_dtype: voxel type written (the array is cast to it).
        output_dir_key: key of an item's own output folder, used instead of `output_dir` when present.
        input_kind: one of `INPUT_KINDS`: how the source is read to check the grid ('volume' or 'radiograph').
        output_format: one of `OUTPUT_FORMATS`.
        class_names: label names by value, background first (needed for DICOM: the SEG's segments).
        label_codes: label name -> its codes ({'category', 'type', 'modifier'}: [value, scheme, meaning]), e.g.
            `dicom_codes.task_codes(metadata, task)`; labels without get dicom_codes.LABEL_CODES's.
        algorithm: what made the labels, for DICOM: `dicom_derived.Algorithm` or a mapping of its fields (or
            'weights', the weight file, instead of weights_sha256).
        grid: one of `GRIDS`: the grid the result must lie on.
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
        output_format: str = "nifti",
        class_names: Sequence[str] | None = None,
        label_codes: Mapping[str, Mapping[str, Any]] | None = None,
        algorithm: Algorithm | Mapping[str, Any] | None = None,
        grid: str = "input",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if grid not in GRIDS:
            raise ValueError(f"grid must be one of {', '.join(GRIDS)}, not {grid!r}")
        if grid != "input" and output_format != "nifti":
            raise ValueError(f"a result on a {grid} grid is written as an image (output_format 'nifti')")
        self.grid = grid
        if input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {', '.join(INPUT_KINDS)}, not {input_kind!r}")
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}")
        if output_format != "nifti" and (class_names is None or algorithm is None):
            raise ValueError(f"output_format {output_format!r} needs class_names and algorithm (for the DICOM SEG)")
        self.output_format = output_format
        self.class_names = list(class_names or [])
        self.label_codes = dict(label_codes or {})
        self._algorithm = algorithm
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
            paths = self.save(d[key], output_dir)
            d[f"{key}_path"], d[f"{key}_paths"] = str(paths[0]), [str(path) for path in paths]
            if len(paths) > 1:  # SEG and SR written: the SR is last
                d[f"{key}_sr_path"] = str(paths[-1])
        return d

    def save(self, item, output_dir: str | None = None) -> list[Path]:
        """Write one channel-first prediction on its source's grid (in `output_dir`, default self.output_dir).

        Returns the files written (see `output_paths`): the label map first, then a DICOM input's SEG and SR.
        """
        source = source_path(item)
        array = np.asarray(item.detach().cpu() if hasattr(item, "detach") else item)
        if array.ndim in (3, 4) and array.shape[0] == 1:
            array = array[0]
        affine = np.asarray(item.meta["affine"], dtype=np.float64)
        targets = output_paths(
            source, output_dir or self.output_dir, self.output_postfix, self.output_ext, self.output_format
        )
        check_result_grid(source, array.shape, affine, self.grid, self.input_kind)
        array = array.astype(self.output_dtype)
        written: list[Path] = []
        try:
            if self.output_format != "dicom":
                reference = _header_source(source) if self.grid == "input" else None
                write_image(array, affine, targets[0], reference=reference)
                written.append(targets[0])
            if len(targets) > 1:
                from monai_bundle.io.dicom_seg import write_dicom_seg  # highdicom: only when DICOM is written
                from monai_bundle.io.dicom_sr import write_dicom_sr

                seg_path, sr_path = targets[-2:]
                algorithm = self.algorithm()
                seg = write_dicom_seg(array, affine, source, self._dicom_labels(), algorithm, seg_path)
                written.append(seg_path)
                write_dicom_sr(seg, source, algorithm, sr_path)
                written.append(sr_path)
        except BaseException:
            for path in written:  # no result is left half made of its files
                path.unlink(missing_ok=True)
            raise
        for target in written:
            logger.info("wrote %s", target)
        return written

    def algorithm(self) -> Algorithm:
        """The algorithm DICOM results name (a weight file's sha256 is computed on first use)."""
        if not isinstance(self._algorithm, Algorithm):
            self._algorithm = Algorithm.of(self._algorithm or {})
        return self._algorithm

    def _dicom_labels(self) -> dict[int, dict[str, Any]]:
        """Label value -> {'name', codes} of every foreground label, for the SEG's segments."""
        return {
            value: {**self.label_codes.get(name, {}), "name": name}
            for value, name in enumerate(self.class_names)
            if value > 0
        }


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


def check_result_grid(
    source: str, shape: tuple[int, ...], affine: np.ndarray, grid: str = "input", input_kind: str = "volume"
) -> None:
    """Raise (ValueError, one line naming `source`) unless `shape`/`affine` lie on the `grid` (`GRIDS`) of the input."""
    if grid == "input":
        check_same_grid(source, shape, affine, input_kind)
        return
    source_shape, source_affine = source_grid(source, input_kind)
    affine = np.asarray(affine, np.float64)
    if len(shape) != len(source_shape):
        raise ValueError(f"{source}: result has {len(shape)} axes, the input {len(source_shape)}")
    ndim = len(shape)
    factors = np.linalg.norm(source_affine[:3, :ndim], axis=0) / np.linalg.norm(affine[:3, :ndim], axis=0)
    whole = np.round(factors)
    expected = tuple((n - 1) * int(f) + 1 for n, f in zip(source_shape, whole, strict=True))
    refined = source_affine.copy()
    refined[:3, :ndim] /= np.where(whole > 0, whole, 1.0)
    if np.any(whole < 1) or np.abs(factors - whole).max() > 1e-4 or tuple(shape) != expected:
        raise ValueError(
            f"{source}: result grid {tuple(shape)} (spacing x1/{np.round(factors, 4).tolist()}) is not a whole-number "
            f"refinement of the input's {tuple(source_shape)}"
        )
    error = float(np.abs(affine - refined).max())
    if error > GRID_TOLERANCE_MM:
        raise ValueError(f"{source}: result origin/direction differ from the input's by {error:.3g} mm")


def _header_source(source: str) -> str | None:
    """The file whose header a result may reuse (a single-file NIfTI/NRRD/MetaImage; not DICOM or a picture)."""
    return source if Path(source).is_file() and image_suffix(source) not in (None, "dicom") else None
