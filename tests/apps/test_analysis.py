"""`python -m monai_bundle.apps.analysis --output-format`: what the Slicer module's child process writes for a DICOM
input, here the X-ray classifier's TID 1500 report beside predictions.csv (segmentation: tests/apps/test_batch.py)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import highdicom as hd
import numpy as np
import pytest
from dicom_edits import dciodvfy_errors
from PIL import Image
from pydicom.data import get_testdata_file

from monai_bundle.apps.analysis import PROGRESS_PREFIX

from conftest import REPO, run_cli


def _analysis(image, out, output_format: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "monai_bundle.apps.analysis", "--task", "xray_classification"]
    command += ["--input", str(image), "--output-dir", str(out), "--device", "cpu", "--output-format", output_format]
    env = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)


def _events(result) -> list[dict]:
    return [
        json.loads(line[len(PROGRESS_PREFIX) :])
        for line in result.stdout.splitlines()
        if line.startswith(PROGRESS_PREFIX)
    ]


def test_a_dicom_radiograph_gets_a_classification_report_beside_predictions_csv(tmp_path):
    source = get_testdata_file("RG1_UNCR.dcm", download=False)  # a real chest CR, from pydicom-data
    if source is None:
        pytest.skip("RG1_UNCR.dcm needs the pydicom-data package")
    (tmp_path / "in").mkdir()
    image = shutil.copy(source, tmp_path / "in" / "chest.dcm")
    out = tmp_path / "out"
    run_cli([sys.executable, "-m", "monai_bundle.apps.analysis", "--task", "xray_classification", "--input",
             str(image), "--output-dir", str(out), "--device", "cpu", "--output-format", "dicom"])  # fmt: skip
    report = out / "chest_sr.dcm"
    assert dciodvfy_errors(report) == []
    (row,) = csv.DictReader((out / "predictions.csv").open())
    group = hd.sr.srread(report).content.get_image_measurement_groups()[0]
    (probability,) = group.get_measurements()
    (evaluation,) = group.get_qualitative_evaluations()
    assert float(probability.value) == pytest.approx(float(row["probability"]), abs=1e-6)
    assert evaluation.value.meaning.lower() == row["predicted_class"]
    assert [p.name for p in (tmp_path / "in").iterdir()] == ["chest.dcm"]  # nothing beside the input


def test_a_picture_with_dicom_output_fails_with_one_line(tmp_path):
    picture = tmp_path / "chest.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(picture)
    result = _analysis(picture, tmp_path / "out", "dicom")
    assert result.returncode == 1, result.stderr[-3000:]
    (failed,) = [event for event in _events(result) if event["stage"] == "failed"]
    assert failed["error"].startswith(f"{picture}: output format 'dicom'"), failed
    assert not (tmp_path / "out" / "predictions.csv").exists()
