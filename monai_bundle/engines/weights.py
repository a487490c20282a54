"""Weight loading: sha256 of shipped weights checked before `torch.load(..., weights_only=True)`."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from monai_bundle.io import sha256_of

logger = logging.getLogger(__name__)


def shipped_weights_sha256(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Weight file name -> sha256 for every task block of a bundle's metadata that lists both.

    Args:
        metadata: the bundle's metadata.json as a mapping (`@_meta_` in a config).
    """
    tasks = metadata.get("medimg", {}).get("tasks", {})
    return {
        Path(task["weights"]).name: task["sha256"]
        for task in tasks.values()
        if task.get("weights") and task.get("sha256")
    }


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

    A file with a shipped name must match its listed hash; other files (your own checkpoints) load
    with their hash logged. Returns `network`.

    Args:
        network: the network (or its DistributedDataParallel wrapper) to load into.
        path: the weight file (a plain state_dict).
        known_sha256: weight file names (as listed in the bundle metadata) -> their hashes.
        strict: every tensor of the network must be in the file and fit (torch's `strict`).

    Raises:
        WeightsError: the file is missing, its hash does not match, or it does not fit the network.
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
