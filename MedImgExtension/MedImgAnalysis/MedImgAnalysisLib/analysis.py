"""One Analyze click as a state machine the module polls: write the input, run the child, collect results."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from MedImgAnalysisLib.process import (
    AnalysisProcess,
    Workspace,
    analysis_command,
    child_environment,
)
from MedImgAnalysisLib.results import Results, collect
from MedImgAnalysisLib.tasks import Task

STATES = ("idle", "preparing", "running", "importing", "done", "cancelling", "cancelled", "failed")
INPUT_NAME = "input"


def input_file_name(task: Task) -> str:
    """What the input is written as: NRRD keeps any grid exactly (oblique too) and is read back with
    its own header by the built-in tasks; another bundle gets NIfTI, the Model Zoo's usual input."""
    return f"{INPUT_NAME}.nrrd" if task.bundle is None else f"{INPUT_NAME}.nii.gz"


class AnalysisRun:
    """Write the input with `write_input(path)`, run the task in a child process, collect its outputs.

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
    ) -> None:
        self.task, self.write_input, self.python, self.device = task, write_input, python, device
        self.bundle_package_parent, self.temp_root = bundle_package_parent, temp_root
        self.state, self.fraction, self.error = "idle", 0.0, ""
        self.log: list[str] = []
        self.results: Results | None = None
        self.workspace: Workspace | None = None
        self.process: AnalysisProcess | None = None
        self.started = self.seconds = 0.0
        self.running_fractions = 0  # fractions the child reported while running: 1 means 'started', no more

    def command(self, input_path: Path, output_dir: Path) -> list[str]:
        task = self.task.name if self.task.bundle is None else None
        return analysis_command(self.python, input_path, output_dir, task, self.task.bundle, self.device)

    def start(self) -> None:
        self.state, self.started = "preparing", time.monotonic()
        self.workspace = Workspace(self.temp_root)
        input_path = self.workspace.input_dir / input_file_name(self.task)
        try:
            self.write_input(input_path)
        except Exception as error:  # noqa: BLE001 - shown to the user, whatever the writer raised
            self._fail(f"could not write the input volume: {error}")
            return
        self.process = AnalysisProcess(
            self.command(input_path, self.workspace.output_dir),
            child_environment(self.device, self.bundle_package_parent),
        )
        self.log.append("$ " + " ".join(self.process.command))
        try:
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
            elif event.stage == "failed":
                self.error = event.data.get("error", "the analysis failed")
            elif event.fraction is not None:
                self.fraction = max(self.fraction, float(event.fraction))
                self.running_fractions += event.stage == "running"
            if event.stage == "exited":
                self._exited(event.data.get("returncode"))
        self.log.extend(lines)
        return lines

    def _exited(self, returncode: int | None) -> None:
        if self.state == "cancelling" or (self.process and self.process.cancelled):
            self.state = "cancelled"
            self.finish()
            return
        final = self.process.final if self.process else None
        if returncode != 0 or final is None or final.stage != "done":
            tail = next((line for line in reversed(self.log) if line.strip()), "")
            self._fail(self.error or f"the analysis process exited with code {returncode}: {tail}")
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
        """The progress bar's value, or None for a busy indicator: a child that reports no fraction while it
        runs (one 'running' line, then 'done') would otherwise leave the bar at 10% for the whole run."""
        if self.state in ("running", "cancelling") and self.running_fractions < 2:
            return None
        return int(100 * self.fraction)

    def cancel(self, block: bool = False) -> None:
        """End the child process tree and remove the temp files. Without `block` it returns at once: the
        state is 'cancelling' until `poll()` sees the child exit (within about 2 s), then 'cancelled'."""
        if self.process is not None and self.state == "running":
            self.state = "cancelling"
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
