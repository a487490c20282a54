"""`medimg-batch`: run a bundle task over every image below a folder: fast, resumable, safe with bad input.

    medimg-batch --task ct_segmentation --input IN_DIR --output OUT_DIR [--workers 2] [--shard i/n]
                 [--output-format nifti|dicom|both]
    medimg-batch --bundle ZOO_BUNDLE_DIR --input IN_DIR --output OUT_DIR [--precision fp32] [--fast false]
    medimg-batch merge-reports OUT_DIR

Every NIfTI, NRRD, MetaImage file and DICOM series below IN_DIR is run through the task's own inference
configs (the files `runner.config_files(task, "inference")` names, or an outside bundle's
configs/inference.json, parsed once by the bundle engine, `engines.pipeline.Pipeline`): the model is loaded
once, worker threads read and preprocess the next inputs while the network runs, and writer threads invert the
preprocessing and write each result on its input's grid under OUT_DIR, mirroring IN_DIR's folders.
`report.csv` and `report.json` get one row per input: its status (done, skipped, failed), the files written,
the one-line reason of a failure, notes (e.g. a DICOM series read on a regularised grid), timings and the
task's results. `--output-format dicom` writes a DICOM input's result as a DICOM SEG and an SR volume report
instead of NIfTI, `both` writes all three.

A rerun skips inputs whose output is complete and valid (recorded in OUT_DIR/.medimg-batch/ and on
the input's grid) and redoes the rest; outputs and reports are written to a temp name and renamed,
so a run killed at any moment leaves nothing truncated. `--shard i/n` (0-based i) splits the inputs
by a stable hash of their relative path; `merge-reports` joins the shard reports into one.
Exit codes: 0 all inputs done or skipped, 1 some failed, 2 the run could not start (usage, config, weights).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monai_bundle.apps import runner
from monai_bundle.engines.pipeline import OUTPUT_DIR_KEY, Pipeline, PipelineError
from monai_bundle.io import (
    OUTPUT_FORMATS,
    ImageReadError,
    check_result_grid,
    find_images,
    output_paths,
    read_header,
    write_text_atomic,
)
from monai_bundle.io.dicom_derived import check_derived
from monai_bundle.tasks.segmentation import segmentation_results

logger = logging.getLogger(__name__)


PROG = "medimg-batch"


STATE_DIR = ".medimg-batch"
"""Hidden folder in OUT_DIR holding the resume journals (JSON lines, one per finished output)."""


PREFETCH = 2
"""Inputs read ahead of the network beyond one per worker."""


REPORT_COLUMNS = ["input", "output", "status", "error", "note", "read_s", "infer_s", "write_s"]


STATUSES = ("done", "skipped", "failed")


class UsageError(ValueError):
    """The run cannot start: bad arguments, config or weights (exit code 2)."""


def image_results(item: dict, class_names: list[str]) -> dict[str, str]:
    """An image result's `shape` and `spacing_mm`, from the written file (a super-resolved grid is not the input's)."""
    shape, affine, _ = read_header(item["pred_path"])
    spacing = np.linalg.norm(affine[:3, : len(shape)], axis=0)
    return {"shape": "x".join(map(str, shape)), "spacing_mm": "x".join(f"{value:.4g}" for value in spacing)}


SUMMARISERS: dict[str, Callable[[dict, list[str]], dict[str, Any]]] = {
    "segmentation": segmentation_results,
    "image": image_results,
}
"""Task kind -> function(postprocessed item, class names) -> report columns. Classification tasks
(probability and class per input) plug in here under "classification"."""


def task_kind(task: str) -> str:
    """'segmentation', 'classification', ...: the "kind" the task declares in metadata (the schema requires one)."""
    return runner.tasks()[task]["kind"]


def batch_tasks() -> list[str]:
    """The tasks this tool can run: those with an inference workflow whose kind has a result summariser."""
    return sorted(
        task
        for task, block in runner.tasks().items()
        if task_kind(task) in SUMMARISERS and "inference" in block["configs"]
    )


@dataclass(frozen=True)
class Case:
    """One input: its path relative to the input folder (the report and shard key) and its planned outputs."""

    rel: str
    source: str
    outputs: tuple[str, ...]  # the label map first, then a DICOM input's SEG and SR
    out_rels: tuple[str, ...]
    problem: str = ""  # known before reading (an output name clash, a format the input cannot have)

    @property
    def output(self) -> str:
        """The first output (the label map, or the SEG where only DICOM is written)."""
        return self.outputs[0] if self.outputs else ""

    @property
    def out_rel(self) -> str:
        """The outputs relative to the output folder, as the report's `output` column names them."""
        return "; ".join(self.out_rels)


def plan(input_path: Path, output_dir: Path, postfix: str, ext: str | None, output_format: str = "nifti") -> list[Case]:
    """Every image below `input_path` (or that one file) with its outputs under `output_dir`, sorted.

    Outputs mirror the input's folders and are named as `transforms.output_paths` names them; images
    inside `output_dir` are left out. Two inputs that would write one output: the second one fails; so does
    an input that cannot be written in `output_format` (a NIfTI input as DICOM SEG).
    """
    root = input_path if input_path.is_dir() else input_path.parent
    sources = [Path(p) for p in find_images(input_path)] if input_path.is_dir() else [input_path]
    out_root = output_dir.resolve()
    cases, owners = [], {}
    for source in sources:
        resolved = source.resolve()
        if resolved == out_root or out_root in resolved.parents:
            continue
        rel = source.relative_to(root).as_posix() if source != root else source.name
        try:
            outputs = output_paths(str(source), str(output_dir / Path(rel).parent), postfix, ext, output_format)
        except ValueError as error:
            cases.append(Case(rel, str(source), (), (), str(error)))
            continue
        out_rels = tuple(output.relative_to(output_dir).as_posix() for output in outputs)
        problem = next(
            (
                f"{source}: its output {out_rel} is already the output of {owner}"
                for out_rel in out_rels
                if (owner := owners.setdefault(out_rel, rel)) != rel
            ),
            "",
        )
        cases.append(Case(rel, str(source), tuple(map(str, outputs)), out_rels, problem))
    return cases


def shard_index(rel: str, n: int) -> int:
    """The shard (0..n-1) of an input: a stable hash of its relative path, so new files move no others."""
    return int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "big") % n


def parse_shard(text: str | None, env: dict[str, str] | None = None) -> tuple[int, int] | None:
    """'i/n' (0 <= i < n) or 'auto' (torchrun's RANK/WORLD_SIZE; 0/1 without them) -> (i, n); None -> None."""
    if text is None:
        return None
    env = os.environ if env is None else env
    if text == "auto":
        return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must be i/n (e.g. 0/4) or auto, not {text!r}") from None
    if not 0 <= i < n:
        raise UsageError(
            f"--shard {text}: i is 0-based and must be in 0..{n - 1}" if n > 0 else "--shard: n must be >= 1"
        )
    return i, n


def shard_name(shard: tuple[int, int] | None) -> str:
    return f"shard-{shard[0]}-of-{shard[1]}" if shard else ""


def fingerprint(source: str) -> list[int]:
    """[size, mtime_ns] of an input file; for a DICOM folder the sum of its files' sizes and the latest mtime."""
    path = Path(source)
    stats = [f.stat() for f in sorted(path.iterdir()) if f.is_file()] if path.is_dir() else [path.stat()]
    return [sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)]


def remove_stale_temps(targets: list[Path], before: float) -> None:
    """Remove the temp files and folders ('.<name>.tmp-*') of `targets` older than `before`: a killed run's.

    Only these targets' temps are touched, so shards writing other outputs into the same folders are safe.
    """
    by_folder: dict[Path, set[str]] = {}
    for target in targets:
        by_folder.setdefault(target.parent, set()).add(target.name)
    for folder, names in by_folder.items():
        for entry in folder.iterdir() if folder.is_dir() else ():
            name, temp, _ = entry.name[1:].rpartition(".tmp-")
            if entry.name.startswith(".") and temp and name in names and entry.lstat().st_mtime < before:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)


def failure_reason(source: str, error: BaseException) -> str:
    """One line: an ImageReadError's own '<path>: <problem>', else '<path>: <ExceptionType>: <first line>'.

    MONAI wraps a failing transform's error in 'RuntimeError: applying transform ...': that wrapper is skipped.
    """
    seen, cause = set(), error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ImageReadError):
            return str(cause)
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    while isinstance(error, RuntimeError) and str(error).startswith("applying transform") and error.__cause__:
        error = error.__cause__
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{source}: {type(error).__name__}" + (f": {first}" if first else "")


def check_output(output: Path, source: str, grid: str = "input") -> None:
    """Raise (ValueError, ImageReadError) unless `output` is a valid result of `source`: an image on its `grid`
    (io.GRIDS), or a DICOM SEG or SR that references its series."""
    if output.suffix == ".dcm":
        check_derived(output, source)
    else:
        shape, affine, _ = read_header(output)
        check_result_grid(source, shape, affine, grid)


def _grid_notes(affine: np.ndarray) -> list[str]:
    """Remarks on a readable but unusual input grid."""
    axes = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    if np.abs(axes.T @ axes - np.eye(3)).max() > 1e-4:
        return ["non-orthonormal (sheared) direction; the result is on the input's own grid"]
    return []


class ThreadNotes(logging.Handler):
    """Collects the warnings monai_bundle.io logs while one thread reads one input (e.g. 'other series ignored')."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._notes: dict[int, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        notes = self._notes.get(record.thread)
        if notes is not None:
            message = record.getMessage()
            if message not in notes:
                notes.append(message)

    @contextlib.contextmanager
    def collect(self, notes: list[str]):
        self._notes[threading.get_ident()] = notes
        try:
            yield notes
        finally:
            self._notes.pop(threading.get_ident(), None)


class Journal:
    """Append-only JSON lines in OUT_DIR/.medimg-batch/, one per finished output, fsynced; read back to resume.

    Each shard appends to its own file; all are read. A line cut short by a crash is ignored.
    """

    def __init__(self, output_dir: Path, shard: tuple[int, int] | None):
        self.folder = output_dir / STATE_DIR
        self.path = self.folder / f"journal{'-' + shard_name(shard) if shard else ''}.jsonl"
        self.entries: dict[str, dict] = {}
        self._lock = threading.Lock()

    def load(self) -> Journal:
        for path in sorted(self.folder.glob("journal*.jsonl")):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    rel, finished = entry["input"], float(entry["finished"])
                except (ValueError, KeyError, TypeError):
                    continue
                if finished >= self.entries.get(rel, {}).get("finished", -1.0):
                    self.entries[rel] = entry
        return self

    def append(self, entry: dict) -> None:
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as file:
                if file.tell():
                    file.seek(-1, os.SEEK_END)
                    if file.read(1) != b"\n":  # the end of a line cut short by a crash
                        line = "\n" + line
                file.write(line.encode())
                file.flush()
                os.fsync(file.fileno())
            self.entries[entry["input"]] = entry


@dataclass
class Outcome:
    """What happened to one input: one report row."""

    case: Case
    status: str = ""
    error: str = ""
    notes: list[str] = field(default_factory=list)
    read_s: float | None = None
    infer_s: float | None = None
    write_s: float | None = None
    results: dict[str, Any] = field(default_factory=dict)

    def fail(self, error: BaseException | str) -> Outcome:
        self.status = "failed"
        self.error = error if isinstance(error, str) else failure_reason(self.case.source, error)
        return self

    def row(self) -> dict[str, Any]:
        timings = {
            key: None if value is None else round(value, 3)
            for key, value in (("read_s", self.read_s), ("infer_s", self.infer_s), ("write_s", self.write_s))
        }
        output = self.case.out_rel if self.status in ("done", "skipped") else ""
        return {
            "input": self.case.rel,
            "output": output,
            "status": self.status,
            "error": self.error,
            "note": "; ".join(self.notes),
            **timings,
            **self.results,
        }


class BatchRun:
    """Reads ahead on `workers` threads, runs the network on this one, writes on `workers` threads."""

    def __init__(
        self,
        pipeline: Pipeline,
        cases: list[Case],
        journal: Journal,
        *,
        workers: int = 2,
        overwrite: bool = False,
        on_outcome: Callable[[Outcome], None] = lambda outcome: None,
    ):
        self.pipeline, self.cases, self.journal = pipeline, cases, journal
        self.workers, self.overwrite, self.on_outcome = max(1, workers), overwrite, on_outcome
        self.started = time.time()
        self.signature = pipeline.signature()
        self.summarise = SUMMARISERS[pipeline.kind]
        self._notes = ThreadNotes()

    @contextlib.contextmanager
    def _collecting_notes(self):
        io_logger = logging.getLogger("monai_bundle.io")
        io_logger.addHandler(self._notes)
        try:
            yield
        finally:
            io_logger.removeHandler(self._notes)

    # one input, on a reader thread

    def check(self, case: Case, outcome: Outcome) -> bool:
        """Header checks and resume: True if `case` still needs computing; else `outcome` is final."""
        if case.problem:
            outcome.fail(case.problem)
            return False
        _, affine, _ = read_header(case.source)  # refuses unreadable headers, absurd sizes, >3D, bad grids
        outcome.notes += _grid_notes(affine)
        if not self.overwrite:
            cached = self._cached_results(case, outcome)
            if cached is not None:
                outcome.status, outcome.results = "skipped", cached
                return False
        return True

    def _cached_results(self, case: Case, outcome: Outcome) -> dict | None:
        """The results of an earlier run if `case`'s outputs are complete, valid and up to date, else None."""
        outputs = [Path(output) for output in case.outputs]
        side = self.pipeline.side_outputs(case.output) if case.output else []
        if not all(path.exists() for path in outputs + side):  # a run killed before its quality file: again
            return None
        try:
            for output in outputs:
                check_output(output, case.source, self.pipeline.saver.grid)
            entry = self.journal.entries.get(case.rel)
            if entry is not None:
                current = entry["fingerprint"] == fingerprint(case.source) and entry["signature"] == self.signature
                if current and entry.get("output") == case.out_rel:
                    return entry["results"]
            elif min(output.stat().st_mtime_ns for output in outputs) >= fingerprint(case.source)[1]:
                # outputs without a journal line (a run killed between the two, or another tool's)
                item = {"pred_path": case.output, **({"pred_sr_path": case.outputs[-1]} if len(outputs) > 1 else {})}
                return self.summarise(item, self.pipeline.class_names)
        except (ImageReadError, ValueError, OSError):
            pass
        outcome.notes.append("the existing output is out of date or invalid")
        return None

    def _read(self, case: Case) -> tuple[Outcome, dict | None]:
        outcome, start = Outcome(case), time.perf_counter()
        item = None
        with self._notes.collect(outcome.notes):
            try:
                if self.check(case, outcome):
                    item = self.pipeline.preprocessing({"image": case.source})
            except Exception as error:
                outcome.fail(error)
        outcome.read_s = time.perf_counter() - start
        return outcome, item

    # one input, on a writer thread

    def _write(self, outcome: Outcome, item: dict) -> Outcome:
        case, start = outcome.case, time.perf_counter()
        try:
            item[OUTPUT_DIR_KEY] = str(Path(case.output).parent)
            item = self.pipeline.postprocessing(item)
            if [Path(path) for path in item["pred_paths"]] != [Path(output) for output in case.outputs]:
                raise RuntimeError(f"wrote {'; '.join(item['pred_paths'])} instead of {'; '.join(case.outputs)}")
            outcome.results = self.summarise(item, self.pipeline.class_names)
            outcome.status = "done"
        except Exception as error:
            outcome.fail(error)
        del item
        if outcome.status == "done":
            try:
                self.journal.append(
                    {
                        "input": case.rel,
                        "output": case.out_rel,
                        "fingerprint": fingerprint(case.source),
                        "signature": self.signature,
                        "results": outcome.results,
                        "finished": time.time(),
                    }
                )
            except OSError as error:
                outcome.notes.append(f"not recorded for resuming ({error})")
        outcome.write_s = time.perf_counter() - start
        return outcome

    # all inputs

    def dry_run(self) -> list[Outcome]:
        """What a run would do, from headers and existing outputs only: no input is read in full, nothing is written."""
        outcomes = []
        with self._collecting_notes():
            for case in self.cases:
                outcome = Outcome(case)
                with self._notes.collect(outcome.notes):
                    try:
                        if self.check(case, outcome):
                            outcome.status = "to run"
                    except Exception as error:
                        outcome.fail(error)
                outcomes.append(outcome)
        return outcomes

    def run(self) -> list[Outcome]:
        outcomes: list[Outcome] = []

        def record(outcome: Outcome) -> None:
            outcomes.append(outcome)
            self.on_outcome(outcome)

        readers = ThreadPoolExecutor(self.workers, thread_name_prefix="medimg-read")
        writers = ThreadPoolExecutor(self.workers, thread_name_prefix="medimg-write")
        todo, reading, writing = iter(self.cases), deque(), set()

        def read_ahead() -> None:
            while len(reading) < self.workers + PREFETCH and (case := next(todo, None)) is not None:
                reading.append(readers.submit(self._read, case))

        def collect(most: int) -> None:
            """Record finished writes, waiting while more than `most` are under way."""
            nonlocal writing
            done, writing = wait(writing, timeout=0)
            while len(writing) > most:
                more, writing = wait(writing, return_when=FIRST_COMPLETED)
                done |= more
            for future in sorted(done, key=lambda f: f.result().case.rel):
                record(future.result())

        targets = [Path(output) for case in self.cases for output in case.outputs]
        targets += [side for case in self.cases if case.output for side in self.pipeline.side_outputs(case.output)]
        remove_stale_temps(targets, self.started)
        try:
            with self._collecting_notes():
                read_ahead()
                while reading:
                    outcome, item = reading.popleft().result()
                    read_ahead()
                    if item is not None:
                        start = time.perf_counter()
                        try:
                            item = self.pipeline.infer(item)
                        except Exception as error:
                            outcome.fail(error)
                            item = None
                        outcome.infer_s = time.perf_counter() - start
                    if item is None:
                        record(outcome)
                    else:
                        writing.add(writers.submit(self._write, outcome, item))
                    collect(self.workers)
                collect(0)
        finally:
            readers.shutdown(wait=True, cancel_futures=True)
            writers.shutdown(wait=True, cancel_futures=True)
        return outcomes


def report_paths(output_dir: Path, shard: tuple[int, int] | None) -> tuple[Path, Path]:
    stem = f"report-{shard_name(shard)}" if shard else "report"
    return output_dir / f"{stem}.csv", output_dir / f"{stem}.json"


def write_report(
    output_dir: Path, shard: tuple[int, int] | None, header: dict, rows: list[dict], started: float | None = None
) -> Path:
    """report(-shard-i-of-n).csv and .json, rows sorted by input, each file written atomically."""
    rows = sorted(rows, key=lambda row: row["input"])
    columns = list(REPORT_COLUMNS)
    for row in rows:
        columns += [key for key in row if key not in columns]
    counts = {status: sum(row["status"] == status for row in rows) for status in STATUSES}
    report = {**header, "counts": counts, "columns": columns, "cases": rows}
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
    csv_path, json_path = report_paths(output_dir, shard)
    remove_stale_temps([csv_path, json_path], started or time.time())
    write_text_atomic(json_path, json.dumps(report, indent=2) + "\n")
    write_text_atomic(csv_path, text.getvalue())
    return csv_path


def merge_reports(output_dir: Path, n: int | None = None) -> Path:
    """Join OUT_DIR's report-shard-i-of-n.json files into report.csv/json; every shard 0..n-1 must be there."""
    found: dict[int, dict[int, Path]] = {}
    for path in output_dir.glob("report-shard-*-of-*.json"):
        parts = path.stem.split("-")  # report-shard-i-of-n
        if len(parts) == 5 and parts[2].isdigit() and parts[4].isdigit():
            found.setdefault(int(parts[4]), {})[int(parts[2])] = path
    if not found:
        raise UsageError(f"{output_dir}: no report-shard-i-of-n.json files to merge")
    if n is None:
        if len(found) > 1:
            raise UsageError(
                f"{output_dir}: shard reports of several splits ({', '.join(map(str, sorted(found)))}"
                " shards); choose one with --shards N"
            )
        n = next(iter(found))
    missing = [i for i in range(n) if i not in found.get(n, {})]
    if missing:
        raise UsageError(f"{output_dir}: shard report(s) {', '.join(f'{i}/{n}' for i in missing)} missing")
    reports = [json.loads(found[n][i].read_text(encoding="utf-8")) for i in range(n)]
    rows = [row for report in reports for row in report["cases"]]
    inputs = [row["input"] for row in rows]
    if len(set(inputs)) != len(inputs):
        raise UsageError(f"{output_dir}: an input appears in more than one shard report")
    header = {key: reports[0].get(key) for key in ("tool", "task", "bundle", "input_dir", "output_dir")}
    header.update(
        shard=None,
        merged_from=[found[n][i].name for i in range(n)],
        seconds=max(report.get("seconds") or 0 for report in reports),
    )
    return write_report(output_dir, None, header, rows)


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a bundle task over every NIfTI, NRRD, MetaImage file and DICOM series below a folder.",
        epilog="Any other --key value pair overrides the task's config, as with `monai.bundle run` "
        "(e.g. --checkpoint my.pt --precision fp32); a key the config does not have is refused.\n"
        f"`{PROG} merge-reports OUT_DIR` joins the reports of --shard runs into report.csv/json.",
    )
    tasks = batch_tasks()
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--task", choices=tasks, help=f"a built-in task (default {_default_task(tasks)})")
    which.add_argument(
        "--bundle",
        type=Path,
        help="an outside MONAI bundle folder (Model Zoo layout, e.g. from `python -m monai.bundle download`); "
        "engine options: --precision auto|bf16|fp32 (fp32: the bundle's own network numerics), --fast false "
        "(the bundle's own pipeline)",
    )
    parser.add_argument("--input", required=True, type=Path, help="folder searched recursively (or one image file)")
    parser.add_argument("--output", required=True, type=Path, help="results mirror the input's folders here")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the config's: a GPU if present)")
    parser.add_argument("--workers", type=int, default=2, help="reader threads and writer threads (default 2)")
    parser.add_argument("--threads", type=int, help="torch compute threads (default: torch's choice)")
    parser.add_argument("--shard", help="i/n: run shard i (0-based) of n; auto: RANK/WORLD_SIZE (torchrun)")
    parser.add_argument("--overwrite", action="store_true", help="recompute outputs that are already complete")
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would run and what would be skipped; write nothing"
    )
    parser.add_argument(
        "--output-format",
        choices=OUTPUT_FORMATS,
        help="nifti: label maps in the input's format (DICOM inputs: NIfTI), the default; dicom: a DICOM input's "
        "result as a DICOM SEG + SR volume report (other inputs fail); both: label maps, and SEG + SR for DICOM inputs",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _default_task(tasks: list[str]) -> str:
    return runner.DEFAULT_TASK if runner.DEFAULT_TASK in tasks else tasks[0]


def _overrides(args: argparse.Namespace, rest: list[str]) -> dict[str, Any]:
    try:
        overrides = runner.parse_overrides(rest)
    except SystemExit as error:
        raise UsageError(str(error.code)) from None
    for key in ("dataset_dir", "output_dir"):
        if key in overrides:
            raise UsageError(f"--{key} is not a {PROG} option: use --input and --output")
    overrides["output_dir"] = str(args.output)
    if args.output_format:
        overrides["output_format"] = args.output_format
    if args.device:
        overrides["device"] = args.device
    elif args.shard == "auto" and "LOCAL_RANK" in os.environ:
        import torch

        if torch.cuda.is_available():  # one GPU per torchrun process
            overrides["device"] = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return overrides


def main(argv: list[str] | None = None) -> int:
    """`medimg-batch ...` and `medimg-batch merge-reports OUT_DIR`; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["merge-reports"]:
            return _merge_main(argv[1:])
        return _batch_main(argv)
    except (UsageError, PipelineError, runner.MetadataError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; finished outputs are kept and a rerun resumes", file=sys.stderr)
        return 130


def _merge_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} merge-reports", description=merge_reports.__doc__)
    parser.add_argument("output", type=Path, help="the OUT_DIR the shards wrote to")
    parser.add_argument("--shards", type=int, help="n, when reports of several splits are there")
    args = parser.parse_args(argv)
    csv_path = merge_reports(args.output, args.shards)
    counts = json.loads(csv_path.with_suffix(".json").read_text())["counts"]
    print(f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed; report: {csv_path}")
    return 1 if counts["failed"] else 0


def _batch_main(argv: list[str]) -> int:
    from monai_bundle.engines import WeightsError

    args, rest = _arguments().parse_known_args(argv)
    if not args.input.exists():
        raise UsageError(f"{args.input}: input not found")
    if args.output.resolve() == args.input.resolve():
        raise UsageError("--output must differ from --input (inputs are never modified)")
    if args.workers < 1:
        raise UsageError("--workers must be >= 1")
    shard = parse_shard(args.shard)
    if args.bundle is not None and not args.bundle.is_dir():
        raise UsageError(f"{args.bundle}: bundle folder not found")
    task = args.bundle or args.task or _default_task(batch_tasks())
    try:
        pipeline = Pipeline(task, _overrides(args, rest))
    except (UsageError, PipelineError):
        raise
    except Exception as error:
        reason = failure_reason(f"task {task}", error)
        raise UsageError(f"cannot build the pipeline from the configs: {reason}") from None
    for note in pipeline.notes:
        print(f"{PROG}: {pipeline.task}: {note}", file=sys.stderr)
    saver = pipeline.saver
    if saver is None:
        raise UsageError(f"task {pipeline.task}: its inference postprocessing has no SaveOnInputGridd to write results")
    cases = plan(args.input, args.output, saver.output_postfix, saver.output_ext, saver.output_format)
    if not cases:
        raise UsageError(f"{args.input}: no NIfTI, NRRD, MetaImage or DICOM images found")
    if shard:
        cases = [case for case in cases if shard_index(case.rel, shard[1]) == shard[0]]
    journal = Journal(args.output, shard).load()
    if args.dry_run:
        return _print_dry_run(BatchRun(pipeline, cases, journal, overwrite=args.overwrite).dry_run())

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        pipeline.load()
    except (WeightsError, OSError) as error:
        raise UsageError(str(error)) from None
    return _run(pipeline, cases, journal, args, shard)


def _print_dry_run(outcomes: list[Outcome]) -> int:
    for outcome in outcomes:
        case = outcome.case
        if outcome.status == "failed":
            print(f"would fail  {outcome.error}")
        else:
            verb = "would run " if outcome.status == "to run" else "would skip"
            print(
                f"{verb}  {case.rel} -> {case.out_rel}" + (f"  ({'; '.join(outcome.notes)})" if outcome.notes else "")
            )
    count = {status: sum(o.status == status for o in outcomes) for status in ("to run", "skipped", "failed")}
    print(
        f"dry run: {count['to run']} to run, {count['skipped']} to skip (outputs complete), "
        f"{count['failed']} failing header checks; nothing was written"
    )
    return 1 if count["failed"] else 0


def _run(
    pipeline: Pipeline, cases: list[Case], journal: Journal, args: argparse.Namespace, shard: tuple[int, int] | None
) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    started = time.time()
    bar = tqdm(
        total=len(cases), desc=pipeline.task, unit="image", file=sys.stderr, disable=args.quiet, dynamic_ncols=True
    )
    failed = 0

    def on_outcome(outcome: Outcome) -> None:
        nonlocal failed
        if outcome.status == "failed":
            failed += 1
            bar.set_postfix(failed=failed, refresh=False)
            bar.write(f"failed: {outcome.error}", file=sys.stderr)
        bar.update(1)

    run = BatchRun(pipeline, cases, journal, workers=args.workers, overwrite=args.overwrite, on_outcome=on_outcome)
    with logging_redirect_tqdm(), bar:
        outcomes = run.run()
    seconds = time.time() - started
    header = {
        "tool": PROG,
        "task": pipeline.task,
        "bundle": str(pipeline.declared.bundle) if pipeline.declared.bundle else None,
        "input_dir": str(args.input.resolve()),
        "output_dir": str(args.output.resolve()),
        "shard": f"{shard[0]}/{shard[1]}" if shard else None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(seconds, 1),
    }
    count = {status: sum(o.status == status for o in outcomes) for status in STATUSES}
    print(f"{count['done']} done, {count['skipped']} skipped, {count['failed']} failed in {seconds:.1f} s")
    try:
        csv_path = write_report(args.output, shard, header, [outcome.row() for outcome in outcomes], run.started)
    except OSError as error:
        print(f"{PROG}: cannot write the report: {error}", file=sys.stderr)
        return 1
    print(
        f"report: {csv_path}"
        + (f" ({count['failed']} input(s) failed: see the error column)" if count["failed"] else "")
    )
    return 1 if count["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
