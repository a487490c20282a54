"""The warm worker as a real child process: requests on stdin, progress events on stdout, one process for many runs.

Inputs are small synthetic CTs (a body-like box in air) run through the shipped CT segmentation task, so a run
takes about a second once the worker is up; the worker's own start (importing torch and MONAI) is paid once
per module.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_bundle.apps import runner
from monai_bundle.apps.analysis import PROGRESS_PREFIX
from monai_bundle.apps.worker import RequestError, parse_request

from conftest import REPO, bundle_args, run_cli

TIMEOUT_S = 300


def write_ct(path: Path, shape=(60, 50, 40), spacing=2.0) -> Path:
    """A synthetic CT: air with a soft-tissue box and a bright 'bone' bar, on an anisotropic, shifted grid."""
    data = np.full(shape, -1000, np.int16)
    data[10:-10, 8:-8, 5:-5] = 40
    data[25:35, 20:30, 5:-5] = 700
    affine = np.diag([spacing, spacing * 0.75, spacing * 1.5, 1.0])
    affine[:3, 3] = [-40.0, 12.5, 100.0]
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


class WorkerProcess:
    """`python -m monai_bundle.apps.worker` with its events read on a thread (a test never hangs on a pipe)."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.log = tmp_path / "worker.log"
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "monai_bundle.apps.worker", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log.open("w"),
            text=True,
            cwd=REPO,
        )
        self.events: queue.Queue[dict | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.ready = self.next_event()
        assert self.ready["stage"] == "ready", self.ready

    def _read(self) -> None:
        for line in self.process.stdout:
            if line.startswith(PROGRESS_PREFIX):
                self.events.put(json.loads(line[len(PROGRESS_PREFIX) :]))
        self.events.put(None)

    def next_event(self) -> dict:
        event = self.events.get(timeout=TIMEOUT_S)
        assert event is not None, f"the worker ended: {self.log.read_text()[-3000:]}"
        return event

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def ask(self, **request) -> list[dict]:
        """Send one request; its events, up to and including its 'done' or 'failed'."""
        self.send(json.dumps(request, default=str))
        events = [self.next_event()]
        while events[-1]["stage"] not in ("done", "failed"):
            events.append(self.next_event())
        return events

    def close(self) -> int:
        self.process.stdin.close()
        return self.process.wait(TIMEOUT_S)


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    process = WorkerProcess(tmp_path_factory.mktemp("worker"))
    yield process
    if process.process.poll() is None:
        process.process.kill()


def biased_weights(path: Path, label: int) -> Path:
    """The CT task's network with weights that call every voxel `label` (a huge bias on that output channel)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(runner.config_files("ct_segmentation", "inference"))
    state = parser.get_parsed_content("network_def").state_dict()
    last_bias = [key for key, value in state.items() if key.endswith("bias") and value.shape == (9,)][-1]
    state[last_bias] = torch.zeros(9)
    state[last_bias][label] = 1e4
    torch.save(state, path)
    return path


def labels(path: str) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def test_requests_are_parsed_and_bad_ones_named():
    request = parse_request('{"task": "ct_segmentation", "input": "a.nrrd", "output_dir": "out"}')
    assert request["input"] == Path("a.nrrd") and request["output_dir"] == Path("out")
    for line, problem in [
        ("not json", "one JSON object per line"),
        ('["a"]', "a JSON object"),
        ('{"task": "t", "input": "a"}', "no output_dir"),
        ('{"input": "a", "output_dir": "o"}', "exactly one of task and bundle"),
        ('{"task": "t", "bundle": "b", "input": "a", "output_dir": "o"}', "exactly one of task and bundle"),
        ('{"task": "t", "input": "a", "output_dir": "o", "overrides": [1]}', "overrides must be"),
    ]:
        with pytest.raises(RequestError, match=problem):
            parse_request(line)


def test_two_runs_share_one_process_and_match_the_one_shot_cli(worker, tmp_path):
    ct = write_ct(tmp_path / "ct.nii.gz", shape=(100, 100, 60))  # 2 windows at the task's 3 mm
    request = {"task": "ct_segmentation", "input": ct, "device": "cpu", "overrides": {"sw_batch_size": 1}}
    first = worker.ask(id="a", **request, output_dir=tmp_path / "a")
    second = worker.ask(id="b", **request, output_dir=tmp_path / "b")
    assert first[-1]["stage"] == second[-1]["stage"] == "done", (first[-1], second[-1])
    assert worker.process.poll() is None and worker.ready["pid"] == worker.process.pid
    assert [e["cache"] for e in first + second if e["stage"] == "loaded"] == ["loaded", "warm"]
    assert {e["id"] for e in first} == {"a"} and {e["id"] for e in second} == {"b"}
    windows = [e["windows"] for e in second if "windows" in e]  # the network pass reports each batch of windows
    assert windows == [0.5, 1.0]
    fractions = [e["fraction"] for e in second if e["fraction"] is not None]
    assert fractions == sorted(fractions)
    run_cli(bundle_args(["inference.json"], dataset_dir=ct, output_dir=tmp_path / "cli", device="cpu", sw_batch_size=1))
    (cli,) = sorted((tmp_path / "cli").glob("*_seg.nii.gz"))
    (quality_a, a), (_, b) = sorted(first[-1]["outputs"]), sorted(second[-1]["outputs"])  # ct_quality.json, ct_seg
    assert quality_a.endswith("_quality.json") and first[-1]["quality"] in ("ok", "review")  # as analysis says it
    assert Path(a).name == cli.name
    np.testing.assert_array_equal(labels(a), labels(str(cli)))
    np.testing.assert_array_equal(labels(b), labels(str(cli)))
    np.testing.assert_array_equal(nib.load(a).affine, nib.load(ct).affine)
    assert len(np.unique(labels(a))) > 1  # a real segmentation, not an empty map


def test_changed_weights_are_reloaded(worker, tmp_path):
    ct = write_ct(tmp_path / "ct.nii.gz", shape=(40, 40, 30))
    weights = biased_weights(tmp_path / "mine.pt", label=4)
    request = {"task": "ct_segmentation", "input": ct, "device": "cpu", "overrides": {"checkpoint": str(weights)}}
    before = worker.ask(**request, output_dir=tmp_path / "before")
    again = worker.ask(**request, output_dir=tmp_path / "again")
    biased_weights(weights, label=8)  # same path, new contents
    after = worker.ask(**request, output_dir=tmp_path / "after")
    assert [e["cache"] for e in before + again + after if e["stage"] == "loaded"] == ["loaded", "warm", "reloaded"]
    assert set(np.unique(labels(before[-1]["outputs"][0]))) == {0, 4}  # 0: outside the body
    assert set(np.unique(labels(after[-1]["outputs"][0]))) == {0, 8}


def test_a_bad_request_fails_alone_and_the_worker_carries_on(worker, tmp_path):
    worker.send("this is not json")
    assert "one JSON object per line" in worker.next_event()["error"]
    missing = worker.ask(id="m", task="ct_segmentation", input=tmp_path / "none.nii.gz", output_dir=tmp_path / "m")
    assert missing[-1]["stage"] == "failed" and missing[-1]["error"] == f"{tmp_path / 'none.nii.gz'}: input not found"
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not an image")
    failed = worker.ask(id="j", task="ct_segmentation", input=junk, output_dir=tmp_path / "j")[-1]
    assert failed["stage"] == "failed" and "junk.nii.gz" in failed["error"] and "\n" not in failed["error"]
    assert not (tmp_path / "j").exists() or not any((tmp_path / "j").iterdir())  # no partial output
    unknown = worker.ask(id="u", task="no_such_task", input=junk, output_dir=tmp_path / "u")[-1]
    assert unknown["stage"] == "failed" and "no_such_task" in unknown["error"]
    good = worker.ask(id="g", task="ct_segmentation", input=write_ct(tmp_path / "ct.nii.gz"), output_dir=tmp_path / "g")
    assert good[-1]["stage"] == "done" and worker.process.poll() is None


@pytest.mark.slow
def test_an_idle_worker_exits_cleanly(tmp_path):
    idle = WorkerProcess(tmp_path, "--idle-timeout", "0.5")
    event = idle.next_event()
    assert event["stage"] == "exiting" and event["reason"] == "idle for 0.5 s"
    assert idle.process.wait(TIMEOUT_S) == 0


def test_closed_input_ends_the_worker_cleanly(worker):
    """Last: the module's worker ends as a client that goes away (Slicer closing) leaves it."""
    assert worker.close() == 0
