"""A warm worker: one process that keeps torch, MONAI and recently used networks loaded and runs request after request.

    python -m monai_bundle.apps.worker [--idle-timeout 900] [--cache-size 2]

Starting Python and importing torch and MONAI costs several seconds on a small CPU; the work on one CT is
often less. The Slicer module (and any other client) therefore keeps this process alive and sends it one
JSON request per line on stdin:

    {"id": "1", "task": "ct_segmentation", "input": "IN.nrrd", "output_dir": "OUT",
     "device": "cpu", "output_format": "nifti", "overrides": {"key": value}}

(or "bundle": "/path/to/zoo_bundle" instead of "task"; "id", "device", "output_format" and "overrides" are
optional). Each request is answered on stdout with the progress lines of `monai_bundle.apps.analysis`
(PROGRESS_PREFIX + JSON, every one carrying the request's "id"): stage changes, the fraction of the network's
sliding windows done, then one "done" (with "outputs") or "failed" (with a one-line "error"). The worker says
"ready" once its imports are done. Results are those of the one-shot analysis: the same `Pipeline.run_one`.

Loaded pipelines are kept in a small least-recently-used cache keyed by task or bundle folder, device and
overrides (an outside bundle's "precision" and "fast" go in "overrides", as `analysis --precision/--fast`);
one whose config, metadata or weights file changed on disk (size or mtime) is loaded again. The worker ends
cleanly (exit 0) when stdin closes (its client ended), on a {"quit": true} request, or after `--idle-timeout`
seconds without a request. To cancel a run, a client ends the process (and starts a new one when next needed):
nothing inside a network pass can be interrupted sooner.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from monai_bundle.apps.analysis import emit, failure_message, run_overrides
from monai_bundle.tasks.segmentation.quality import with_quality

logger = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 900.0
"""Seconds without a request after which the worker exits (its memory, networks included, is given back)."""

CACHE_SIZE = 2
"""Loaded pipelines kept: enough to switch between two tasks (or a task and an outside bundle) without reloading."""

NETWORK_SHARE = (0.3, 0.85)
"""The overall fraction at which `Pipeline.run_one` reports 'inferring' and 'writing': the network pass's span."""


class RequestError(ValueError):
    """A request line the worker cannot run (not JSON, no input, neither or both of task and bundle)."""


def parse_request(line: str) -> dict[str, Any]:
    """One request line as a dict with "input" and "output_dir" as Paths; RequestError names what is wrong."""
    try:
        request = json.loads(line)
    except ValueError as error:
        raise RequestError(f"a request must be one JSON object per line: {error}") from None
    if not isinstance(request, dict):
        raise RequestError("a request must be a JSON object")
    if request.get("quit"):
        return request
    missing = [key for key in ("input", "output_dir") if not request.get(key)]
    if missing:
        raise RequestError(f"the request has no {' or '.join(missing)}")
    if (request.get("task") is None) == (request.get("bundle") is None):
        raise RequestError("give exactly one of task and bundle")
    if not isinstance(request.get("overrides", {}), dict):
        raise RequestError("overrides must be a JSON object of config keys and values")
    return {**request, "input": Path(request["input"]), "output_dir": Path(request["output_dir"])}


def request_overrides(request: Mapping[str, Any]) -> dict[str, Any]:
    """Config overrides of a request: its own, then device and output_format as the one-shot analysis sets them."""
    return {**(request.get("overrides") or {}), **run_overrides(request.get("device"), request.get("output_format"))}


def file_stamps(pipeline) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime_ns) of the files a loaded pipeline was built from: configs, metadata, weights."""
    declared = pipeline.declared
    paths = [*declared.config_files, declared.meta_file, pipeline.checkpoint]
    stamps = []
    for path in filter(None, paths):
        try:
            stat = os.stat(path)
            stamps.append((str(path), stat.st_size, stat.st_mtime_ns))
        except OSError:
            stamps.append((str(path), -1, -1))  # gone: a later change (it reappears) reloads too
    return tuple(stamps)


class PipelineCache:
    """The last `size` loaded pipelines, by (task or bundle, overrides); one whose files changed since is built again.

    Args:
        size: how many loaded pipelines to keep.
        factory: builds a pipeline from (task or bundle folder, overrides); `engines.pipeline.Pipeline` by default.
    """

    def __init__(self, size: int = CACHE_SIZE, factory: Callable[..., Any] | None = None) -> None:
        self.size = size
        self.factory = factory
        self.entries: OrderedDict[str, tuple[Any, tuple]] = OrderedDict()

    def get(self, task: str | Path, overrides: Mapping[str, Any]) -> tuple[Any, str]:
        """The pipeline for `task` (or an outside bundle's folder) with `overrides`, and how it was found: 'warm',
        'loaded' or 'reloaded'."""
        key = json.dumps([str(task), dict(overrides)], sort_keys=True, default=str)
        how = "loaded"
        if key in self.entries:
            pipeline, stamps = self.entries.pop(key)
            if file_stamps(pipeline) == stamps:
                self.entries[key] = (pipeline, stamps)
                return pipeline, "warm"
            how = "reloaded"
        if self.factory is None:
            from monai_bundle.engines.pipeline import Pipeline

            self.factory = Pipeline
        pipeline = self.factory(task, overrides)
        stamps = file_stamps(pipeline)  # before loading: a file changed while it loads is seen next time
        if pipeline.saver is not None:  # else run_one runs the whole workflow per input (nothing to keep loaded)
            pipeline.load()
            wrap_inferer(pipeline)
        self.entries[key] = (pipeline, stamps)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return pipeline, how


def wrap_inferer(pipeline) -> None:
    """Make a loaded pipeline's inferer report the fraction of windows done (engines.inferers.ProgressInferer)."""
    from monai_bundle.engines.inferers import ProgressInferer

    if pipeline.inferer is not None and not isinstance(pipeline.inferer, ProgressInferer):
        pipeline.inferer = ProgressInferer(pipeline.inferer)


def serve_one(request: dict[str, Any], cache: PipelineCache) -> list[str]:
    """Run one parsed request through its cached pipeline, reporting progress with its id; the files written."""
    fields = {"id": request.get("id")}
    if not request["input"].exists():
        raise FileNotFoundError(f"{request['input']}: input not found")
    emit("starting", 0.02, task=request.get("task"), bundle=request.get("bundle"), **fields)
    pipeline, how = cache.get(request.get("task") or Path(request["bundle"]), request_overrides(request))
    emit("loaded", 0.1, cache=how, **fields)
    start, end = NETWORK_SHARE

    def windows(fraction: float) -> None:
        emit("inferring", round(start + (end - start) * fraction, 4), windows=round(fraction, 4), **fields)

    def progress(stage: str, fraction: float | None) -> None:
        emit(stage, fraction, **fields)

    if pipeline.inferer is not None:
        pipeline.inferer.callback = windows
    try:
        outputs = pipeline.run_one(request["input"], request["output_dir"], progress=progress)
    finally:
        if pipeline.inferer is not None:
            pipeline.inferer.callback = None
    if not outputs:
        raise RuntimeError("the run finished but wrote no output (see the log above)")
    return outputs


def read_lines(stream, lines: queue.Queue) -> None:
    """Put each line of `stream` on `lines`, then None at its end (a thread: the main loop can time out)."""
    for line in stream:
        lines.put(line)
    lines.put(None)


def serve(stdin=None, idle_timeout: float = IDLE_TIMEOUT_S, cache_size: int = CACHE_SIZE) -> int:
    """Answer requests from `stdin` until it closes, a quit request, or `idle_timeout` seconds without one."""
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=read_lines, args=(stdin or sys.stdin, lines), daemon=True).start()
    cache = PipelineCache(cache_size)
    emit("ready", None, pid=os.getpid())
    while True:
        try:
            line = lines.get(timeout=idle_timeout)
        except queue.Empty:
            emit("exiting", None, reason=f"idle for {idle_timeout:g} s")
            return 0
        if line is None or not line.strip():
            if line is None:
                emit("exiting", None, reason="input closed")
                return 0
            continue
        started, request = time.monotonic(), {}
        try:
            request = parse_request(line)
            if request.get("quit"):
                emit("exiting", None, reason="quit")
                return 0
            outputs = serve_one(request, cache)
        except Exception as error:  # noqa: BLE001 - one 'failed' event per request, and the worker carries on
            emit("failed", None, id=request.get("id"), error=failure_message(error), kind=type(error).__name__)
            logger.exception("request failed")
            continue
        outputs, quality = with_quality(outputs)
        emit(
            "done", 1.0, id=request.get("id"), outputs=outputs, seconds=round(time.monotonic() - started, 3), **quality
        )


def warm_up() -> None:
    """Before 'ready': the imports the default task's inference config declares (torch, MONAI, the bundle's modules),
    so that a worker started ahead of the first request has them done when it comes."""
    from monai.bundle import ConfigParser

    from monai_bundle.apps import runner

    parser = ConfigParser()
    parser.read_config(runner.config_files(runner.DEFAULT_TASK, "inference"))
    parser.get_parsed_content("imports")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_S, help="seconds (default %(default)s)")
    parser.add_argument(
        "--cache-size", type=int, default=CACHE_SIZE, help="loaded pipelines kept (default %(default)s)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    warm_up()
    return serve(idle_timeout=args.idle_timeout, cache_size=args.cache_size)


if __name__ == "__main__":
    sys.exit(main())
