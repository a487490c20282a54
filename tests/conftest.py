"""Shared fixtures: the repository root, a clean environment for child processes, small synthetic datasets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "monai_bundle" / "configs"


def _share_cores_between_workers() -> None:
    """Under pytest-xdist (`-n N`), give each worker and its child processes cpu_count // N threads.

    Torch's default (one thread per core in every process) makes N workers fight over the cores; set
    before anything imports torch, and inherited by every child process a test starts.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))


_share_cores_between_workers()


def run_cli(args: list[str], cwd: Path = REPO, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    """Run a real child process (the same Python), capture its output, and fail the test with it on error."""
    child_env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
        **env,
    }
    result = subprocess.run(args, cwd=cwd, env=child_env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def bundle_args(config_files, **overrides) -> list[str]:
    """`python -m monai.bundle run --config_file ... --key value ...` as users type it, as a list of arguments."""
    files = [str(CONFIGS / name) for name in config_files]
    config_arg = files[0] if len(files) == 1 else repr(files)
    args = [sys.executable, "-m", "monai.bundle", "run", "--config_file", config_arg]
    for key, value in overrides.items():
        args += [f"--{key}", str(value)]
    return args


def bundle_run(config_files, **overrides) -> subprocess.CompletedProcess:
    """Run `bundle_args(...)` in a child process; fail the test with its output on error."""
    return run_cli(bundle_args(config_files, **overrides))


@pytest.fixture(scope="session")
def phantom_dataset(tmp_path_factory) -> Path:
    """Twelve small synthetic CT phantoms (MSD layout) with exact labels."""
    from monai_bundle.data.phantoms import write_phantom_dataset

    return write_phantom_dataset(tmp_path_factory.mktemp("phantoms"), n=12, modality="ct", shape=(48, 48, 48), seed=0)
