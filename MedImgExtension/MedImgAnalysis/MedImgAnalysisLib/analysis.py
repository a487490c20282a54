"""One Analyze click as a state machine the module polls: write the input, run it (in the warm worker, or in a
child process of its own), collect results."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from MedImgAnalysisLib.process import (
    AnalysisProcess,
    Event,
    Worker,
    Workspace,
    analysis_command,
    child_environment,
)
from MedImgAnalysisLib.results import Results, collect
from MedImgAnalysisLib.tasks import Task

STATES = ("idle", "preparing", "running", "importing", "done", "cancelling", "cancelled", "failed")
INPUT_NAME = "input"
STARTING_STAGES = ("starting", "running")
"""Stages a child reports before any real progress: until a later one, the bar is a busy indicator."""


def input_file_name(task: Task) -> str:
    """What the input is written as: NRRD keeps any grid exactly (oblique too) and is read back with
    its own header by the built-in tasks; another bundle gets NIfTI, the Model Zoo's usual input."""
    return f"{INPUT_NAME}.nrrd" if task.bundle is None else f"{INPUT_NAME}.nii.gz"


class AnalysisRun:
    """Write the input with `write_input(path)`, run the task, collect its outputs.

    With a `worker` the task runs as one request to that warm worker process (the module's way:
    imports and networks stay loaded between clicks; cancel ends the worker, the next run starts a new
    one); without, in a child process of its own (`python -m monai_bundle.apps.analysis`).
    `poll()` is called from a GUI timer; it never blocks. `state`, `fraction`, `log` and `error`
    say where the run is; `results` is set when state becomes 'importing' (the module then loads
    the outputs and calls `finish()`).
    """

    def __init__(
        self,
        task: Task,
        write_input: Callable[[Path], None],
        python: str,
        device: str | None = None,
        bundle_package_parent: Path | None = None,
        temp_root: Path | None = None,
        worker: Worker | None = None,
    ) -> None:
        self.task, self.write_input, self.python, self.device = task, write_input, python, device
        self.bundle_package_parent, self.temp_root, self.worker = bundle_package_parent, temp_root, worker
        self.request_id: str | None = None  # the worker's id of this run's request
        self.state, self.fraction, self.error = "idle", 0.0, ""
        self.log: list[str] = []
        self.results: Results | None = None
        self.workspace: Workspace | None = None
        self.process: AnalysisProcess | None = None
        self.started = self.seconds = 0.0
        self.progressed = False  # the child reported a fraction past its starting stages

    def command(self, input_path: Path, output_dir: Path) -> list[str]:
        task = self.task.name if self.task.bundle is None else None
        return analysis_command(self.python, input_path, output_dir, task, self.task.bundle, self.device)

    def request(self, input_path: Path, output_dir: Path) -> dict:
        """The worker request of this run: the same task, input, output folder and device as `command`."""
        what = {"task": self.task.name} if self.task.bundle is None else {"bundle": str(self.task.bundle)}
        return {**what, "input": str(input_path), "output_dir": str(output_dir), "device": self.device}

    def start(self) -> None:
        self.state, self.started = "preparing", time.monotonic()
        self.workspace = Workspace(self.temp_root)
        input_path = self.workspace.input_dir / input_file_name(self.task)
        try:
            self.write_input(input_path)
        except Exception as error:  # noqa: BLE001 - shown to the user, whatever the writer raised
            self._fail(f"could not write the input volume: {error}")
            return
        env = child_environment(self.device, self.bundle_package_parent)
        try:
            if self.worker is not None:
                request = self.request(input_path, self.workspace.output_dir)
                self.process, self.request_id = self.worker.submit(request, env)
                self.log.append(f"worker {self.process.process.pid} <- {request}")
            else:
                self.process = AnalysisProcess(self.command(input_path, self.workspace.output_dir), env)
                self.log.append("$ " + " ".join(self.process.command))
                self.process.start()
        except OSError as error:
            self._fail(f"could not start {self.python}: {error}")
            return
        self.state = "running"

    def poll(self) -> list[str]:
        """New log lines since the last poll; updates state, fraction and error."""
        if self.process is None or self.state not in ("running", "cancelling"):
            return []
        lines = []
        for event in self.process.events():
            if event.log is not None:
                lines.append(event.log)
                continue
            if self.request_id is not None and event.data.get("id") not in (None, self.request_id):
                continue  # another request's (none is expected: one run at a time)
            if event.stage == "failed":
                self.error = event.data.get("error", "the analysis failed")
            elif event.fraction is not None:
                self.fraction = max(self.fraction, float(event.fraction))
                self.progressed |= event.stage not in STARTING_STAGES
            if event.stage == "exited":
                self._exited(event.data.get("returncode"))
            elif self.request_id is not None and event.stage in ("done", "failed") and self.state == "running":
                self._conclude(event, None)  # the worker answered; it stays up for the next run
        self.log.extend(lines)
        return lines

    def _exited(self, returncode: int | None) -> None:
        if self.state == "cancelling" or (self.process and self.process.cancelled):
            self.state = "cancelled"
            self.finish()
            return
        if self.state != "running":
            return
        self._conclude(None if self.request_id is not None else self.process.final, returncode)

    def _conclude(self, final: Event | None, returncode: int | None) -> None:
        """The run's answer (its 'done' or 'failed' event, None when there was none) and the child's exit code."""
        if returncode not in (0, None) or final is None or final.stage != "done":
            tail = next((line for line in reversed(self.log) if line.strip()), "")
            ended = "the analysis worker ended before answering" if self.request_id else "the analysis process exited"
            self._fail(self.error or f"{ended} with code {returncode}: {tail}")
            return
        try:
            self.results = collect(self.task, final.data.get("outputs", []), self.bundle_package_parent)
        except (ValueError, ImportError) as error:
            self._fail(str(error))
            return
        self.seconds = time.monotonic() - self.started
        self.state, self.fraction = "importing", 1.0

    @property
    def percent(self) -> int | None:
        """The progress bar's value, or None for a busy indicator until the child reports real progress (a stage
        past STARTING_STAGES): one that starts and then says nothing would leave the bar at 10% for the whole run."""
        if self.state in ("running", "cancelling") and not self.progressed:
            return None
        return int(100 * self.fraction)

    def cancel(self, block: bool = False) -> None:
        """End the child process tree and remove the temp files. Without `block` it returns at once: the
        state is 'cancelling' until `poll()` sees the child exit (within about 2 s), then 'cancelled'."""
        if self.process is not None and self.state == "running":
            self.state = "cancelling"
            if self.worker is not None and self.worker.process is self.process:
                self.worker.stop(block=block)  # the next run starts a fresh worker
            else:
                self.process.cancel(block=block)
            if not block:
                return
        if self.state in ("cancelling", "preparing"):
            self.state = "cancelled"
        self.finish()

    def finish(self, failed: str | None = None) -> None:
        """After the module loaded the outputs (or gave up): remove the temp folder."""
        if failed:
            self._fail(failed)
        elif self.state == "importing":
            self.state = "done"
        if self.workspace is not None:
            self.workspace.cleanup()

    def _fail(self, message: str) -> None:
        self.state, self.error = "failed", message.strip().splitlines()[0] if message.strip() else "failed"
        if self.workspace is not None:
            self.workspace.cleanup()
