"""Which bundle tasks exist, which one suits a volume, and whether another bundle can be run."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from MedImgAnalysisLib.process import parse_line

DEFAULT_SEGMENTATION_TASK = "ct_segmentation"


@dataclass
class Task:
    """One runnable task: a built-in task of the MedImg bundle, or another bundle's inference."""

    name: str
    kind: str  # "segmentation", "classification" or "image" (a new volume, e.g. denoising)
    description: str = ""
    modality: str = ""
    labels: dict[int, str] = field(default_factory=dict)
    bundle: Path | None = None  # None: the built-in bundle
    input_ndim: int | None = None  # the declared dimensions of its input image, when known
    codes: dict[int, dict[str, list[str]]] = field(default_factory=dict)  # label -> standard codes (terminology.py)

    @property
    def reads_colour(self) -> bool:
        """Whether a colour (RGB/RGBA) image can be its input: the MedImg bundle reads its 2D inputs as radiographs
        (monai_bundle.io.read_radiograph), colour pictures and colour NRRD files as their BT.601 grey; a 3D input,
        or another bundle's, is read as a grey volume, which a colour file is not."""
        return self.bundle is None and self.input_ndim == 2

    @property
    def title(self) -> str:
        """What the task list shows ('CT segmentation'); the id stays the item's data."""
        if self.bundle is not None:
            return f"{self.name} (bundle at {self.bundle})"
        words = " ".join(TITLE_WORDS.get(word, word) for word in self.name.split("_"))
        return words[:1].upper() + words[1:]


TITLE_WORDS = {"ct": "CT", "mri": "MRI", "xray": "X-ray", "pet": "PET"}


SHOWN_KINDS = ("segmentation", "classification")
"""Declared kinds whose results the module shows as such; any other one-input task's outputs are shown as volumes."""


def _kind(block: dict) -> str:
    """The module's Task.kind for a task's declared metadata "kind"."""
    return block["kind"] if block["kind"] in SHOWN_KINDS else "image"


def builtin_tasks(metadata_path: Path) -> dict[str, Task]:
    """The tasks of the MedImg bundle's metadata.json ('medimg' block) that the module can run on one volume.

    A task is offered when it declares its kind, exactly one input ("inputs") and an inference workflow:
    registration (two inputs) and synthesis (none) are left out.
    """
    meta = json.loads(Path(metadata_path).read_text())
    tasks = {}
    for name, block in meta.get("medimg", {}).get("tasks", {}).items():
        if "kind" in block and len(block.get("inputs", {})) == 1 and "inference" in block.get("configs", {}):
            labels = {int(k): v for k, v in block.get("labels", {}).items()}
            ndim = next(iter(block["inputs"].values())).get("ndim")
            codes = {int(k): v for k, v in block.get("codes", {}).items()}
            tasks[name] = Task(
                name,
                _kind(block),
                block.get("description", ""),
                block.get("modality", ""),
                labels,
                input_ndim=ndim,
                codes=codes,
            )
    return tasks


def suggest_task(
    shape: tuple[int, ...],
    scalar_range: tuple[float, float],
    tasks: dict[str, Task],
    modality: str = "",
    colour: bool = False,
) -> str | None:
    """The task a volume most likely wants: a 2D image -> X-ray classification; CT-like values -> CT.

    `shape` is the voxel grid (a radiograph loaded in Slicer is a volume with one slice),
    `scalar_range` its min/max, `modality` a DICOM Modality when known (CT, MR, CR, DX);
    `colour`: a colour (RGB/RGBA) volume, which only a task that `reads_colour` can take.
    """
    if colour:
        return next((name for name, task in tasks.items() if task.reads_colour), None)
    dims = [size for size in shape if size > 1]
    modality = modality.upper()
    by_modality: dict[str, str] = {}
    for name, task in tasks.items():  # the first declared task of a modality (a segmentation before e.g. its SR)
        if task.modality:
            by_modality.setdefault(task.modality.upper(), name)
    if len(dims) <= 2 or modality in ("CR", "DX", "RG"):
        return next((name for name, task in tasks.items() if task.kind == "classification"), None)
    if modality == "CT" or (not modality and scalar_range[0] <= -500):  # air at -1000 HU
        return DEFAULT_SEGMENTATION_TASK if DEFAULT_SEGMENTATION_TASK in tasks else by_modality.get("CT")
    if modality in ("MR", "MRI") or not modality:
        return by_modality.get("MR")
    return None


def codes_by_name(tasks: dict[str, Task]) -> dict[str, dict[str, list[str]]]:
    """Label name -> its standard codes over the segmentation tasks, first task first: for another bundle's labels
    of the same names (as monai_bundle.io.dicom_codes.LABEL_CODES serves the bundle's DICOM writers)."""
    found: dict[str, dict[str, list[str]]] = {}
    for task in tasks.values():
        for label, name in task.labels.items():
            if task.kind == "segmentation" and label in task.codes:
                found.setdefault(name, task.codes[label])
    return found


class BundleError(ValueError):
    """A folder that is not a MONAI bundle this module can run; str() is one line."""


def other_bundle_task(
    folder: Path,
    known_codes: dict[str, dict[str, list[str]]] | None = None,
    python: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> Task:
    """Describe another MONAI bundle (e.g. a Model Zoo segmentation bundle) that takes an image, returns a label map.

    Its metadata.json must describe one input of type image, of one channel, and one output of type image with
    format segmentation (the Model Zoo's network_data_format), and it must have configs/inference.json or .yaml.
    With `python` (the analysis child's interpreter, `env` its environment) the bundle engine checks it as a run
    would (`python -m monai_bundle.apps.analysis --bundle DIR --check`: packages, label values its postprocessing
    writes, data files, weights present and fitting) and its labels are the values that check reads.
    `known_codes`: standard codes by label name (`codes_by_name`), given to its labels of those names.
    """
    folder = Path(folder)
    meta_path = folder / "configs" / "metadata.json"
    if not meta_path.is_file():
        raise BundleError(f"{folder}: not a MONAI bundle (no configs/metadata.json)")
    if not any((folder / "configs" / name).is_file() for name in ("inference.json", "inference.yaml")):
        raise BundleError(f"{folder}: the bundle has no configs/inference.json or inference.yaml")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BundleError(f"{meta_path}: unreadable metadata ({error})") from None
    data_format = meta.get("network_data_format", {})
    inputs, outputs = data_format.get("inputs", {}), data_format.get("outputs", {})
    if len(inputs) != 1 or next(iter(inputs.values()), {}).get("type") != "image":
        raise BundleError(f"{folder}: metadata does not describe one image input")
    output = next(iter(outputs.values()), {}) if len(outputs) == 1 else {}
    if output.get("type") != "image" or output.get("format") != "segmentation":
        raise BundleError(f"{folder}: metadata does not describe a label map (segmentation) output")
    image = next(iter(inputs.values()))
    if int(image.get("num_channels", 1)) != 1:
        raise BundleError(
            f"{folder}: the network takes {image['num_channels']} input channels; the module feeds one volume, "
            "so multi-channel bundles are not supported"
        )
    channels = output.get("channel_def", {})
    labels = {int(k): v for k, v in channels.items() if str(k).isdigit() and int(k) > 0}
    if python is not None:
        labels = {int(k): v for k, v in check_bundle(folder, python, env, timeout)["labels"].items()}
    modality = image.get("modality", "")
    codes = {label: (known_codes or {})[name] for label, name in labels.items() if name in (known_codes or {})}
    return Task(
        meta.get("name", folder.name),
        "segmentation",
        meta.get("description", ""),
        modality,
        labels,
        folder,
        codes=codes,
    )


def check_bundle(folder: Path, python: str, env: dict[str, str] | None = None, timeout: float = 300) -> dict:
    """The bundle engine's check of `folder`, run in the analysis child's Python: its "checked" event's data
    (name, labels by value, notes), or BundleError with the engine's one-line reason."""
    command = [python, "-u", "-m", "monai_bundle.apps.analysis", "--bundle", str(folder), "--check"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BundleError(f"{folder}: the bundle check could not run ({error})") from None
    events = [event for event in map(parse_line, result.stdout.splitlines()) if event.stage]
    checked = next((event.data for event in events if event.stage == "checked"), None)
    if checked is None:
        failed = next((event.data.get("error") for event in events if event.stage == "failed"), None)
        tail = " ".join(result.stderr.strip().splitlines()[-1:])
        raise BundleError(failed or f"{folder}: the bundle check failed (exit {result.returncode}): {tail}")
    return checked
