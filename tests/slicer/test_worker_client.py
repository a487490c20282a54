"""The Slicer module's warm worker, without Slicer: runs reuse one real worker process; cancel, a crash and the
worker's idle timeout each end it, and the next Analyze starts a fresh one that works.

Inputs are small synthetic CTs written as Slicer writes a volume (NRRD); the task is the shipped CT segmentation.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pytest

from monai_bundle.apps import runner

from conftest import REPO
from helpers import run_to_end, write_as_slicer_does

sys.path.insert(0, str(REPO / "MedImgExtension" / "MedImgAnalysis"))
from MedImgAnalysisLib import tasks  # noqa: E402
from MedImgAnalysisLib.analysis import AnalysisRun  # noqa: E402
from MedImgAnalysisLib.process import Worker, worker_command  # noqa: E402

CT = tasks.builtin_tasks(runner.METADATA)["ct_segmentation"]


def ct_writer(shape=(48, 40, 32)):
    """What the module's writeInput does, for a synthetic CT (air, a soft-tissue box, a bone bar) at 2 mm."""
    array = np.full(shape, -1000, np.int16)
    array[6:-6, 6:-6, 4:-4] = 40
    array[20:28, 16:24, 4:-4] = 700
    return lambda path: write_as_slicer_does(array, np.diag([2.0, 2.0, 2.0, 1.0]), path)


def analyze(worker: Worker, tmp_path, writer=None, timeout: float = 300) -> AnalysisRun:
    """One Analyze click as the module makes it (the worker given), polled to its end."""
    run = AnalysisRun(CT, writer or ct_writer(), sys.executable, "cpu", REPO, tmp_path, worker)
    return run_to_end(run, timeout)


@pytest.fixture
def worker():
    worker = Worker(sys.executable)
    yield worker
    worker.stop(block=True)


def wait_for(condition, run: AnalysisRun | None = None, timeout: float = 60.0) -> None:
    """Poll `run` (as the module's timer does) until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
        if run is not None:
            run.poll()


def test_the_worker_command_and_requests():
    assert worker_command("py", 60) == ["py", "-u", "-m", "monai_bundle.apps.worker", "--idle-timeout", "60"]
    run = AnalysisRun(CT, ct_writer(), "py", "cpu")
    request = run.request(REPO / "in.nrrd", REPO / "out")
    assert request == {
        "task": "ct_segmentation",
        "input": str(REPO / "in.nrrd"),
        "output_dir": str(REPO / "out"),
        "device": "cpu",
    }


def test_two_analyses_share_one_worker_process(worker, tmp_path):
    first = analyze(worker, tmp_path)
    assert first.state == "importing", (first.error, first.log[-20:])
    pid = worker.pid
    second = analyze(worker, tmp_path)
    assert second.state == "importing", (second.error, second.log[-20:])
    assert worker.pid == pid and second.process is first.process
    assert first.results.label_map.name == second.results.label_map.name == "input_seg.nrrd"
    assert second.percent == 100 and second.progressed  # real progress was reported, not a busy indicator
    for run in (first, second):
        run.finish()
        assert not run.workspace.path.exists()


def test_cancel_mid_run_ends_the_worker_and_the_next_analysis_starts_a_new_one(worker, tmp_path):
    big = ct_writer((200, 200, 120))  # at the task's 3 mm: a few dozen windows, seconds of network work
    run = AnalysisRun(CT, big, sys.executable, "cpu", REPO, tmp_path, worker)
    run.start()
    wait_for(lambda: run.fraction > 0.3, run, timeout=300)  # inside the network pass
    pid = worker.pid
    started = time.monotonic()
    run.cancel()
    assert run.state == "cancelling" and time.monotonic() - started < 0.2  # never blocks the GUI
    wait_for(lambda: run.state == "cancelled", run, timeout=5)
    assert time.monotonic() - started < 2.5 and not worker.running and not run.workspace.path.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    after = analyze(worker, tmp_path)
    assert after.state == "importing", (after.error, after.log[-20:])
    assert worker.pid not in (None, pid)
    after.finish()


@pytest.mark.slow
def test_a_crashed_worker_fails_the_run_in_one_line_and_the_next_analysis_recovers(worker, tmp_path):
    run = AnalysisRun(CT, ct_writer((200, 200, 120)), sys.executable, "cpu", REPO, tmp_path, worker)
    run.start()
    wait_for(lambda: run.fraction > 0.1, run, timeout=300)
    crashed = worker.pid
    os.kill(crashed, signal.SIGKILL)
    wait_for(lambda: run.state == "failed", run, timeout=10)
    assert run.error.startswith("the analysis worker ended before answering with code -9") and "\n" not in run.error
    assert not run.workspace.path.exists()
    after = analyze(worker, tmp_path)
    assert after.state == "importing", (after.error, after.log[-20:])
    assert worker.pid != crashed
    after.finish()


@pytest.mark.slow
def test_an_idle_worker_ends_itself_and_a_closed_one_exits_cleanly(tmp_path):
    worker = Worker(sys.executable, idle_timeout=1)
    first = analyze(worker, tmp_path)
    assert first.state == "importing", (first.error, first.log[-20:])
    first.finish()
    process = first.process
    wait_for(lambda: not process.running, timeout=30)
    assert process.returncode == 0 and not worker.running
    second = analyze(worker, tmp_path)
    assert second.state == "importing" and second.process is not process
    second.finish()
    worker.close()  # scene close / module cleanup: stdin closed, the worker exits by itself
    wait_for(lambda: not second.process.running, timeout=30)
    assert second.process.returncode == 0
