"""Data lists for the bundle's configs: MSD-style datasets, image/label folders, folders of images."""

from __future__ import annotations

import json
import logging
import os
import random
import re
from pathlib import Path

from monai_bundle.io import ImageReadError, case_name, find_images, read_header

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

    Args:
        dataset_dir: the dataset folder.
        split: "training", "validation", "test" or "all".
        val_fraction: share of the cases held out for validation when no validation list is given.
        seed: seed of that split (the same seed gives the same split).

    Raises:
        DatasetError: the folder is missing, unreadable or laid out otherwise, or `split` is unknown.
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

    Args:
        dataset_dir: a folder searched recursively, or one image file.
        ndim: the dimensionality wanted (None: any).

    Raises:
        DatasetError: the folder is missing or holds no image.
    """
    path = Path(dataset_dir)
    images = [str(path)] if path.is_file() else find_images(_existing_dir(path))
    if not images:
        raise DatasetError(f"{path}: no NIfTI, NRRD, MetaImage or DICOM images found")

    def check(image: str) -> None:
        shape = read_header(image)[0]
        if ndim is not None and len(shape) != ndim:
            raise ImageReadError(image, f"is {len(shape)}D (shape {tuple(shape)}); a {ndim}D image is needed")

    return _readable(images, check)


def radiograph_datalist(dataset_dir: str | os.PathLike) -> ImageList:
    """Every radiograph below a folder (DICOM, PNG, JPEG, 2D NIfTI/NRRD), or one file.

    Unreadable ones are logged and left out as in `image_datalist`.

    Args:
        dataset_dir: a folder searched recursively, or one radiograph file.

    Raises:
        DatasetError: the folder is missing or holds no radiograph.
    """
    from monai_bundle.io import find_radiographs, read_radiograph

    path = Path(dataset_dir)
    images = [str(path)] if path.is_file() else find_radiographs(_existing_dir(path))
    if not images:
        raise DatasetError(f"{path}: no radiographs (DICOM, PNG, JPEG, 2D NIfTI or NRRD) found")
    return _readable(images, read_radiograph)


def _readable(images: list[str], check) -> ImageList:
    """{'image': path} for each image that `check` accepts; the others logged and kept in `.skipped`."""
    readable, skipped = [], []
    for image in images:
        try:
            check(image)
            readable.append({"image": image})
        except ImageReadError as error:
            logger.error("skipping %s", error)
            skipped.append(str(error))
    return ImageList(readable, skipped)


def fail_if_skipped(datalist: ImageList) -> None:
    """End the run with exit code 1 and one line per input that could not be read.

    Args:
        datalist: what `image_datalist` or `radiograph_datalist` returned.

    Raises:
        SystemExit: some inputs were left out.
    """
    if getattr(datalist, "skipped", None):
        raise SystemExit(f"{len(datalist.skipped)} input(s) could not be read:\n" + "\n".join(datalist.skipped))


def require_prepared(dataset_dir: str | os.PathLike, marker: str, what: str, task: str) -> Path:
    """`dataset_dir` when it holds `marker` (written by `task`'s prepare workflow), else one line saying how to make it.

    Args:
        dataset_dir: the folder a train or evaluate workflow reads.
        marker: the file the prepare workflow writes last (e.g. dataset.json).
        what: what the folder should hold, for the message.
        task: the task id whose prepare workflow writes it.

    Raises:
        SystemExit: one line naming the folder and the command that prepares it.
    """
    folder = Path(dataset_dir)
    if not (folder / marker).is_file():
        raise SystemExit(
            f"{folder}: no prepared {what} ({marker}); run the prepare workflow first: "
            f"python -m monai_bundle.apps.runner --task {task} --workflow prepare --dataset_dir {folder}"
        )
    return folder


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


TRAIN_FOLDERS = ("train", "training")


VALIDATION_FOLDERS = ("val", "validation")


TEST_FOLDERS = ("test", "testing")


MIN_VALIDATION_PER_CLASS = 20
"""A `val/` folder with fewer images of some class than this is too small to pick a threshold on."""


def class_folder_datalist(
    dataset_dir: str | os.PathLike,
    split: str,
    class_names: list[str],
    val_fraction: float = 0.2,
    seed: int = 0,
    group_pattern: str = r"person\d+",
    label_fraction: float = 1.0,
    label_subset: str = "labelled",
    label_seed: int = 0,
    synthetic_dir: str | os.PathLike = "",
) -> list[dict]:
    """Images and class labels of a folder laid out like the chest X-ray pneumonia set.

    `DIR/train/<CLASS>/*`, `DIR/test/<CLASS>/*`, optionally `DIR/val/<CLASS>/*` (class folders
    match `class_names` case-insensitively; label = index in `class_names`). The validation split
    is `val/` when it has at least MIN_VALIDATION_PER_CLASS images of each class, else a seeded,
    stratified `val_fraction` of `train/` that keeps images of one patient together (patients are
    found by `group_pattern` in file names, e.g. 'person123'; an empty pattern makes each image
    its own group). `label_fraction` < 1 keeps a seeded stratified fraction of the training split
    ('labelled') or its complement ('rest') to simulate scarce labels. `synthetic_dir`: a folder of
    generated images in `<CLASS>/` folders (e.g. the xray_synthesis inference output) added to
    the training split only, never to validation or test.

    Args:
        dataset_dir: the dataset folder.
        split: "training", "validation" or "test".
        class_names: class names, negative first; folder names match them case-insensitively.
        val_fraction: share of train/ split off for validation when val/ is too small.
        seed: seed of that split.
        group_pattern: regular expression that finds a patient in a file name ('' : none).
        label_fraction: share of the training split kept as labelled (1: all).
        label_subset: "labelled" (that share) or "rest" (the complement).
        label_seed: seed of the labelled share.
        synthetic_dir: folder of generated images added to training ('' : none).

    Raises:
        DatasetError: a folder is missing, a class has no images, or `split` is unknown.
    """
    root = _existing_dir(dataset_dir)
    if split == "test":
        return _class_folder_items(_first_folder(root, TEST_FOLDERS), class_names)
    train = _class_folder_items(_first_folder(root, TRAIN_FOLDERS), class_names)
    val_folder = next((root / name for name in VALIDATION_FOLDERS if (root / name).is_dir()), None)
    validation = _class_folder_items(val_folder, class_names) if val_folder else []
    counts = [sum(item["label"][0] == k for item in validation) for k in range(len(class_names))]
    if min(counts) < MIN_VALIDATION_PER_CLASS:
        if val_folder:
            logger.info(
                "%s has %s images per class; splitting %.0f%% of train/ for validation instead",
                val_folder,
                counts,
                100 * val_fraction,
            )
        train, validation = _grouped_split(train, val_fraction, seed, group_pattern)
    if split == "validation":
        return validation
    if split != "training":
        raise DatasetError(f"{root}: unknown split {split!r}; use training, validation or test")
    if label_fraction < 1.0:
        labelled, rest = _grouped_split(train, 1.0 - label_fraction, label_seed, group_pattern)
        train = {"labelled": labelled, "rest": rest}[label_subset]
    if synthetic_dir:
        synthetic = _class_folder_items(_existing_dir(synthetic_dir), class_names)
        logger.info("training on %d real + %d synthetic images (%s)", len(train), len(synthetic), synthetic_dir)
        train = train + synthetic
    return train


def _first_folder(root: Path, names: tuple[str, ...]) -> Path:
    folder = next((root / name for name in names if (root / name).is_dir()), None)
    if folder is None:
        raise DatasetError(f"{root}: no {names[0]}/ folder (expected {names[0]}/<CLASS>/ image folders)")
    return folder


def _class_folder_items(folder: Path, class_names: list[str]) -> list[dict]:
    """{'image': path, 'label': [class index]} for every radiograph in `folder/<CLASS>/`."""
    from monai_bundle.io import find_radiographs

    by_name = {name.lower(): index for index, name in enumerate(class_names)}
    items, unknown = [], []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if sub.name.lower() not in by_name:
            unknown.append(sub.name)
            continue
        items += [{"image": path, "label": [by_name[sub.name.lower()]]} for path in find_radiographs(sub)]
    if unknown:
        logger.warning(
            "%s: ignoring folders that name no class (%s); classes are %s", folder, ", ".join(unknown), class_names
        )
    missing = [name for name in class_names if not any(item["label"][0] == by_name[name.lower()] for item in items)]
    if missing:
        raise DatasetError(
            f"{folder}: no images for class(es) {', '.join(missing)} (expected {folder}/<CLASS>/ folders)"
        )
    return items


def _grouped_split(items: list[dict], fraction: float, seed: int, group_pattern: str) -> tuple[list[dict], list[dict]]:
    """(rest, chosen): a seeded `fraction` of each class, whole groups at a time."""
    pattern = re.compile(group_pattern) if group_pattern else None
    rest, chosen = [], []
    for label in sorted({item["label"][0] for item in items}):
        groups: dict[str, list[dict]] = {}
        for item in items:
            if item["label"][0] == label:
                match = pattern.search(Path(item["image"]).name) if pattern else None
                groups.setdefault(match.group(0) if match else item["image"], []).append(item)
        names = sorted(groups)
        random.Random(f"{seed}-{label}").shuffle(names)
        total = sum(map(len, groups.values()))
        wanted = min(total - 1, max(1, round(fraction * total))) if fraction > 0 else 0
        taken = 0
        for name in names:
            goes = taken < wanted
            (chosen if goes else rest).extend(groups[name])
            taken += len(groups[name]) if goes else 0
    return rest, chosen
