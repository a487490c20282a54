"""The child process that runs a bundle task: its command line, its progress events, cancel, temp files."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

PROGRESS_PREFIX = "MEDIMG-PROGRESS "  # monai_bundle.apps.analysis.PROGRESS_PREFIX (not imported: Slicer may lack it)


def analysis_command(python: str, input_path: Path, output_dir: Path, task: str | None = None,
                     bundle: Path | None = None, device: str | None = None) -> list[str]:
    """The child's command line: `python -m monai_bundle.apps.analysis ...` (the runner the scripts use)."""
    command = [python, "-u", "-m", "monai_bundle.apps.analysis", "--input", str(input_path), "--output-dir", str(output_dir)]
    command += ["--bundle", str(bundle)] if bundle is not None else ["--task", str(task)]
    if device:
        command += ["--device", device]
    return command


def child_environment(device: str | None, bundle_package_parent: Path | None = None) -> dict[str, str]:
    """The child's environment: CPU forced by hiding GPUs; the monai_bundle package's folder on PYTHONPATH."""
    env = dict(os.environ)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    if bundle_package_parent is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(bundle_package_parent), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Workspace:
    """A temp folder for one analysis: input/ (what the module writes) and output/ (what the task writes)."""

    def __init__(self, root: Path | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="medimg-analysis-", dir=root))
        self.input_dir = self.path / "input"
        self.output_dir = self.path / "output"
        self.input_dir.mkdir()
        self.output_dir.mkdir()

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@dataclass
class Event:
    """What the child said: a progress event (stage, fraction, ...) or one line of log."""

    stage: str | None = None
    fraction: float | None = None
    data: dict = field(default_factory=dict)
    log: str | None = None


def parse_line(line: str) -> Event:
    """A line of the child's output as an Event (progress lines are JSON after PROGRESS_PREFIX)."""
    line = line.rstrip("\n")
    if line.startswith(PROGRESS_PREFIX):
        try:
            data = json.loads(line[len(PROGRESS_PREFIX):])
            return Event(stage=data.get("stage"), fraction=data.get("fraction"), data=data)
        except json.JSONDecodeError:
            pass
    return Event(log=line)


class AnalysisProcess:
    """A running child process whose output is read on a thread; poll `events()` from a GUI timer.

    The child starts in a new process group (POSIX) or process group (Windows), so `cancel` ends it
    and everything it started (data-loader workers, torch threads' helpers) at once.
    """

    def __init__(self, command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.command, self.env, self.cwd = command, env, cwd
        self.process: subprocess.Popen | None = None
        self.queue: queue.Queue[Event] = queue.Queue()
        self.final: Event | None = None  # the 'done' or 'failed' event
        self.cancelled = False

    def start(self) -> None:
        kwargs = {"start_new_session": True} if os.name == "posix" else {
            "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        bufsize=1, env=self.env, cwd=self.cwd, **kwargs)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            event = parse_line(line)
            if event.stage in ("done", "failed"):
                self.final = event
            self.queue.put(event)
        self.process.wait()
        self.queue.put(Event(stage="exited", data={"returncode": self.process.returncode}))

    def events(self) -> list[Event]:
        """Everything the child said since the last call."""
        out = []
        while True:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                return out

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def wait(self, timeout: float | None = None) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def cancel(self, timeout: float = 1.5) -> None:
        """End the child and all its descendants: SIGTERM to the group, SIGKILL after `timeout` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self.cancelled = True
        if os.name == "posix":
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
            _kill_group_leftovers(self.process.pid)
        else:  # pragma: no cover - Windows
            subprocess.run(["taskkill", "/T", "/F", "/PID", str(self.process.pid)], capture_output=True, check=False)
            self.process.wait(timeout)


def _kill_group_leftovers(group: int) -> None:
    """Children that outlived their parent stay in its process group: end them too."""
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def default_python() -> str:
    """Slicer's own Python launcher when present (PythonSlicer), else this interpreter."""
    return shutil.which("PythonSlicer") or sys.executable
