"""Data lists for the bundle's configs: MSD-style datasets, image/label folders, folders of images."""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path

from monai_bundle.image_io import ImageReadError, find_images, read_header
from monai_bundle.transforms import case_name

logger = logging.getLogger(__name__)

IMAGE_FOLDERS = ("imagesTr", "images")
LABEL_FOLDERS = ("labelsTr", "labels")


class DatasetError(ValueError):
    """The dataset folder is missing or laid out in a way this bundle cannot read."""


def segmentation_datalist(
    dataset_dir: str | os.PathLike, split: str = "training", val_fraction: float = 0.2, seed: int = 0
) -> list[dict[str, str]]:
    """Image/label pairs of a dataset folder.

    The folder holds either an MSD-style `dataset.json` (its "training" list; a "validation" list when
    present, else a seeded `val_fraction` of "training"; "test" entries with labels for `split="test"`),
    or `imagesTr/` + `labelsTr/` (or `images/` + `labels/`) whose files pair up by name.
    `split` is "training", "validation", "test" or "all".
    """
    root = _existing_dir(dataset_dir)
    if (root / "dataset.json").is_file():
        pairs, validation, test = _msd_lists(root)
    else:
        pairs, validation, test = _folder_pairs(root), None, []
    if split == "test":
        return test
    if split == "all":
        return pairs + (validation or [])
    if validation is None:
        pairs, validation = _split(pairs, val_fraction, seed)
    if split == "training":
        return pairs
    if split == "validation":
        return validation
    raise DatasetError(f"{root}: unknown split {split!r}; use training, validation, test or all")


class ImageList(list):
    """A data list of images that also remembers the inputs left out, with why."""

    def __init__(self, items=(), skipped: list[str] | None = None):
        super().__init__(items)
        self.skipped = list(skipped or [])


def image_datalist(dataset_dir: str | os.PathLike, ndim: int | None = None) -> ImageList:
    """Every image below a folder (NIfTI, NRRD, MetaImage files and DICOM series), or one image file.

    Each header is checked first: an unreadable input is logged in one line and left out, so the
    rest still run; `fail_if_skipped` then ends the run with a non-zero exit. With `ndim`, images
    of another dimensionality are left out the same way.
    """
    path = Path(dataset_dir)
    images = [str(path)] if path.is_file() else find_images(_existing_dir(path))
    if not images:
        raise DatasetError(f"{path}: no NIfTI, NRRD, MetaImage or DICOM images found")
    readable, skipped = [], []
    for image in images:
        try:
            shape = read_header(image)[0]
            if ndim is not None and len(shape) != ndim:
                raise ImageReadError(image, f"is {len(shape)}D (shape {tuple(shape)}); a {ndim}D image is needed")
            readable.append({"image": image})
        except ImageReadError as error:
            logger.error("skipping %s", error)
            skipped.append(str(error))
    return ImageList(readable, skipped)


def fail_if_skipped(datalist: ImageList) -> None:
    """End the run with exit code 1 and one line per input that could not be read."""
    if getattr(datalist, "skipped", None):
        raise SystemExit(f"{len(datalist.skipped)} input(s) could not be read:\n" + "\n".join(datalist.skipped))


def _existing_dir(dataset_dir: str | os.PathLike | None) -> Path:
    if dataset_dir in (None, ""):
        raise DatasetError("dataset_dir is not set: pass --dataset_dir DIR")
    root = Path(dataset_dir).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    return root


def _msd_lists(root: Path) -> tuple[list[dict], list[dict] | None, list[dict]]:
    """training, validation (None when absent) and labelled test entries of a dataset.json."""
    try:
        spec = json.loads((root / "dataset.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(f"{root / 'dataset.json'}: cannot read ({error})") from None

    def resolve(entries) -> list[dict[str, str]]:
        items = []
        for entry in entries or []:
            if isinstance(entry, dict) and "image" in entry and "label" in entry:
                items.append({key: str((root / entry[key]).resolve()) for key in ("image", "label")})
        return items

    validation = resolve(spec["validation"]) if "validation" in spec else None
    return resolve(spec.get("training")), validation, resolve(spec.get("test"))


def _folder_pairs(root: Path) -> list[dict[str, str]]:
    """Pairs of images/labels sharing a name (a label may add '_seg' or '_label' before its suffix)."""
    image_dir = next((root / name for name in IMAGE_FOLDERS if (root / name).is_dir()), None)
    label_dir = next((root / name for name in LABEL_FOLDERS if (root / name).is_dir()), None)
    if image_dir is None or label_dir is None:
        raise DatasetError(f"{root}: expected dataset.json, or imagesTr/ and labelsTr/ (or images/ and labels/)")
    labels = {_case_name(path): path for path in map(Path, find_images(label_dir))}
    pairs, unmatched = [], []
    for image in map(Path, find_images(image_dir)):
        label = labels.get(_case_name(image))
        if label is None:
            unmatched.append(image.name)
        else:
            pairs.append({"image": str(image), "label": str(label)})
    if unmatched:
        raise DatasetError(f"{image_dir}: no label in {label_dir} for {', '.join(unmatched[:5])}")
    return pairs


def _case_name(path: Path) -> str:
    """A file's name without its image suffix, nnU-Net channel tag or label tag."""
    name = case_name(str(path))
    for tag in ("_0000", "_seg", "_label", "_labels"):
        if name.endswith(tag):
            return name[: -len(tag)]
    return name


def _split(pairs: list[dict], val_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded split; at least one case on each side when there are two or more."""
    if len(pairs) < 2:
        return pairs, list(pairs)
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_val = min(len(pairs) - 1, max(1, round(len(pairs) * val_fraction)))
    val_ids = set(order[:n_val])
    return [p for i, p in enumerate(pairs) if i not in val_ids], [p for i, p in enumerate(pairs) if i in val_ids]
