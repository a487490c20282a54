"""One label palette (monai_bundle.palette): Slicer's segments and the PNG overlays give a label the same colour."""

from __future__ import annotations

import subprocess
import sys

import pytest

from monai_bundle import palette
from monai_bundle.apps import runner
from monai_bundle.io import figures

from conftest import REPO

sys.path.insert(0, str(REPO / "MedImgExtension" / "MedImgAnalysis"))
from MedImgAnalysisLib import results, tasks  # noqa: E402

SEGMENTATION_TASKS = {
    name: task for name, task in tasks.builtin_tasks(runner.METADATA).items() if task.kind == "segmentation"
}


def test_slicer_segments_and_png_overlays_colour_each_label_alike(tmp_path):
    assert figures.label_colour is palette.label_colour
    assert set(SEGMENTATION_TASKS) == {"ct_segmentation", "mri_brain_segmentation"}
    for name, task in SEGMENTATION_TASKS.items():
        segments = results.collect(task, [str(tmp_path / "input_seg.nrrd")]).segments
        assert [s.label for s in segments] == sorted(task.labels)
        for segment in segments:
            assert segment.colour == figures.label_colour(segment.label, segment.name), (name, segment)
    lungs = next(
        s for s in results.collect(SEGMENTATION_TASKS["ct_segmentation"], ["seg.nrrd"]).segments if s.name == "lungs"
    )
    assert lungs.colour == palette.LABEL_COLOURS[0] == (0.90, 0.62, 0.00)  # Okabe-Ito orange, as Slicer showed it


def test_labels_past_the_palette_get_stable_distinct_colours():
    n = len(palette.LABEL_COLOURS)
    assert palette.label_colour(n + 1, "a") == palette.label_colour(n + 1, "a") != palette.label_colour(n + 1, "b")
    assert len({palette.label_colour(k) for k in range(1, n + 1)}) == n
    assert all(0.0 <= c <= 1.0 for c in palette.label_colour(200, "x"))


def test_the_palette_needs_only_the_standard_library():
    code = (
        "import sys; import monai_bundle.palette; "
        "assert not {'numpy', 'torch', 'monai', 'monai_bundle.io'} & set(sys.modules), 'palette imported more'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_a_source_checkout_palette_is_loaded_from_its_file(monkeypatch, tmp_path):
    """In Slicer, monai_bundle may be importable by the child only (PYTHONPATH): the palette file is loaded instead."""

    def no_bundle(name):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(results.importlib, "import_module", no_bundle)
    loaded = results.bundle_palette(REPO)
    assert loaded.LABEL_COLOURS == palette.LABEL_COLOURS
    assert loaded.label_colour(20, "x") == palette.label_colour(20, "x")
    with pytest.raises(ImportError):
        results.bundle_palette()
    with pytest.raises(ImportError, match="missing"):
        results.bundle_palette(tmp_path)
