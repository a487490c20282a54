"""The `prepare` workflow of mri_registration and its check: training reads only a prepared slice set.

`mri_registration_prepare.json` writes the 2 mm slices of the ICBM 2009a template (`write_icbm_slices`)
into `dataset_dir`; `mri_registration_train.json` reads them through `prepared_slices`, which ends the
run with one line when the folder holds none.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from monai_bundle.data.datalists import require_prepared
from monai_bundle.tasks.mri_registration.data import load_slices, write_icbm_slices

logger = logging.getLogger(__name__)


def prepare_dataset(dataset_dir: str | os.PathLike) -> Path:
    """Write the slice set (slices.npz) into `dataset_dir`; a folder that has one is kept as is.

    Args:
        dataset_dir: folder of the slice set; returned.
    """
    folder = write_icbm_slices(dataset_dir)
    logger.info("ICBM slice set ready in %s", folder)
    return folder


def prepared_slices(dataset_dir: str | os.PathLike, split: str) -> dict[str, np.ndarray]:
    """The 'train' or 'test' slices of a prepared slice set (see `load_slices`).

    Args:
        dataset_dir: folder with a slices.npz (as the prepare workflow writes it).
        split: "train" or "test".

    Raises:
        SystemExit: one line when `dataset_dir` holds no slices.npz.
    """
    return load_slices(require_prepared(dataset_dir, "slices.npz", "slice set", "mri_registration"), split)
