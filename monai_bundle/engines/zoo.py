"""Outside MONAI bundles (the Model Zoo layout): declared from their metadata, checked, adapted to our engine.

A Model Zoo bundle (`python -m monai.bundle download`) is a folder with configs/metadata.json (its
`network_data_format`), configs/inference.json (or .yaml) and models/. `declare_bundle` reads what
it is and refuses, in one line each, what we cannot run as "one image in, one label map out":
several input channels, overlapping sigmoid outputs, label values remapped in code we cannot read,
missing packages. `adapt` edits the parsed config the way an override on the command line would:
the bundle's SaveImaged becomes our SaveOnInputGridd (integer labels on the input's own grid, named
by the metadata's channel_def, written atomically) after a check of the label values, and, on the fast
path, the inferer is wrapped in AutocastInferer (bf16 where this CPU/GPU runs it fast) and a softmax ->
Invertd (bilinear) -> argmax tail becomes ProbabilitiesToInputLabelsd (the same labels, interpolating
only near label boundaries), images are read by MedImgReader (also NRRD, MetaImage, DICOM) and resampled
in float32. `precision="fp32"` keeps the bundle's fp32 network; `fast=False` its exact pipeline (reader,
network, postprocessing: only the writer is ours).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_bundle.engines.pipeline import DeclaredTask, PipelineError, find_transform
from monai_bundle.engines.weights import WeightsError, check_weights_file

logger = logging.getLogger(__name__)


INFERENCE_CONFIGS = ("inference.json", "inference.yaml", "inference.yml")


ENGINE_OPTIONS = {"fast": True, "precision": "auto", "output_format": "nifti"}
"""Overrides an outside bundle's config does not have that the engine takes itself, with their defaults."""


REMAPPING_STEPS = ("Lambdad", "Lambda")
"""Postprocessing steps that may write any label values, in code: the values cannot be read from the config."""


def _target(spec: Any) -> str:
    return str(spec.get("_target_", "")).split(".")[-1] if isinstance(spec, dict) else ""


def _raw_steps(config: Mapping[str, Any]) -> list[dict]:
    """The postprocessing Compose's steps as written (an expression instead of a list: none)."""
    post = config.get("postprocessing")
    steps = post.get("transforms") if isinstance(post, dict) else None
    return [step for step in steps if isinstance(step, dict)] if isinstance(steps, list) else []


def inference_config(folder: Path) -> Path:
    """The bundle's inference config file, or PipelineError."""
    config = next(
        (folder / "configs" / name for name in INFERENCE_CONFIGS if (folder / "configs" / name).is_file()), None
    )
    if config is None:
        raise PipelineError(f"{folder}: not a MONAI bundle with an inference config (configs/inference.json or .yaml)")
    return config


def missing_packages(meta: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, str]:
    """Package -> version the bundle asks for, of those not installed: metadata's required_packages_version and
    optional_packages_version (MONAI reads the latter as the former) and the modules its config imports."""
    missing = {}
    wanted = {**(meta.get("optional_packages_version") or {}), **(meta.get("required_packages_version") or {})}
    for name, version in wanted.items():
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing[name] = str(version)
    for line in config.get("imports") or []:
        words = str(line).lstrip("$").split()
        if len(words) >= 2 and words[0] in ("import", "from"):
            module = words[1].split(".")[0]
            if importlib.util.find_spec(module) is None:
                missing.setdefault(module, "")
    return missing


def pip_command(packages: Mapping[str, str]) -> str:
    """The pip command that installs `packages` (name -> the version the bundle was made with, as a minimum)."""
    return "pip install " + " ".join(f"'{name}>={version}'" if version else name for name, version in packages.items())


def label_names(folder: Path, meta: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[str, ...]:
    """Label names by the value the bundle's postprocessing writes (background first), or PipelineError.

    softmax/argmax: one value per output channel; one sigmoid channel thresholded: 0 and 1; MapLabelValued:
    its target values. Several sigmoid channels (overlapping regions) and values written in code are refused.
    """
    outputs = meta["network_data_format"]["outputs"]
    channels = next(iter(outputs.values())).get("channel_def", {})
    names = [str(channels[key]) for key in sorted(channels, key=int)] if channels else []
    steps = _raw_steps(config)
    code = next((step for step in steps if _target(step) in REMAPPING_STEPS), None)
    if code is not None:
        func = " ".join(str(code.get("func", "")).split())[:80]
        raise PipelineError(
            f"{folder}: its postprocessing writes label values in code ({_target(code)}: {func}); they cannot be read "
            "from the config, so its segments could not be named: not supported"
        )
    sigmoid = any(_target(step) == "Activationsd" and step.get("sigmoid") is True for step in steps)
    if sigmoid:
        if len(names) != 1:
            raise PipelineError(
                f"{folder}: its output is {len(names)} overlapping sigmoid channels ({', '.join(names)}), "
                "not one label map: not supported"
            )
        names = ["background", names[0]]
    remap = next((step for step in steps if _target(step) == "MapLabelValued"), None)
    if remap is not None:
        origin, target = remap.get("orig_labels"), remap.get("target_labels")
        if not (isinstance(origin, list) and isinstance(target, list) and len(origin) == len(target)):
            raise PipelineError(f"{folder}: its MapLabelValued's orig_labels/target_labels are not literal lists")
        by_value = {int(t): names[int(o)] if 0 <= int(o) < len(names) else f"label_{t}" for o, t in zip(origin, target)}
        names = [by_value.get(value, "") for value in range(max(by_value) + 1)]
    return tuple(names)


def declare_bundle(folder: Path) -> DeclaredTask:
    """An outside bundle folder as a DeclaredTask, after the checks that need no network: PipelineError if not."""
    from monai.bundle import ConfigParser

    folder = Path(folder).resolve()
    meta_file = folder / "configs" / "metadata.json"
    if not meta_file.is_file():
        raise PipelineError(f"{folder}: not a MONAI bundle (no configs/metadata.json)")
    config_file = inference_config(folder)
    try:
        meta = json.loads(meta_file.read_text())
        parser = ConfigParser()
        parser.read_config(str(config_file))
        config = parser.get()
    except (OSError, ValueError) as error:
        raise PipelineError(f"{folder}: unreadable bundle files ({' '.join(str(error).split())})") from None
    data_format = meta.get("network_data_format", {}) if isinstance(meta, dict) else {}
    inputs, outputs = data_format.get("inputs", {}), data_format.get("outputs", {})
    if len(inputs) != 1 or next(iter(inputs.values())).get("type") != "image":
        raise PipelineError(f"{folder}: its metadata's network_data_format does not describe one image input")
    output = next(iter(outputs.values()), {}) if len(outputs) == 1 else {}
    if output.get("type") != "image" or output.get("format") != "segmentation":
        raise PipelineError(f"{folder}: its metadata does not describe a label map (segmentation) output")
    image = next(iter(inputs.values()))
    channels = int(image.get("num_channels", 1))
    if channels != 1:
        named = ", ".join(str(name) for name in image.get("channel_def", {}).values())
        raise PipelineError(
            f"{folder}: the network takes {channels} input channels ({named}); one image is fed per run, "
            "so multi-channel bundles are not supported"
        )
    missing = missing_packages(meta, config)
    if missing:
        raise PipelineError(f"{folder}: needs Python packages that are not installed: {pip_command(missing)}")
    names = label_names(folder, meta, config)
    return DeclaredTask(
        name=str(meta.get("name") or folder.name),
        kind="segmentation",
        config_files=(str(config_file),),
        meta_file=str(meta_file),
        class_names=names,
        in_channels=channels,
        image_key=read_image_key(parser),
        modality=str(image.get("modality", "")),
        description=str(meta.get("description", "")),
        bundle=folder,
        overrides={"bundle_root": str(folder)},
        notes=tuple(_version_drift(meta)),
    )


def _version_drift(meta: Mapping[str, Any]) -> list[str]:
    """One line when the bundle was made for another MONAI minor version than the one installed."""
    import monai

    made = str(meta.get("monai_version", ""))
    if made and made.split(".")[:2] != monai.__version__.split(".")[:2]:
        return [f"made for MONAI {made}, running with MONAI {monai.__version__}"]
    return []


def engine_options(overrides: dict[str, Any]) -> dict[str, Any]:
    """ENGINE_OPTIONS taken out of `overrides` (with their defaults); 'fast' read as a yes/no word too."""
    options = {key: overrides.pop(key, default) for key, default in ENGINE_OPTIONS.items()}
    options["fast"] = str(options["fast"]).lower() not in ("false", "0", "no", "off")
    return options


def read_image_key(parser) -> str:
    """The data key the bundle's LoadImaged reads (the zoo's `@image_key`)."""
    loader = find_transform(parser, "preprocessing", "LoadImaged")
    keys = parser.get_parsed_content(f"{loader}#keys") if loader else "image"
    return keys if isinstance(keys, str) else list(keys)[0]


def checkpoint_of(parser) -> tuple[Path | None, str | None]:
    """(weight file, key of the network in it) as the bundle loads them: its CheckpointLoader, else `checkpoint`."""
    for key, spec in parser.get().items():
        if _target(spec) == "CheckpointLoader":
            load_dict = spec.get("load_dict") or {}
            model_key = next((k for k, ref in load_dict.items() if str(ref).strip() == "@network"), None)
            return Path(parser.get_parsed_content(f"{key}#load_path")), model_key
    if "checkpoint" in parser:
        return Path(parser.get_parsed_content("checkpoint")), None
    return None, None


def required_files(parser, skip: Sequence[str] = ("bundle_root", "output_dir", "dataset_dir", "datalist")) -> list[str]:
    """One line per file under the bundle root that the config names and that is not there (e.g. a label table)."""
    missing = []
    for key, raw in parser.get().items():
        if key in skip or not (isinstance(raw, str) and "@bundle_root" in raw):
            continue
        try:
            value = parser.get_parsed_content(key)
        except Exception:  # noqa: BLE001 - an expression we cannot evaluate alone is not a file name
            continue
        if isinstance(value, str) and Path(value).suffix and not Path(value).exists():
            missing.append(f"{value} (config key {key})")
    return missing


class LabelValuesd(MapTransform):
    """Fail unless a label map holds only the values the bundle declares: checks an output came out as named.

    Args:
        keys: keys of the label maps.
        values: the values the labels may take.
        allow_missing_keys: don't raise for keys missing from an item.
    """

    def __init__(self, keys: KeysCollection, values: Sequence[int], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.values = {int(value) for value in values}

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            labels = torch.as_tensor(d[key]).flatten()
            if labels.is_floating_point() and not torch.equal(labels, labels.round()):
                raise ValueError("the bundle wrote a label map with non-integer values")
            labels = labels.long()
            low = int(labels.min()) if labels.numel() else 0
            counts = torch.bincount(labels - low) if labels.numel() else torch.zeros(0)
            found = {int(v) + low for v in torch.nonzero(counts).flatten().tolist()}
            unknown = sorted(found - self.values)
            if unknown:
                raise ValueError(
                    f"the bundle wrote label values {unknown} that its metadata does not name "
                    f"(named: {sorted(self.values)})"
                )
        return d


def _fast_tail(steps: list[dict], image_key: str) -> tuple[int, int] | None:
    """(first, last) index of an Invertd (bilinear, of the image's transforms) + AsDiscreted(argmax) pair right after
    a softmax: the tail ProbabilitiesToInputLabelsd reproduces. None when the steps are anything else."""
    targets = [_target(step) for step in steps]
    for i in range(1, len(steps) - 1):
        softmax = targets[i - 1] == "Activationsd" and steps[i - 1].get("softmax") is True
        invert, argmax = steps[i], steps[i + 1]
        if (
            softmax
            and targets[i] == "Invertd"
            and invert.get("nearest_interp") is False
            and str(invert.get("transform")) == "@preprocessing"
            and targets[i + 1] == "AsDiscreted"
            and argmax.get("argmax") is True
            and set(argmax) <= {"_target_", "keys", "argmax"}
        ):
            return i, i + 1
    return None


def adapt(parser, declared: DeclaredTask, options: Mapping[str, Any]) -> list[str]:
    """Edit an outside bundle's parsed config in place for our engine; returns what was done, one note each.

    Args:
        parser: the bundle's ConfigParser (its overrides applied).
        declared: what `declare_bundle` found.
        options: ENGINE_OPTIONS values ('fast', 'precision', 'output_format').
    """
    folder = declared.bundle
    steps = parser.get("postprocessing#transforms")
    if not isinstance(steps, list):
        raise PipelineError(f"{folder}: its postprocessing is not a Compose of listed transforms")
    savers = [i for i, step in enumerate(steps) if _target(step) == "SaveImaged"]
    if len(savers) != 1 or savers[0] != len(steps) - 1:
        raise PipelineError(f"{folder}: its postprocessing does not end in one SaveImaged (the label map it writes)")
    pred_key, image_key = steps[-1].get("keys", "pred"), declared.image_key
    names = list(declared.class_names)
    writer = [
        {
            "_target_": "monai_bundle.engines.zoo.LabelValuesd",
            "keys": pred_key,
            "values": [value for value, name in enumerate(names) if name or value == 0],
        },
        {
            "_target_": "monai_bundle.io.SaveOnInputGridd",
            "keys": pred_key,
            "output_dir": "@output_dir",
            "output_postfix": "seg",
            "output_dtype": "uint8" if len(names) <= 256 else "uint16",
            "output_format": options["output_format"],
            "class_names": names,
            "algorithm": {"task": declared.name, "version": str(_meta(parser).get("version", ""))},
        },
    ]
    notes = []
    exact = not options["fast"] or str(options["precision"]).lower() == "fp32"
    tail = None if not options["fast"] else _fast_tail(steps[:-1], image_key)
    if tail is not None:
        inverse = {
            "_target_": "monai_bundle.tasks.segmentation.ProbabilitiesToInputLabelsd",
            "keys": pred_key,
            "image_key": image_key,
        }
        steps = [*steps[: tail[0]], inverse, *steps[tail[1] + 1 : -1]]
        notes.append("boundary-only inversion (softmax, Invertd, argmax reproduced)")
    else:
        steps = steps[:-1]
        if options["fast"]:
            notes.append("the bundle's own postprocessing (its steps are not softmax, Invertd, argmax)")
    parser["postprocessing#transforms"] = [*steps, *writer]
    if options["fast"]:
        notes += _fast_reading(parser)
    if not exact:
        parser["inferer"] = {
            "_target_": "monai_bundle.engines.AutocastInferer",
            "inferer": parser.get("inferer"),
            "precision": options["precision"],
            "device": "@device",
        }
        notes.append(f"network under autocast (precision {options['precision']})")
    else:
        notes.append("the bundle's own fp32 network")
    return notes


def _fast_reading(parser) -> list[str]:
    """Our reader (fast NIfTI decoding; NRRD, MetaImage and DICOM too) where the bundle leaves MONAI to pick one,
    and resampling in float32 where its Spacingd leaves MONAI's float64 default; notes of what was changed."""
    notes = []
    loader = find_transform(parser, "preprocessing", "LoadImaged")
    spatial = parser.get_parsed_content("network_def#spatial_dims", default=None) == 3
    if loader and parser.get(f"{loader}#reader") is None:
        parser[f"{loader}#reader"] = {"_target_": "monai_bundle.io.MedImgReader", "ndim": 3 if spatial else None}
        notes.append("MedImg's image reader")
    spacing = find_transform(parser, "preprocessing", "Spacingd")
    if spacing and parser.get(f"{spacing}#dtype") is None:
        parser[f"{spacing}#dtype"] = "float32"
        notes.append("float32 resampling")
    return notes


def _meta(parser) -> dict:
    meta = parser.get("_meta_", {})
    return meta if isinstance(meta, dict) else {}


def load_bundle_weights(network: torch.nn.Module, path: Path | None, model_key: str | None, folder: Path) -> None:
    """Load the bundle's weights as its CheckpointLoader would (a state_dict, or one under `model_key`), checked."""
    if path is None:
        raise WeightsError(f"{folder}: its inference config names no weights (no CheckpointLoader nor checkpoint)")
    check_weights_file(path, None)
    if path.suffix == ".ts":
        raise WeightsError(f"{path}: TorchScript weights are not supported; use the bundle's models/model.pt")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure is one line about this file
        raise WeightsError(f"{path}: cannot be read as a plain state_dict ({str(error).splitlines()[0]})") from None
    if model_key and isinstance(state, dict) and isinstance(state.get(model_key), dict):
        state = state[model_key]
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        detail = " ".join(line.strip() for line in str(error).splitlines()[:2])[:240]
        raise WeightsError(f"{path}: does not fit the network ({detail})") from None
    logger.info("loaded bundle weights %s", path)


def build_network(parser, declared: DeclaredTask) -> torch.nn.Module:
    """The bundle's `network`, with a missing package or a MONAI version drift said in one line."""
    import monai

    try:
        return parser.get_parsed_content("network")
    except Exception as error:  # noqa: BLE001 - whatever the config's code raised, said in one line
        cause = error
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, ImportError):
            module = getattr(cause, "name", None) or " ".join(str(cause).split())
            raise PipelineError(
                f"{declared.bundle}: its network needs a package that is not installed: {module}"
            ) from None
        first = next((line.strip() for line in str(cause).splitlines() if line.strip()), type(cause).__name__)
        drift = f" (made for MONAI {_meta(parser).get('monai_version')})" if declared.notes else ""
        raise PipelineError(
            f"{declared.bundle}: its network_def does not build with MONAI {monai.__version__}{drift}: {first}"
        ) from None
