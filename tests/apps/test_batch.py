"""`medimg-batch`: a folder of good and bad images, resume after kill -9, shards, dry run, overwrite.

The network is test_bundle.TINY's small UNet with random weights: its outputs are real label maps
on the inputs' grids, which is what these tests are about (learning is tested in test_bundle.py).
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from dicom_edits import dciodvfy_errors, edited_copy, jitter, seg_segments

from monai_bundle.apps import batch
from monai_bundle.io import (
    ImageReadError,
    check_same_grid,
    read_header,
    read_image,
    registry,
    write_image,
)
from monai_bundle.io.dicom_sr import read_volumes_ml

from conftest import REPO, run_cli
from helpers import PHANTOM_CLASSES, TINY
from helpers import write_dicom_series as _write_series
from helpers import write_dicom_slice as _write_slice

INFERENCE_KEYS = set(json.loads((REPO / "monai_bundle" / "configs" / "inference.json").read_text()))
TINY_INFERENCE = {key: value for key, value in TINY.items() if key.split("#")[0] in INFERENCE_KEYS}
"""TINY's overrides that the inference config has (the others are training keys: an unknown key is refused)."""


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """Randomly initialised weights of the TINY network, built from the inference config itself."""
    overrides = {key: batch.runner._literal(str(v)) for key, v in TINY_INFERENCE.items()}
    pipeline = batch.Pipeline("ct_segmentation", overrides)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    torch.save(pipeline.parser.get_parsed_content("network_def").state_dict(), path)
    return path


@pytest.fixture(scope="module")
def options(tiny_checkpoint) -> list[str]:
    """Command-line options every run here shares: the tiny network and its weights, no progress bar."""
    tiny = [x for k, v in TINY_INFERENCE.items() for x in (f"--{k}", str(v))]
    return ["--checkpoint", str(tiny_checkpoint), "--quiet", *tiny]


def _phantoms(phantom_dataset: Path) -> list[Path]:
    return sorted((phantom_dataset / "imagesTr").iterdir())


def _copy_phantoms(phantom_dataset: Path, folder: Path, names: list[str]) -> list[Path]:
    paths = []
    for source, name in zip(_phantoms(phantom_dataset), names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        paths.append(Path(shutil.copy(source, folder / name)))
    return paths


def _report(out: Path, name: str = "report") -> dict[str, dict]:
    rows = json.loads((out / f"{name}.json").read_text())["cases"]
    assert (out / f"{name}.csv").read_text().count("\n") == len(rows) + 1
    return {row["input"]: row for row in rows}


def _assert_valid_output(source: Path, output: Path) -> None:
    shape, affine, _ = read_header(output)
    check_same_grid(str(source), shape, affine)
    assert read_image(output, ndim=3).array.dtype == np.uint8


def _results(out: Path) -> list[Path]:
    """Result files below `out`, not counting anything inside write_image's hidden temp folders."""
    return [p for p in out.rglob("*_seg.nii.gz") if not any(part.startswith(".") for part in p.relative_to(out).parts)]


def _complete_results(out: Path) -> list[Path]:
    """Result label maps whose quality file was written too: what a resumed run leaves alone."""
    return [p for p in _results(out) if p.with_name(p.name.replace("_seg.nii.gz", "_quality.json")).is_file()]


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp-" in p.name]


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------- bad input


def _nifti_bytes(array: np.ndarray, affine=None) -> bytes:
    return nib.Nifti1Image(array, np.eye(4) if affine is None else affine).to_bytes()


def _bad_corpus(folder: Path, good: Path) -> dict[str, str]:
    """Write one input per bad case listed in the issue; return {relative path: expected problem}."""
    volume = read_image(good)
    small = np.zeros((8, 8, 8), np.int16)
    content = gzip.compress(_nifti_bytes(small))
    expected = {}

    def put(name: str, data: bytes, problem: str) -> None:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        expected[name] = problem

    put("bad/zero_bytes.nii.gz", b"", "empty file (0 bytes)")
    put("bad/truncated.nii.gz", content[:-30], "truncated")
    crc = bytearray(content)
    crc[-6] ^= 0xFF
    put("bad/bad_crc.nii.gz", bytes(crc), "gzip CRC check failed")
    put("bad/wrong_extension.nii.gz", _nifti_bytes(small), "not a gzip-compressed file")
    put("bad/not_an_image.nii", b"patient notes, not an image\n" * 30, "not a NIfTI file")
    put("bad/four_d.nii.gz", gzip.compress(_nifti_bytes(np.zeros((8, 8, 8, 2), np.int16))), "is 4D")
    put("bad/two_d.nii.gz", gzip.compress(_nifti_bytes(np.asarray(volume.array[:, :, 20]))), "is 2D")
    nan = np.array(volume.array, dtype=np.float32)
    nan[3, 4, 5], nan[6, 7, 8] = np.nan, np.inf
    put("bad/nan_inf.nii.gz", gzip.compress(_nifti_bytes(nan, volume.affine)), "contains 2 NaN/Inf voxels")
    huge = nib.Nifti2Header()
    huge.set_data_dtype(np.int16)
    huge.set_data_shape((100000, 100000, 100000))
    put("bad/absurd_header.nii", huge.binaryblock + b"\0" * 68, "more than the limit")
    singular = nib.Nifti1Header()  # voxel axes 0 and 1 parallel: no orthonormal direction can be made of it
    singular.set_data_shape(small.shape)
    singular.set_data_dtype(np.int16)
    singular.set_sform(np.array([[2.0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]]), code=1)
    put("bad/singular_direction.nii", nib.Nifti1Image(small, None, header=singular).to_bytes(), "singular")
    _write_series(folder / "dicom" / "missing_slice", n=6, skip=(3,))
    expected["dicom/missing_slice"] = "missing slice(s)"
    put("bad/unreadable.nii.gz", content, "permission denied")
    (folder / "full").mkdir()
    shutil.copy(good, folder / "full" / "disk_full.nii.gz")
    expected["full/disk_full.nii.gz"] = "No space left on device"
    return expected


def test_bad_inputs_get_one_line_each_and_good_ones_valid_outputs(
    phantom_dataset, options, tmp_path, monkeypatch, capsys
):
    inputs, out = tmp_path / "in", tmp_path / "out"
    good = _copy_phantoms(phantom_dataset, inputs, ["a.nii.gz", "nested/deeper/b.nii.gz"])
    volume = read_image(good[0])
    write_image(volume.array, volume.affine, inputs / "nested" / "c.nrrd")
    sheared = volume.affine.copy()
    sheared[0, 1] = 0.7  # a gantry-tilt-like shear: readable, processed on its own grid, with a note
    write_image(volume.array, sheared, inputs / "sheared.nii.gz")
    two_series = _write_series(inputs / "dicom" / "two_series", n=6, series_uid="1.2.3.4.5")
    for k in range(3):
        _write_slice(two_series / f"other{k}", k, series_uid="1.2.3.4.6")
    expected_bad = _bad_corpus(inputs, good[0])
    good_inputs = {
        "a.nii.gz": "a_seg.nii.gz",
        "nested/deeper/b.nii.gz": "nested/deeper/b_seg.nii.gz",
        "nested/c.nrrd": "nested/c_seg.nrrd",
        "sheared.nii.gz": "sheared_seg.nii.gz",
        "dicom/two_series": "dicom/two_series_seg.nii.gz",
    }

    unreadable = inputs / "bad" / "unreadable.nii.gz"
    unreadable.chmod(0)
    real_open, real_replace = open, os.replace

    def open_as_non_root(name, *args, **kwargs):  # tests run as root, whom chmod does not stop
        if Path(name) == unreadable:
            raise PermissionError(errno.EACCES, "Permission denied", str(name))
        return real_open(name, *args, **kwargs)

    def disk_full_in(folder: Path):
        def replace(src, dst, *args, **kwargs):
            if Path(dst).parent == folder:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_replace(src, dst, *args, **kwargs)

        return replace

    monkeypatch.setattr(registry, "open", open_as_non_root, raising=False)
    monkeypatch.setattr(os, "replace", disk_full_in(out / "full"))
    before = _snapshot(inputs)

    assert batch.main(["--input", str(inputs), "--output", str(out), *options]) == 1

    report = _report(out)
    assert set(report) == set(good_inputs) | set(expected_bad)
    for rel, out_rel in good_inputs.items():
        row = report[rel]
        assert (row["status"], row["error"], row["output"]) == ("done", "", out_rel), row
        _assert_valid_output(inputs / rel, out / out_rel)
        shape, affine, _ = read_header(inputs / rel)
        volumes = [row[f"volume_ml_{name}"] for name in PHANTOM_CLASSES[1:]]
        assert min(volumes) >= 0 and sum(volumes) <= np.prod(shape) * abs(np.linalg.det(affine[:3, :3])) / 1000
    assert "other series ignored" in report["dicom/two_series"]["note"]
    assert "non-orthonormal" in report["sheared.nii.gz"]["note"]
    for rel, problem in expected_bad.items():
        row = report[rel]
        assert row["status"] == "failed" and row["output"] == "", row
        assert row["error"].startswith(f"{inputs / rel}: ") and problem in row["error"], row
        assert "\n" not in row["error"] and "Traceback" not in row["error"]
    # nothing partial: exactly the good outputs (each with its quality flag), the reports and the resume journal
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    flags = {out_rel.split("_seg.")[0] + "_quality.json" for out_rel in good_inputs.values()}
    assert written == {*good_inputs.values(), *flags, "report.csv", "report.json", ".medimg-batch/journal.jsonl"}
    assert all(report[rel]["quality"] in ("ok", "review") for rel in good_inputs)
    assert _leftovers(out) == []
    assert _snapshot(inputs) == before  # inputs are never modified
    stdout = capsys.readouterr().out
    assert f"5 done, 0 skipped, {len(expected_bad)} failed in " in stdout


def test_failure_reasons_are_one_line_and_name_the_file():
    try:
        try:
            raise ValueError("first line\nsecond line")
        except ValueError as error:
            raise RuntimeError("applying transform <X>") from error
    except RuntimeError as wrapped:
        assert batch.failure_reason("/in/x.nii", wrapped) == "/in/x.nii: ValueError: first line"
    wrapped = RuntimeError("applying transform <LoadImaged>")
    wrapped.__cause__ = ImageReadError("/in/y.nii", "truncated")
    assert batch.failure_reason("/in/y.nii", wrapped) == "/in/y.nii: truncated"


# ---------------------------------------------------------------- kill -9 and resume


def test_a_run_killed_with_sigkill_resumes_without_redoing_finished_work(phantom_dataset, options, tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    names = [f"{'ab'[i % 2]}/case{i:02d}.nii.gz" for i in range(12)]
    sources = _copy_phantoms(phantom_dataset, inputs, names)
    command = [
        sys.executable,
        "-m",
        "monai_bundle.apps.batch",
        "--input",
        str(inputs),
        "--output",
        str(out),
        "--device",
        "cpu",
        *options,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    child = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not _complete_results(out):
        assert child.poll() is None, child.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no output appeared"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stderr.close()
    finished = {p: p.stat().st_mtime_ns for p in _complete_results(out)}  # a label map alone is redone
    assert 0 < len(finished) < len(names), "the run should have been killed mid-way"
    assert not (out / "report.csv").exists()
    for output in finished:  # whatever is there is complete (written to a temp name and renamed)
        _assert_valid_output(inputs / output.relative_to(out).as_posix().replace("_seg", ""), output)
    # what a kill during a write leaves (when the timing above did not produce one): a temp folder
    cut = out / "b" / ".case11_seg.nii.gz.tmp-999999-x" / "case11_seg.nii.gz"
    cut.parent.mkdir(parents=True, exist_ok=True)
    cut.write_bytes(b"\x1f\x8b half a file")

    result = run_cli(command, timeout=600)
    assert f"{len(names) - len(finished)} done, {len(finished)} skipped, 0 failed" in result.stdout
    report = _report(out)
    for name, source in zip(names, sources):
        output = out / name.replace(".nii.gz", "_seg.nii.gz")
        _assert_valid_output(source, output)
        if output in finished:
            assert report[name]["status"] == "skipped" and output.stat().st_mtime_ns == finished[output]
        else:
            assert report[name]["status"] == "done"
    assert _leftovers(out) == []


# ---------------------------------------------------------------- shards, dry run, overwrite


def test_shards_cover_every_input_once_and_merge_into_one_report(phantom_dataset, options, tmp_path, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    names = [f"s{i}/case{i}.nii.gz" for i in range(7)]
    _copy_phantoms(phantom_dataset, inputs, names)
    n = 3
    for i in range(n):
        assert batch.main(["--input", str(inputs), "--output", str(out), "--shard", f"{i}/{n}", *options]) == 0
    shards = [_report(out, f"report-shard-{i}-of-{n}") for i in range(n)]
    assert sorted(rel for shard in shards for rel in shard) == sorted(names)  # each input exactly once
    assert all(batch.shard_index(rel, n) == i for i, shard in enumerate(shards) for rel in shard)
    assert not (out / "report.csv").exists()

    assert batch.main(["merge-reports", str(out)]) == 0
    merged = _report(out)
    assert sorted(merged) == sorted(names) and {row["status"] for row in merged.values()} == {"done"}
    assert f"{len(names)} done, 0 skipped, 0 failed; report: {out / 'report.csv'}" in capsys.readouterr().out
    (out / f"report-shard-1-of-{n}.json").unlink()
    assert batch.main(["merge-reports", str(out)]) == 2
    assert f"shard report(s) 1/{n} missing" in capsys.readouterr().err


def test_shard_assignment_is_stable_and_arguments_are_checked():
    names = [f"patient{i}/ct.nii.gz" for i in range(50)]
    before = {name: batch.shard_index(name, 4) for name in names}
    assert set(before.values()) == {0, 1, 2, 3}
    assert {name: batch.shard_index(name, 4) for name in names + ["new/ct.nii.gz"]}.items() >= before.items()
    assert batch.parse_shard("auto", {"RANK": "1", "WORLD_SIZE": "2"}) == (1, 2)
    assert batch.parse_shard("auto", {}) == (0, 1)
    assert batch.parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "-1/4", "1-4", "a/b"):
        with pytest.raises(batch.UsageError):
            batch.parse_shard(bad)
    assert batch.main(["--input", "/no/such/folder", "--output", "/tmp/x", "--shard", "0/2"]) == 2


def test_dry_run_writes_nothing_and_reruns_skip_or_overwrite(phantom_dataset, options, tmp_path, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    names = ["x.nii.gz", "sub/y.nii.gz", "sub/z.nii.gz"]
    sources = _copy_phantoms(phantom_dataset, inputs, names)
    outputs = [out / name.replace(".nii.gz", "_seg.nii.gz") for name in names]

    dry = run_cli(
        [
            sys.executable,
            str(REPO / "scripts" / "batch.py"),
            "--input",
            str(inputs),
            "--output",
            str(out),
            "--dry-run",
            *options,
        ]
    )
    assert dry.stdout.count("would run ") == 3 and "nothing was written" in dry.stdout
    assert not out.exists()

    assert batch.main(["--input", str(inputs), "--output", str(out), *options]) == 0
    first = {p: p.stat().st_mtime_ns for p in outputs}
    volumes = {rel: {k: v for k, v in row.items() if k.startswith("volume_ml_")} for rel, row in _report(out).items()}
    capsys.readouterr()
    assert batch.main(["--input", str(inputs), "--output", str(out), "--dry-run", *options]) == 0
    assert capsys.readouterr().out.count("would skip") == 3

    time.sleep(0.01)
    os.utime(sources[1])  # a changed input is redone, the others are skipped with their recorded results
    assert batch.main(["--input", str(inputs), "--output", str(out), *options]) == 0
    report = _report(out)
    assert [report[name]["status"] for name in names] == ["skipped", "done", "skipped"]
    assert all({k: v for k, v in report[rel].items() if k.startswith("volume_ml_")} == volumes[rel] for rel in names)
    assert outputs[0].stat().st_mtime_ns == first[outputs[0]] and outputs[1].stat().st_mtime_ns > first[outputs[1]]

    assert batch.main(["--input", str(inputs), "--output", str(out), "--overwrite", *options]) == 0
    assert {row["status"] for row in _report(out).values()} == {"done"}
    assert all(p.stat().st_mtime_ns > first[p] for p in outputs)
    for source, output in zip(sources, outputs):
        _assert_valid_output(source, output)

    # a run killed after writing a label map but before its quality file: that input is done again
    quality, stale = out / "x_quality.json", out / ".x_quality.json.tmp-killed"
    quality.unlink()
    stale.write_text("{")
    assert batch.main(["--input", str(inputs), "--output", str(out), *options]) == 0
    assert [_report(out)[name]["status"] for name in names] == ["done", "skipped", "skipped"]
    assert json.loads(quality.read_text())["quality"] in ("ok", "review") and _leftovers(out) == []


def test_journal_ignores_a_line_cut_short_by_a_crash(tmp_path):
    journal = batch.Journal(tmp_path, None)
    journal.append({"input": "a.nii", "finished": 1.0, "results": {}})
    with open(journal.path, "a") as file:
        file.write('{"input": "b.nii", "fini')  # killed mid-line
    journal.append({"input": "c.nii", "finished": 2.0, "results": {}})
    assert sorted(batch.Journal(tmp_path, None).load().entries) == ["a.nii", "c.nii"]


def test_plan_mirrors_folders_and_refuses_output_name_clashes(tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "in" / "results"
    for name in ("p1/ct.nii.gz", "p2/ct.nrrd", "p2/ct.nhdr", "results/old_seg.nii.gz"):
        write_image(np.zeros((4, 4, 4), np.int16), np.eye(4), inputs / name)
    cases = batch.plan(inputs, out, "seg", None)
    assert [(c.rel, c.out_rel) for c in cases] == [
        ("p1/ct.nii.gz", "p1/ct_seg.nii.gz"),
        ("p2/ct.nhdr", "p2/ct_seg.nrrd"),
        ("p2/ct.nrrd", "p2/ct_seg.nrrd"),
    ]
    assert [bool(c.problem) for c in cases] == [False, False, True]  # outputs inside the input folder are not inputs
    assert "is already the output of p2/ct.nhdr" in cases[2].problem


# ---------------------------------------------------------------- DICOM SEG and SR out


def _seg_and_sr_match_the_label_map(series: Path, out: Path, row: dict, stem: str) -> None:
    """SEG and SR pass dciodvfy; the SEG decodes to the NIfTI label map voxel for voxel; SR volumes are the CSV's."""
    seg, sr, label_map = out / f"{stem}_seg.dcm", out / f"{stem}_sr.dcm", out / f"{stem}_seg.nii.gz"
    assert dciodvfy_errors(seg) == [] and dciodvfy_errors(sr) == []
    expected = np.asarray(read_image(label_map, ndim=3).array)
    assert expected.any()
    np.testing.assert_array_equal(seg_segments(seg, series), expected)  # segment n is label n: all labels listed
    volumes = read_volumes_ml(sr)
    assert sorted(volumes) == sorted(PHANTOM_CLASSES[1:])
    for name, ml in volumes.items():
        assert ml == pytest.approx(float(row[f"volume_ml_{name}"]), abs=0.05), name  # the CSV rounds to 0.1 mL


def test_dicom_series_get_seg_and_sr_beside_the_label_map_and_resume(phantom_dataset, options, tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    series = edited_copy(_write_series(tmp_path / "ct"), inputs / "ct", jitter(0.08))
    _copy_phantoms(phantom_dataset, inputs, ["a.nii.gz"])
    before = _snapshot(inputs)
    default = tmp_path / "default"
    assert batch.main(["--input", str(inputs), "--output", str(default), *options]) == 0

    assert batch.main(["--input", str(inputs), "--output", str(out), "--output-format", "both", *options]) == 0
    report = _report(out)
    assert report["ct"]["output"] == "ct_seg.nii.gz; ct_seg.dcm; ct_sr.dcm"
    assert report["a.nii.gz"]["output"] == "a_seg.nii.gz"  # a NIfTI input: its label map only
    assert "slice positions regularised" in report["ct"]["note"]
    _seg_and_sr_match_the_label_map(series, out, report["ct"], "ct")
    for name in ("ct_seg.nii.gz", "a_seg.nii.gz"):  # the label maps are the default run's
        ours, theirs = read_image(out / name), read_image(default / name)
        np.testing.assert_array_equal(ours.array, theirs.array)
        np.testing.assert_array_equal(ours.affine, theirs.affine)
    drop = {"output", "read_s", "infer_s", "write_s"}
    assert [{k: v for k, v in row.items() if k not in drop} for row in _report(default).values()] == [
        {k: v for k, v in row.items() if k not in drop} for row in report.values()
    ]
    assert _snapshot(inputs) == before  # nothing written into the input folder

    assert batch.main(["--input", str(inputs), "--output", str(out), "--output-format", "both", *options]) == 0
    assert {row["status"] for row in _report(out).values()} == {"skipped"}  # SEG and SR accepted as complete
    (out / "ct_sr.dcm").write_bytes(b"not a report")
    assert batch.main(["--input", str(inputs), "--output", str(out), "--output-format", "both", *options]) == 0
    report = _report(out)
    assert report["ct"]["status"] == "done" and "out of date or invalid" in report["ct"]["note"]
    _seg_and_sr_match_the_label_map(series, out, report["ct"], "ct")


def test_dicom_only_output_fails_a_nifti_input_with_one_line_and_carries_on(phantom_dataset, options, tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    series = _write_series(inputs / "ct")
    _copy_phantoms(phantom_dataset, inputs, ["a.nii.gz"])
    assert batch.main(["--input", str(inputs), "--output", str(out), "--output-format", "dicom", *options]) == 1
    report = _report(out)
    failed = report["a.nii.gz"]
    assert failed["status"] == "failed" and failed["output"] == ""
    assert failed["error"].startswith(f"{inputs / 'a.nii.gz'}: output format 'dicom'") and "\n" not in failed["error"]
    assert report["ct"]["status"] == "done" and report["ct"]["output"] == "ct_seg.dcm; ct_sr.dcm"
    written = {p.name for p in out.iterdir() if p.is_file()}
    assert written == {"ct_seg.dcm", "ct_sr.dcm", "ct_quality.json", "report.csv", "report.json"}
    volumes = read_volumes_ml(out / "ct_sr.dcm")
    assert {f"volume_ml_{k}": round(v, 1) for k, v in volumes.items()} == {
        k: v for k, v in report["ct"].items() if k.startswith("volume_ml_")
    }
    segments = seg_segments(out / "ct_seg.dcm", series)
    voxel_ml = abs(np.linalg.det(read_image(series).affine[:3, :3])) / 1000
    assert {name: np.count_nonzero(segments == k) * voxel_ml for k, name in enumerate(PHANTOM_CLASSES) if k} == (
        pytest.approx(volumes, abs=1e-3)
    )
    assert batch.main(["--input", str(inputs), "--output", str(out), "--output-format", "dicom", *options]) == 1
    assert _report(out)["ct"]["status"] == "skipped"


@pytest.mark.realdata
@pytest.mark.slow
def test_the_real_ct_series_gets_seg_and_sr_that_round_trip(options, tmp_path):
    from monai_bundle.data import sample_data

    inputs, out = tmp_path / "in", tmp_path / "out"
    series = edited_copy(Path(sample_data.fetch("ts_ct_dicom")), inputs / "ts_ct", jitter(0.08))
    assert batch.main(["--input", str(inputs), "--output", str(out), "--output-format", "both", *options]) == 0
    row = _report(out)["ts_ct"]
    assert row["status"] == "done" and "slice positions regularised" in row["note"], row
    _seg_and_sr_match_the_label_map(series, out, row, "ts_ct")


def test_a_key_the_config_lacks_is_refused_not_taken_as_an_override(tmp_path, capsys):
    """`--config_file zoo.json` once ran the built-in task silently; now every unknown key stops the run (exit 2)."""
    (tmp_path / "in").mkdir()
    assert batch.main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--config_file", "z"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("medimg-batch: unknown override --config_file: ") and line.endswith("has no such key")
    assert not (tmp_path / "out").exists()
