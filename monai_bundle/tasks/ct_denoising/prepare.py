"""The `prepare` workflow of ct_denoising and its check: training and evaluation read only prepared pairs.

`ct_denoising_prepare.json` writes the simulated low-dose / normal-dose pairs (`write_denoise_dataset`)
into `dataset_dir`; `ct_denoising_train.json` and `ct_denoising_evaluate.json` read them through
`prepared_pairs`, which ends the run with one line when the folder holds none.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from monai_bundle.data.datalists import require_prepared
from monai_bundle.tasks.ct_denoising.data import pair_datalist, write_denoise_dataset

logger = logging.getLogger(__name__)


def prepare_dataset(dataset_dir: str | os.PathLike) -> Path:
    """Write the simulated pairs and their dataset.json into `dataset_dir`; a finished folder is kept as is.

    Args:
        dataset_dir: folder of the pairs; returned.
    """
    folder = write_denoise_dataset(dataset_dir)
    logger.info("low-dose CT pairs ready in %s", folder)
    return folder


def prepared_pairs(dataset_dir: str | os.PathLike, split: str, exclude: Sequence[str] = ()) -> list[dict[str, str]]:
    """[{"image": low-dose, "label": normal-dose}] of a split of a prepared folder, absolute paths.

    Args:
        dataset_dir: folder with a dataset.json of pairs (as the prepare workflow writes it).
        split: "train" or "test".
        exclude: sample CTs to leave out, with their patient's other CTs (a leave-one-out fold).

    Raises:
        SystemExit: one line when `dataset_dir` holds no dataset.json.
    """
    folder = require_prepared(dataset_dir, "dataset.json", "low-dose CT pairs", "ct_denoising")
    return pair_datalist(folder, split, exclude)
