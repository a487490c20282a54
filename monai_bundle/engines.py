"""Device and precision choice, mixed-precision and flip-ensemble inferers, metrics in mm, weight loading."""

from __future__ import annotations

import json
import logging
import os
import platform
from contextlib import nullcontext
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from monai.handlers import HausdorffDistance
from monai.inferers import Inferer

from monai_bundle.files import sha256_of, write_text_atomic

logger = logging.getLogger(__name__)

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""CPU flags whose presence makes bf16 convolutions faster than fp32 (oneDNN kernels)."""


def default_device() -> torch.device:
    """The first CUDA device when one is usable, else the CPU."""
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def cpu_flags() -> set[str]:
    """The CPU feature flags of this machine (Linux /proc/cpuinfo; empty elsewhere)."""
    if platform.system() != "Linux":
        return set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def bf16_is_fast(device: torch.device | str) -> bool:
    """True where bf16 autocast speeds convolutions up: CUDA with bf16 support, or a CPU with AMX/AVX512-BF16."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(cpu_flags() & set(CPU_BF16_FLAGS))
    return False


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """Resolve a config's `precision` ('auto', 'bf16', 'fp16', 'fp32') to an autocast dtype (None = fp32)."""
    precision = str(precision).lower()
    if precision == "auto":
        return torch.bfloat16 if bf16_is_fast(device) else None
    choices = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}
    if precision not in choices:
        raise ValueError(f"precision must be one of auto, bf16, fp16, fp32; got {precision!r}")
    return choices[precision]


class AutocastInferer(Inferer):
    """Run another MONAI inferer with the network under `torch.autocast`, everything else in float32.

    MONAI engines' own `amp` flag autocasts on CUDA only; this works on CPU (bf16) and GPU alike,
    so one config runs fast on both. Only the network's forward pass is autocast: a sliding
    window's blending, losses and metrics see float32 (blending bf16 windows in a bf16 buffer is
    both slower on CPU and coarser). `channels_last` stores inputs and weights channels-last
    (`"auto"`: for fp32 on CPU, where oneDNN's fp32 convolutions were slightly faster that way here).
    """

    def __init__(self, inferer: Inferer, precision: str = "auto", device: torch.device | str | None = None,
                 channels_last: bool | str = "auto"):
        self.inferer = inferer
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = autocast_dtype(precision, self.device)
        if channels_last == "auto":
            channels_last = self.dtype is None and self.device.type == "cpu"
        self.channels_last = bool(channels_last)
        logger.info("inference precision: %s on %s%s", self.dtype or torch.float32, self.device,
                    ", channels-last" if self.channels_last else "")

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def forward(batch: torch.Tensor, *a: Any, **k: Any) -> Any:
            memory_format = _channels_last(batch.ndim) if self.channels_last else None
            if memory_format is not None:  # by the rank the network sees (a slice inferer feeds it 2D slices of 3D input)
                if isinstance(network, torch.nn.Module):
                    network.to(memory_format=memory_format)
                batch = batch.contiguous(memory_format=memory_format)
            context = nullcontext() if self.dtype is None else torch.autocast(self.device.type, dtype=self.dtype)
            with context:
                outputs = network(batch, *a, **k)
            return _to_float32(outputs)

        return _to_float32(self.inferer(inputs, forward, *args, **kwargs))


class FlipEnsembleInferer(Inferer):
    """Run another MONAI inferer with the network's output averaged over flipped copies of its input.

    Every subset of `spatial_axes` is flipped (2^n passes; `[0, 1]` on 2D slices: 4), the output
    flipped back, and the outputs averaged: the geometric self-ensemble of image restoration
    (Lim et al. 2017, EDSR+). For a network trained with flip augmentation it averages out part of
    its error at n-fold cost. No axes: the plain network. Outputs must be one tensor on the input grid.
    """

    def __init__(self, inferer: Inferer, spatial_axes: Sequence[int] = (0, 1)):
        self.inferer = inferer
        self.flips = [tuple(axis + 2 for axis in subset)  # + batch and channel dims
                      for size in range(len(spatial_axes) + 1) for subset in combinations(spatial_axes, size)]

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def averaged(batch: torch.Tensor, *a: Any, **k: Any) -> torch.Tensor:
            total = None
            for dims in self.flips:
                output = network(batch.flip(dims) if dims else batch, *a, **k)
                output = output.flip(dims) if dims else output
                total = output.float() if total is None else total + output.float()
            return total / len(self.flips)

        return self.inferer(inputs, averaged, *args, **kwargs)


class SkipNonFiniteSteps:
    """Trainer handler: a step whose gradients are not all finite updates nothing (its gradients are dropped).

    What torch.amp's GradScaler does for fp16 on GPUs, for any precision: one non-finite step would
    otherwise turn every weight into NaN for the rest of the run. Each skipped step is logged;
    `skipped` counts them.
    """

    def __init__(self) -> None:
        self.skipped = 0

    def attach(self, engine) -> None:
        from monai.engines.utils import IterationEvents

        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine) -> None:
        grads = [p.grad for group in engine.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads or bool(torch.stack([g.isfinite().all() for g in grads]).all()):
            return
        for group in engine.optimizer.param_groups:
            for p in group["params"]:
                p.grad = None  # optimizers skip parameters without a gradient
        self.skipped += 1
        logger.warning("iteration %d: non-finite gradients, step skipped (%d so far)", engine.state.iteration, self.skipped)


def _channels_last(ndim: int) -> torch.memory_format | None:
    """The channels-last format for a batch of this rank (2D or 3D images), else None."""
    return {4: torch.channels_last, 5: torch.channels_last_3d}.get(ndim)


def _to_float32(outputs: Any) -> Any:
    """Cast floating tensors (also inside tuples, lists and dicts) back to float32."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, Mapping):
        return {key: _to_float32(value) for key, value in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_to_float32(value) for value in outputs)
    return outputs


class HausdorffDistanceMM(HausdorffDistance):
    """MONAI's HausdorffDistance handler, in millimetres: passes each label's voxel spacing to the metric."""

    def update(self, output) -> None:
        y_pred, y = output
        spacing = [_voxel_spacing(label) for label in y]
        self.metric_fn(y_pred, y, spacing=spacing)


def _voxel_spacing(image: torch.Tensor) -> list[float]:
    """Voxel size of a channel-first MetaTensor (1.0 per axis without metadata)."""
    pixdim = getattr(image, "pixdim", None)
    if pixdim is None:
        return [1.0] * (image.ndim - 1)
    return [float(value) for value in pixdim]


def shipped_weights_sha256(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Weight file name -> sha256 for every task block of a bundle's metadata that lists both."""
    tasks = metadata.get("medimg", {}).get("tasks", {})
    return {Path(task["weights"]).name: task["sha256"] for task in tasks.values() if task.get("weights") and task.get("sha256")}


class WeightsError(RuntimeError):
    """A weight file is missing, altered, or does not fit the network."""


def check_weights_file(path: Path, known_sha256: Mapping[str, str] | None) -> str:
    """The file's sha256, after checking it exists and, when its name is a shipped one, that the hash matches."""
    if not path.is_file():
        raise WeightsError(f"{path}: weight file not found")
    actual = sha256_of(path)
    expected = (known_sha256 or {}).get(path.name)
    if expected is not None and actual != expected:
        raise WeightsError(f"{path}: sha256 {actual[:16]}... does not match the bundle's {expected[:16]}...")
    if expected is None:
        logger.warning("%s is not a shipped weight file; loading it unverified (sha256 %s)", path, actual)
    return actual


def load_weights(
    network: torch.nn.Module,
    path: str | os.PathLike,
    known_sha256: Mapping[str, str] | None = None,
    strict: bool = True,
) -> torch.nn.Module:
    """Load a plain state_dict into `network` after checking its sha256 when the file is a shipped one.

    `known_sha256` maps weight file names (as listed in the bundle metadata) to their hashes; a file
    with a listed name must match. Other files (your own checkpoints) load with their hash logged.
    """
    path = Path(path)
    actual = check_weights_file(path, known_sha256)
    state = torch.load(path, map_location="cpu", weights_only=True)
    target = network.module if isinstance(network, torch.nn.parallel.DistributedDataParallel) else network
    try:
        target.load_state_dict(state, strict=strict)
    except RuntimeError as error:
        raise WeightsError(f"{path}: does not fit the network ({str(error).splitlines()[0]})") from None
    logger.info("loaded weights %s (sha256 %s)", path, actual[:16])
    return network


class SegmentationReport:
    """Ignite handler: at the end of an evaluation, write `report.json` with per-label and per-case metrics.

    Reads the per-image details that MONAI's metric handlers keep in `engine.state.metric_details`
    (one row per image, one column per foreground label) and the file names of the images.
    """

    def __init__(self, output_dir: str, class_names: list[str], include_background: bool = False):
        self.output_dir = Path(output_dir)
        self.labels = list(class_names if include_background else class_names[1:])
        self.cases: list[str] = []

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self.cases.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect_names)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _collect_names(self, engine) -> None:
        self.cases.extend(str(item["image"].meta.get("filename_or_obj", "")) for item in engine.state.batch)

    def _write(self, engine) -> None:
        details = getattr(engine.state, "metric_details", {}) or {}
        report = {"labels": self.labels, "cases": self.cases, "metrics": {}}
        for metric, values in details.items():
            table = torch.as_tensor(values, dtype=torch.float64).reshape(len(self.cases), -1).cpu()
            per_label = {}
            for column, label in enumerate(self.labels[: table.shape[1]]):
                finite = table[:, column][torch.isfinite(table[:, column])]
                per_label[label] = {"mean": float(finite.mean()) if len(finite) else None, "n": int(len(finite))}
            report["metrics"][metric] = {
                "per_label": per_label,
                "per_case": [[None if not torch.isfinite(v) else float(v) for v in row] for row in table],
            }
        write_text_atomic(self.output_dir / "report.json", json.dumps(report, indent=2))
        logger.info("wrote %s", self.output_dir / "report.json")
