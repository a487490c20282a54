"""Transfer learning: start a network from another model's weights, load what fits, say what did not."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from monai_bundle.engines.weights import WeightsError, check_weights_file
from monai_bundle.io import write_text_atomic

logger = logging.getLogger(__name__)


_WRAPPER_KEYS = ("model", "state_dict", "network", "net")


_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a weight file: a plain state_dict, or one stored under 'model'/'state_dict' (DDP prefixes removed)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weight file not found")
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise WeightsError(f"{path}: not a PyTorch weight file ({str(error).splitlines()[0]})") from None
    while isinstance(state, Mapping) and not _is_state_dict(state):
        inner = next((state[key] for key in _WRAPPER_KEYS if isinstance(state.get(key), Mapping)), None)
        if inner is None:
            raise WeightsError(f"{path}: holds no state_dict (keys: {', '.join(map(str, list(state)[:6]))})")
        state = inner
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, not a state_dict")
    return {_strip_prefixes(name): tensor for name, tensor in state.items()}


def _is_state_dict(state: Mapping) -> bool:
    return bool(state) and all(isinstance(value, torch.Tensor) for value in state.values())


def _strip_prefixes(name: str) -> str:
    for prefix in _WRAPPER_PREFIXES:
        while name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def load_matching_weights(
    network: nn.Module,
    path: str | os.PathLike,
    freeze: Sequence[str] = (),
    report_path: str | os.PathLike | None = None,
    known_sha256: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Copy every tensor of `path` whose name and shape match into `network`, freeze the named layers.

    A first convolution trained on RGB (3 input channels) is summed over its inputs to fit a grey
    (1-channel) network, which keeps its response to grey images. Everything else that does not
    fit is left as initialised and listed. `freeze` names module prefixes (e.g. 'features') whose
    parameters stop training. Returns (and writes to `report_path`, JSON) what was loaded, adapted,
    skipped, missing and frozen. Shipped weights are checked against `known_sha256` first.

    Args:
        network: the network to start from the weights.
        path: the weight file (a state_dict, possibly wrapped; see `read_state_dict`).
        freeze: module prefixes whose parameters stop training (e.g. FEATURE_LAYERS of a task).
        report_path: where the JSON report goes (None or empty: nowhere).
        known_sha256: weight file names (as listed in the bundle metadata) -> their hashes.

    Raises:
        WeightsError: the file is missing, altered, or no tensor fits the network.
        ValueError: a `freeze` prefix names no parameter.
    """
    path = Path(path)
    digest = check_weights_file(path, known_sha256)
    source = read_state_dict(path)
    target = network.state_dict()
    loaded, adapted, skipped = [], [], []
    for name, tensor in source.items():
        if name not in target:
            skipped.append(f"{name}: not in this network")
        elif tensor.shape == target[name].shape:
            target[name] = tensor.to(target[name].dtype)
            loaded.append(name)
        elif _grey_first_conv(tensor, target[name]):
            target[name] = tensor.sum(dim=1, keepdim=True).to(target[name].dtype)
            adapted.append(f"{name}: {tuple(tensor.shape)} summed over input channels -> {tuple(target[name].shape)}")
        else:
            skipped.append(f"{name}: shape {tuple(tensor.shape)} != {tuple(target[name].shape)}")
    if not loaded and not adapted:
        raise WeightsError(f"{path}: no tensor fits this network (first names: {', '.join(list(source)[:3])})")
    network.load_state_dict(target)
    frozen = freeze_layers(network, freeze)
    missing = [name for name in target if name not in source]
    report = {
        "weights": str(path),
        "sha256": digest,
        "loaded": len(loaded),
        "adapted": adapted,
        "skipped": skipped,
        "not_in_weights": missing,
        "frozen_parameters": frozen,
    }
    logger.info(
        "transfer from %s: %d tensors loaded, %d adapted, %d skipped, %d left as initialised, %d parameters frozen",
        path,
        len(loaded),
        len(adapted),
        len(skipped),
        len(missing),
        len(frozen),
    )
    for line in skipped + [f"{name}: not in the weights" for name in missing]:
        logger.info("  not loaded: %s", line)
    if report_path:
        write_text_atomic(report_path, json.dumps(report, indent=2) + "\n")
    return report


def _grey_first_conv(source: torch.Tensor, target: torch.Tensor) -> bool:
    """A conv weight [out, in, *k] trained on several input channels, wanted with one."""
    return (
        source.ndim >= 3
        and source.ndim == target.ndim
        and target.shape[1] == 1
        and source.shape[1] > 1
        and source.shape[0] == target.shape[0]
        and source.shape[2:] == target.shape[2:]
    )


def freeze_layers(network: nn.Module, prefixes: Sequence[str]) -> list[str]:
    """Stop training the parameters under the given module prefixes; returns their names."""
    frozen = []
    for name, parameter in network.named_parameters():
        if any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes):
            parameter.requires_grad_(False)
            frozen.append(name)
    if prefixes and not frozen:
        raise ValueError(f"no parameters under {', '.join(prefixes)} to freeze")
    return frozen
