"""The bundle engine: one declared task, ours or an outside MONAI bundle, parsed once and run image by image.

A task is declared by what it is (kind, input channels, label names, inference config files, metadata),
whether it comes from our metadata's "medimg" block (`DeclaredTask.builtin`) or from an outside bundle
folder in the Model Zoo layout (`monai_bundle.engines.zoo.declare_bundle`). `Pipeline` parses the
task's inference configs once with MONAI's ConfigParser and runs them the way every way in needs:
`medimg-batch` calls `preprocessing`, `infer` and `postprocessing` on its own threads; the analysis
child, the Slicer worker and the demo call `run_one`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_bundle.apps import runner
from monai_bundle.io import source_path

OUTPUT_DIR_KEY = "output_dir"
"""Data key that tells the config's SaveOnInputGridd where to write one input's result."""


_NOT_IN_SIGNATURE = ("_meta_", "device", "output_dir", "dataset_dir")


Progress = Callable[[str, "float | None"], None]
"""progress(stage, fraction of the run done or None): what `Pipeline.run_one` reports as it goes."""


class PipelineError(ValueError):
    """The task cannot run as declared: bad bundle, config, override or weights; str() is one line."""


@dataclass(frozen=True)
class DeclaredTask:
    """What a task is, whoever wrote it: enough to build, check and describe its inference.

    Args:
        name: our task id, or an outside bundle's name.
        kind: 'segmentation', 'classification', 'image' ... (metadata's kind / network_data_format).
        config_files: the inference config files, in merge order.
        meta_file: the bundle's metadata.json.
        class_names: label names by value, background first (segmentation).
        in_channels: image channels the network takes.
        image_key: the data key its preprocessing reads the image from.
        modality: what the input is ('CT', 'MR', ...), when declared.
        description: what the task does, in a sentence.
        bundle: an outside bundle's folder; None for our own tasks.
        overrides: config overrides that belong to the declaration (an outside bundle's data list and root).
        notes: what was found while declaring it that the user should know (e.g. a MONAI version drift).
        input_ndim: the image's declared dimensions (metadata "inputs"), when declared.
    """

    name: str
    kind: str
    config_files: tuple[str, ...]
    meta_file: str
    class_names: tuple[str, ...] = ()
    in_channels: int = 1
    image_key: str = "image"
    modality: str = ""
    description: str = ""
    bundle: Path | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    input_ndim: int | None = None

    @classmethod
    def builtin(cls, task: str) -> DeclaredTask:
        """One of our tasks, as metadata's "medimg" block declares it."""
        try:
            files = runner.config_files(task, "inference")
        except ValueError as error:
            raise PipelineError(str(error)) from None
        block = runner.tasks()[task]
        labels = block.get("labels", {})
        names = tuple(labels[key] for key in sorted(labels, key=int)) if labels else ()
        return cls(
            task,
            block["kind"],
            tuple(files),
            str(runner.METADATA),
            names,
            modality=block.get("modality", ""),
            description=block.get("description", ""),
            overrides=runner.root_overrides(),
            input_ndim=block.get("inputs", {}).get("image", {}).get("ndim"),
        )

    def feed(self, input_path: Path) -> dict[str, Any]:
        """Overrides that make the task's own data list exactly this one input.

        Our data lists (`data.datalists.image_datalist` ...) take one file as `dataset_dir` and check it;
        an outside bundle's data list is replaced by a one-item list.
        """
        if self.bundle is None:
            return {"dataset_dir": str(input_path)}
        return {"dataset#data": [{self.image_key: str(input_path)}]}


def declare(task: str | Path | DeclaredTask) -> DeclaredTask:
    """A task id of ours, or an outside bundle folder (a path that exists), as a DeclaredTask."""
    if isinstance(task, DeclaredTask):
        return task
    if isinstance(task, Path) or (task not in runner.tasks() and Path(task).is_dir()):
        from monai_bundle.engines.zoo import declare_bundle

        return declare_bundle(Path(task))
    return DeclaredTask.builtin(task)


def find_transform(parser, section: str, name: str) -> str | None:
    """Config id of the first transform `name` listed inline in the Compose `section`, or None."""
    transforms = parser.get(f"{section}#transforms")
    for index, spec in enumerate(transforms if isinstance(transforms, list) else []):
        if isinstance(spec, dict) and str(spec.get("_target_", "")).split(".")[-1] == name:
            return f"{section}#transforms#{index}"
    return None


class Pipeline:
    """A task's inference as its bundle configs declare it: network, weights, pre/post-processing.

    Two overrides are applied, as one would on the command line: the image reader is told the
    network's spatial rank (so a 2D or 4D input gets monai_bundle.io's one-line refusal), and the saver
    takes each input's output folder from the data key OUTPUT_DIR_KEY (to mirror input folders).
    A task whose postprocessing has no SaveOnInputGridd (results written by a handler, e.g. the
    classifier's predictions.csv) runs as a whole workflow per input in `run_one`; `saver` is then None.

    Args:
        task: our task id, an outside bundle folder, or a DeclaredTask.
        overrides: config overrides, as `--key value` pairs on the command line give them.
    """

    def __init__(self, task: str | Path | DeclaredTask, overrides: Mapping[str, Any] | None = None):
        self.declared = declared = declare(task)
        self.task, self.kind, self.image_key = declared.name, declared.kind, declared.image_key
        self.overrides = dict(overrides or {})
        self.notes: list[str] = list(declared.notes)
        outside = declared.bundle is not None
        if outside:
            from monai_bundle.engines import zoo

            options = zoo.engine_options(self.overrides)
        self.parser = parser = self._parse({})
        unknown = [key for key in self.overrides if key not in parser]
        if unknown:
            files = declared.config_files
            where = files[0] if len(files) == 1 else f"the configs of {self.task} ({', '.join(files)})"
            raise PipelineError(f"unknown override --{unknown[0]}: {where} has no such key")
        parser.update(self.overrides)
        if outside:
            self.notes += zoo.adapt(parser, declared, options)
        loader = find_transform(parser, "preprocessing", "LoadImaged")
        # the image's declared rank (a 2D network may run slice by slice on a volume), else the network's
        ndim = declared.input_ndim or parser.get("network_def#spatial_dims")
        if loader and "MedImgReader" in str(parser.get(f"{loader}#reader")) and ndim:
            parser[f"{loader}#ndim"] = parser.get(f"{loader}#ndim", ndim)
        if outside:
            missing = zoo.required_files(parser)
            if missing:
                raise PipelineError(f"{declared.bundle}: files the bundle needs are missing: {'; '.join(missing)}")
            self.checkpoint, self._model_key = zoo.checkpoint_of(parser)
        else:
            self.checkpoint = Path(parser.get_parsed_content("checkpoint")) if "checkpoint" in parser else None
        saver = find_transform(parser, "postprocessing", "SaveOnInputGridd")
        self.saver = None
        if saver is not None:
            parser[f"{saver}#output_dir_key"] = OUTPUT_DIR_KEY
            self.saver = parser.get_parsed_content(saver)
        has_names = "class_names" in parser and not outside
        self.class_names: list[str] = (
            list(parser.get_parsed_content("class_names")) if has_names else list(declared.class_names)
        )
        self.network = self.preprocessing = self.inferer = self.postprocessing = self.device = None
        self._assesses_quality = find_transform(parser, "postprocessing", "AssessQualityd") is not None

    def side_outputs(self, result: str | Path) -> list[Path]:
        """The files a run writes beside its result, after it: the quality flag's JSON where the task has one."""
        if not self._assesses_quality or self.saver is None:
            return []
        from monai_bundle.tasks.segmentation.quality import quality_path

        return [quality_path(result, self.saver.output_postfix)]

    def _parse(self, overrides: Mapping[str, Any]):
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(list(self.declared.config_files))
        parser.read_meta(self.declared.meta_file)
        parser.update({**self.declared.overrides, **overrides})
        return parser

    def signature(self) -> str:
        """A hash of what decides a result: task, config (with overrides) and weight file contents."""
        from monai_bundle.io import sha256_of

        config = {k: v for k, v in self.parser.get().items() if k not in _NOT_IN_SIGNATURE}
        weights = sha256_of(self.checkpoint) if self.checkpoint and self.checkpoint.is_file() else None
        text = json.dumps({"task": self.task, "weights": weights, "config": config}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def load(self) -> None:
        """Load the checked weights (our `initialize`; an outside bundle's own checkpoint) and build the parts."""
        parser = self.parser
        if self.declared.bundle is None:
            try:
                parser.get_parsed_content("initialize")
            except RuntimeError as error:  # MONAI wraps what a config expression raised: show a weights error as is
                cause = _weights_error(error)
                if cause is None:
                    raise
                raise cause from None
            self.network = parser.get_parsed_content("network")
        else:  # its initialize attaches a CheckpointLoader to its evaluator, which we do not run
            from monai_bundle.engines import zoo

            self.network = zoo.build_network(parser, self.declared)
            zoo.load_bundle_weights(self.network, self.checkpoint, self._model_key, self.declared.bundle)
        self.network.eval()
        self.device = parser.get_parsed_content("device")
        self.preprocessing = parser.get_parsed_content("preprocessing")
        self.inferer = parser.get_parsed_content("inferer")
        self.postprocessing = parser.get_parsed_content("postprocessing")

    def infer(self, item: dict) -> dict:
        """Run the network on one preprocessed item, as MONAI's evaluator does (collate, infer, decollate)."""
        import torch
        from monai.data import decollate_batch, list_data_collate

        batch = list_data_collate([item])
        with torch.no_grad():
            batch["pred"] = self.inferer(batch[self.image_key].to(self.device), self.network)
        return decollate_batch(batch)[0]

    def run_one(self, input_path: Path, output_dir: Path, progress: Progress | None = None) -> list[str]:
        """Read one image, run it and write its results on the input's grid under `output_dir`; the files written.

        The weights are loaded on the first call (or by `load`); later calls reuse them (the Slicer worker's case).
        """
        report = progress or (lambda stage, fraction: None)
        input_path, output_dir = Path(input_path), Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        if self.saver is None:
            return self._run_workflow(input_path, output_dir, report)
        if self.network is None:
            report("loading", 0.1)
            self.load()
        report("reading", 0.15)
        item = self.preprocessing({self.image_key: str(input_path)})
        report("inferring", 0.3)
        item = self.infer(item)
        report("writing", 0.85)
        item[OUTPUT_DIR_KEY] = str(output_dir)
        item = self.postprocessing(item)
        for key in self.saver.keys:
            if Path(source_path(item[key])).resolve() != input_path.resolve():
                raise PipelineError(f"{input_path}: the result came from {source_path(item[key])}, not this input")
        return [path for key in self.saver.keys for path in item[f"{key}_paths"]]

    def _run_workflow(self, input_path: Path, output_dir: Path, report: Progress) -> list[str]:
        """The config's initialize, run and finalize with its data list fed this one input (as `monai.bundle run`)."""
        before = _files(output_dir)
        parser = self._parse({**self.overrides, **self.declared.feed(input_path), "output_dir": str(output_dir)})
        report("running", 0.15)
        for section in ("initialize", "run", "finalize"):
            if section in parser:
                parser.get_parsed_content(section)
        after = _files(output_dir)
        return sorted(str(path) for path, stamp in after.items() if before.get(path) != stamp)


def _files(folder: Path) -> dict[Path, tuple[int, int]]:
    """Path -> (size, mtime_ns) of the files below `folder`, temp names ('.name') left out."""
    return {
        path: (stat.st_size, stat.st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file() and not path.name.startswith(".") and (stat := path.stat())
    }


def _weights_error(error: BaseException) -> BaseException | None:
    """The WeightsError (missing, altered or misfit weights; a missing optional extra) behind MONAI's wrappers."""
    from monai_bundle.engines.weights import WeightsError

    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, WeightsError):
            return error
        seen.add(id(error))
        error = error.__cause__
    return None
