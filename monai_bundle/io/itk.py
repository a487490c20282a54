"""NRRD (.nrrd, .nhdr) and MetaImage (.mha, .mhd), read through SimpleITK after checks for what ITK lets through.

NRRD is written with pynrrd (its header fields kept), MetaImage with SimpleITK; both store an LPS grid.
"""

from __future__ import annotations

import math
import re
import zlib
from pathlib import Path

import nrrd
import numpy as np
import SimpleITK as sitk

from monai_bundle.io.errors import ImageReadError
from monai_bundle.io.geometry import Header, lps_to_ras, ras_to_lps

GZIP_LEVEL = 6
"""Compression level of compressed NRRD files (zlib)."""


_SITK_DTYPES = {
    sitk.sitkUInt8: np.uint8,
    sitk.sitkInt8: np.int8,
    sitk.sitkUInt16: np.uint16,
    sitk.sitkInt16: np.int16,
    sitk.sitkUInt32: np.uint32,
    sitk.sitkInt32: np.int32,
    sitk.sitkUInt64: np.uint64,
    sitk.sitkInt64: np.int64,
    sitk.sitkFloat32: np.float32,
    sitk.sitkFloat64: np.float64,
}


def read_nrrd_header(path: Path) -> Header:
    """A NRRD file's header (after its magic is checked: ITK guesses a format for anything else)."""
    with open(path, "rb") as file:
        if file.read(4) != b"NRRD":
            raise ImageReadError(path, "not a NRRD file (bad magic)")
    return _read_header(path, "NrrdImageIO", None)


def read_metaimage_header(path: Path) -> Header:
    """A MetaImage file's header; its own 'Key = Value' lines are kept to check the voxel data before ITK reads it."""
    return _read_header(path, "MetaImageIO", _metaimage_fields(path))


def _read_header(path: Path, itk_io: str, metaimage: tuple[dict[str, str], int] | None) -> Header:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO(itk_io)
    reader.ReadImageInformation()
    if reader.GetNumberOfComponents() != 1:
        components = reader.GetNumberOfComponents()
        raise ImageReadError(path, f"has {components} components per voxel; vector/RGB images are not supported")
    stored = _SITK_DTYPES.get(reader.GetPixelID())
    if stored is None:
        raise ImageReadError(path, f"unsupported voxel type {sitk.GetPixelIDValueAsString(reader.GetPixelID())}")
    spacing = np.array(reader.GetSpacing())
    if not np.all(spacing > 0):
        raise ImageReadError(path, f"non-positive voxel spacing {tuple(float(s) for s in spacing)}")
    dim, n = reader.GetDimension(), min(reader.GetDimension(), 3)
    direction = np.array(reader.GetDirection()).reshape(dim, dim)
    lps = np.eye(4)
    lps[:n, :n] = direction[:n, :n] * spacing[:n]
    lps[:n, 3] = reader.GetOrigin()[:n]
    dtype = np.dtype(stored if np.dtype(stored).kind in "iu" else np.float32)
    return Header(tuple(reader.GetSize()), lps_to_ras(lps), dtype, (reader, np.dtype(stored), metaimage))


def read_data(path: Path, header: Header) -> np.ndarray:
    """The voxel data [i, j(, k)]: integers as stored, floating-point data as float32."""
    reader, stored, metaimage = header.state
    if metaimage:
        _check_metaimage_data(path, *metaimage, math.prod(header.shape) * stored.itemsize)
    array = sitk.GetArrayFromImage(reader.Execute()).T  # ITK arrays are [z, y, x]
    return array.astype(header.dtype, copy=False)


def _metaimage_fields(path: Path) -> tuple[dict[str, str], int]:
    """A MetaImage's 'Key = Value' header lines and the byte offset where they end."""
    fields, offset = {}, 0
    with open(path, "rb") as file:
        for line in iter(lambda: file.readline(4096), b""):
            key, sep, value = line.decode("latin-1").partition("=")
            if not sep or not re.fullmatch(r"[\x21-\x7e]+", key.strip()):
                break
            fields[key.strip()], offset = value.strip(), offset + len(line)
            if key.strip() == "ElementDataFile":
                return fields, offset
    raise ImageReadError(path, "not a MetaImage file (bad header)")


def _check_metaimage_data(path: Path, fields: dict[str, str], offset: int, nbytes: int) -> None:
    """Check a MetaImage's voxel data is complete: ITK accepts corrupt compressed data and misreports short data."""
    name = fields["ElementDataFile"]
    if name.upper() == "LOCAL":
        data_path = path
    elif "HeaderSize" in fields or "%" in name or " " in name or name.upper().startswith("LIST"):
        return  # layouts left to ITK
    else:
        data_path, offset = path.parent / name, 0
        if not data_path.is_file():
            raise ImageReadError(path, f"data file {name} not found")
    if fields.get("CompressedData", "").lower() == "true":
        if _inflated_size(data_path, offset) != nbytes:
            raise ImageReadError(path, "truncated or corrupt compressed voxel data")
    elif data_path.stat().st_size - offset < nbytes:
        raise ImageReadError(path, f"truncated: less voxel data than the header declares ({nbytes} bytes)")


def _inflated_size(path: Path, offset: int) -> int:
    """Size of the zlib stream at `offset` once decompressed (-1 if it ends early); checks its checksum."""
    inflater, total = zlib.decompressobj(), 0
    with open(path, "rb") as file:
        file.seek(offset)
        while not inflater.eof and (chunk := file.read(1 << 16)):
            total += len(inflater.decompress(chunk))
    return total if inflater.eof else -1


def write_nrrd(array: np.ndarray, affine: np.ndarray, tmp: Path, reference: Path | None, compress: bool) -> None:
    """Write NRRD (.nhdr: detached header) with the reference's header fields, or a header built from `affine`."""
    header = _nrrd_reference_header(reference) if reference else _nrrd_header(affine, array.ndim)
    header["encoding"] = "gzip" if compress else "raw"
    detached = tmp.name.lower().endswith(".nhdr")
    nrrd.write(str(tmp), array, header, index_order="F", compression_level=GZIP_LEVEL, detached_header=detached)


def _nrrd_header(affine: np.ndarray, ndim: int) -> dict:
    directions, origin = _lps_grid(affine, ndim)
    space = {"space": "left-posterior-superior"} if ndim == 3 else {"space dimension": 2}
    return {**space, "space directions": directions.T, "space origin": origin, "kinds": ["domain"] * ndim}


def _nrrd_reference_header(reference: Path) -> dict:
    """The reference's NRRD header without the fields that describe its data encoding."""
    header = nrrd.read_header(str(reference))
    encoding = {"type", "dimension", "sizes", "encoding", "endian", "data file", "datafile",
                "line skip", "lineskip", "byte skip", "byteskip"}  # fmt: skip
    return {key: value for key, value in header.items() if key not in encoding}


def write_metaimage(array: np.ndarray, affine: np.ndarray, tmp: Path, reference: Path | None, compress: bool) -> None:
    """Write MetaImage (.mhd: with a .raw beside it) on the reference's grid and fields, or on `affine`'s."""
    image = sitk.GetImageFromArray(array.T)  # ITK arrays are [z, y, x]
    if reference:
        _copy_itk_grid(reference, image)
    else:
        directions, origin = _lps_grid(affine, array.ndim)
        spacing = np.linalg.norm(directions, axis=0)
        image.SetOrigin(tuple(origin))
        image.SetSpacing(tuple(spacing))
        image.SetDirection(tuple((directions / spacing).ravel()))
    sitk.WriteImage(image, str(tmp), useCompression=compress)


def _copy_itk_grid(reference: Path, image: sitk.Image) -> None:
    """Give `image` the reference's origin, spacing, direction and metadata fields."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(reference))
    reader.ReadImageInformation()
    image.SetOrigin(reader.GetOrigin())
    image.SetSpacing(reader.GetSpacing())
    image.SetDirection(reader.GetDirection())
    for key in reader.GetMetaDataKeys():
        if not key.startswith("ITK_"):
            image.SetMetaData(key, reader.GetMetaData(key))


def _lps_grid(affine: np.ndarray, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """(LPS axis vectors as columns, LPS origin) of an ndim grid; a 2D one must lie in the z=0 plane."""
    lps = ras_to_lps(affine)
    if ndim == 2 and np.abs(lps[2, [0, 1, 3]]).max() > 1e-9:
        raise ValueError(
            "a 2D NRRD/MetaImage lies in the z=0 plane and this grid does not; "
            "write NIfTI, or the array as one slice (array[..., None])"
        )
    return lps[:ndim, :ndim], lps[:ndim, 3]
