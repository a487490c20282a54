"""Files as 3D Slicer writes them, for tests that check what the child process reads (Slicer cannot run here).

A colour picture (PNG/JPEG) loaded in Slicer is a vtkMRMLVectorVolumeNode with one slice whose voxel vector type is
ColorRGB / ColorRGBA (Libs/vtkITK/vtkITKArchetypeImageSeriesReader.cxx, v5.10.0: ITK's RGB / RGBA pixel types). The
module writes it with a vtkMRMLVolumeArchetypeStorageNode (its CanWriteFromReferenceNode accepts any
vtkMRMLScalarVolumeNode, and a vector volume is one: vtkMRMLVectorVolumeNode < vtkMRMLTensorVolumeNode <
vtkMRMLScalarVolumeNode), compression off. vtkITKImageWriter (Libs/vtkITK/vtkITKImageWriter.cxx) writes it as a 3D
itk::Image of itk::RGBPixel / RGBAPixel with LPS directions, spacing and origin, which ITK's NRRD writer stores with
the components as the first axis, of kind RGB-color / RGBA-color, and no space direction for that axis.
"""

from __future__ import annotations

from pathlib import Path

import nrrd
import numpy as np

COLOUR_KINDS = {3: "RGB-color", 4: "RGBA-color"}


def write_colour_as_slicer_does(rgb: np.ndarray, ras_affine: np.ndarray, path: Path, kind: str | None = None) -> None:
    """An uncompressed NRRD of a colour volume [x, y, z, components] (or a 2D one [x, y, components]) on `ras_affine`.

    `kind` overrides the components' NRRD kind (a displacement field is 'vector').
    """
    spatial = rgb.ndim - 1
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras_affine
    header = {
        "space": "left-posterior-superior" if spatial == 3 else None,
        "space dimension": 2 if spatial == 2 else None,
        "space directions": [[np.nan] * spatial] + [lps[:spatial, axis] for axis in range(spatial)],
        "space origin": lps[:spatial, 3],
        "kinds": [kind or COLOUR_KINDS[rgb.shape[-1]]] + ["domain"] * spatial,
        "encoding": "raw",
    }
    data = np.moveaxis(rgb, -1, 0)  # components first, x fastest after them
    nrrd.write(str(path), data, {k: v for k, v in header.items() if v is not None}, index_order="F")
