"""The child process that runs a bundle task: its command line, its progress events, cancel, temp files, and the
warm worker (one long-lived child serving one request after another) that the module keeps per session."""

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


def analysis_command(
    python: str,
    input_path: Path,
    output_dir: Path,
    task: str | None = None,
    bundle: Path | None = None,
    device: str | None = None,
) -> list[str]:
    """The child's command line: `python -m monai_bundle.apps.analysis ...` (the runner the scripts use)."""
    command = [
        python,
        "-u",
        "-m",
        "monai_bundle.apps.analysis",
        "--input",
        str(input_path),
        "--output-dir",
        str(output_dir),
    ]
    command += ["--bundle", str(bundle)] if bundle is not None else ["--task", str(task)]
    if device:
        command += ["--device", device]
    return command


WORKER_IDLE_TIMEOUT_S = 900
"""A worker left idle this long ends itself and gives its memory back; the next Analyze starts a fresh one."""


def worker_command(python: str, idle_timeout: float = WORKER_IDLE_TIMEOUT_S) -> list[str]:
    """The warm worker's command line: `python -m monai_bundle.apps.worker` (requests on stdin, events on stdout)."""
    return [python, "-u", "-m", "monai_bundle.apps.worker", "--idle-timeout", f"{idle_timeout:g}"]


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
            data = json.loads(line[len(PROGRESS_PREFIX) :])
            return Event(stage=data.get("stage"), fraction=data.get("fraction"), data=data)
        except json.JSONDecodeError:
            pass
    return Event(log=line)


# Windows creation flags (subprocess defines them on Windows only): a new process group for taskkill /T,
# and no console window, as slicer.util.launchConsoleProcess hides it (Base/Python/slicer/util.py).
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000


def popen_options(os_name: str = os.name) -> dict:
    """Popen keywords that let `cancel` end the whole tree, with no console window on Windows."""
    if os_name == "nt":
        return {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
    return {"start_new_session": True}


def stop_commands(pid: int, os_name: str = os.name) -> list[list[str]]:
    """Windows has no SIGTERM or process groups: taskkill ends the tree (/T) at once (/F)."""
    return [["taskkill", "/T", "/F", "/PID", str(pid)]] if os_name == "nt" else []


class AnalysisProcess:
    """A running child process whose output is read on a thread; poll `events()` from a GUI timer.

    The child starts in a new session (POSIX) or process group (Windows), so `cancel` ends it and
    everything it started (data-loader workers, torch helpers). Nothing here blocks the caller: the
    output is read and the process ended on daemon threads; the last event is always 'exited'.
    With `requests`, the child's stdin is a pipe and `send` writes one JSON request per line (a worker).
    """

    def __init__(
        self, command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, requests: bool = False
    ) -> None:
        self.command, self.env, self.cwd, self.requests = command, env, cwd, requests
        self.process: subprocess.Popen | None = None
        self.queue: queue.Queue[Event] = queue.Queue()
        self.final: Event | None = None  # the 'done' or 'failed' event
        self.cancelled = False

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE if self.requests else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            env=self.env,
            cwd=self.cwd,
            **popen_options(),
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        try:
            for line in self.process.stdout:
                event = parse_line(line)
                if event.stage in ("done", "failed"):
                    self.final = event
                self.queue.put(event)
        except Exception as error:  # noqa: BLE001 - a broken pipe must not leave the module 'running' forever
            self.queue.put(Event(log=f"could not read the analysis output: {error}"))
        finally:
            self.queue.put(Event(stage="exited", data={"returncode": self.process.wait()}))

    def send(self, request: dict) -> None:
        """One request line to the child's stdin; OSError (BrokenPipeError) when the child has ended."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()

    def close_input(self) -> None:
        """Close the child's stdin: a worker finishes what it is doing and exits on its own."""
        if self.process is not None and self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass  # already gone

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

    def cancel(self, timeout: float = 1.5, block: bool = False) -> None:
        """End the child and all its descendants without blocking the GUI: SIGTERM to the group, SIGKILL after
        `timeout` seconds (POSIX), or taskkill /T /F (Windows), on a thread. The reader then reports 'exited'."""
        if self.process is None or self.process.poll() is not None:
            return
        self.cancelled = True
        stopper = threading.Thread(target=self._stop, args=(timeout,), daemon=True)
        stopper.start()
        if block:
            stopper.join()

    def _stop(self, timeout: float) -> None:
        assert self.process is not None
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
            return
        for command in stop_commands(self.process.pid):  # pragma: no cover - Windows
            subprocess.run(command, capture_output=True, check=False, **popen_options())
        try:  # pragma: no cover - Windows
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:  # pragma: no cover - taskkill failed: the last resort
            self.process.kill()


class Worker:
    """The module's warm worker: started by the first request, reused by the next, replaced when it has ended.

    It keeps torch, MONAI and the last networks loaded, so only the first Analyze of a session pays for
    them. Cancel ends it (`stop`; a network pass cannot be interrupted sooner) and the next request starts
    a new one; so does a crash or the worker's own idle timeout. A request with another environment
    (e.g. CPU only: GPUs hidden) also gets a new worker. `close` lets it exit by itself (scene close, cleanup).

    Args:
        python: the interpreter that runs the worker (PythonSlicer in Slicer).
        idle_timeout: seconds without a request after which the worker exits.
    """

    def __init__(self, python: str, idle_timeout: float = WORKER_IDLE_TIMEOUT_S) -> None:
        self.python, self.idle_timeout = python, idle_timeout
        self.process: AnalysisProcess | None = None
        self.requests = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    @property
    def pid(self) -> int | None:
        return self.process.process.pid if self.running else None

    def start(self, env: dict[str, str] | None = None) -> AnalysisProcess:
        """The running worker for `env`, started now if there is none (then its imports are done before the
        first request arrives). Raises OSError when it cannot be started."""
        if self.running and self.process.env != env:
            self.close()
        if not self.running:
            self.process = AnalysisProcess(worker_command(self.python, self.idle_timeout), env, requests=True)
            self.process.start()
        return self.process

    def submit(self, request: dict, env: dict[str, str] | None = None) -> tuple[AnalysisProcess, str]:
        """Send `request` (with a new "id") to the worker, starting one if needed; the process and the request id.

        Raises OSError when no worker can be started."""
        self.requests += 1
        request = {**request, "id": str(self.requests)}
        try:
            process = self.start(env)
            process.send(request)
        except OSError:  # it ended (idle timeout) between the check and the write: once more with a new one
            self.stop(block=True)
            process = self.start(env)
            process.send(request)
        return process, request["id"]

    def stop(self, block: bool = False) -> None:
        """End the worker at once (cancel): its whole process tree, as `AnalysisProcess.cancel` does."""
        if self.process is not None:
            self.process.cancel(block=block)
        self.process = None

    def close(self, timeout: float = 5.0) -> None:
        """Let the worker exit by itself (stdin closed); ended after `timeout` seconds if it is still busy."""
        process, self.process = self.process, None
        if process is None or not process.running:
            return
        process.close_input()

        def end_if_busy() -> None:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.cancel(block=True)

        threading.Thread(target=end_if_busy, daemon=True).start()


def _kill_group_leftovers(group: int) -> None:
    """Children that outlived their parent stay in its process group: end them too."""
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class PythonNotFoundError(OSError):
    """Slicer's PythonSlicer launcher is missing; str() is one line for the status."""


def python_slicer(executable: str = sys.executable, which=shutil.which, is_file=os.path.isfile) -> str:
    """Slicer's Python launcher, PythonSlicer: on PATH inside Slicer, else next to Slicer's executable
    (<Slicer>/bin, or Slicer.app/Contents/bin on macOS). Never Slicer itself: inside Slicer,
    sys.executable is the application (SlicerApp-real), which would open a second Slicer."""
    found = which("PythonSlicer")
    if found:
        return found
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    here = Path(executable).resolve().parent
    for folder in (here, here / "bin", here.parent / "bin"):
        if is_file(str(folder / name)):
            return str(folder / name)
    if Path(executable).name.lower().startswith("python"):  # run outside Slicer (tests, scripts): this interpreter
        return executable
    raise PythonNotFoundError(f"PythonSlicer was not found next to {executable}: reinstall 3D Slicer")
