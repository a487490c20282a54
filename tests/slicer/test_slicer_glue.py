"""MedImgAnalysis.py against stand-ins for slicer, qt and vtk that check every call against SLICER_API.md.

Stand-ins replace Slicer itself and nothing else: the child process, the bundle and the files are real.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from slicer_stand_in import (
    API_LIST,
    MODULE_DIR,
    Recorder,
    check_call,
    install_stand_ins,
    ui_stand_in,
)

# isort: split  (slicer_stand_in puts MedImgAnalysisLib's folder on sys.path)
from MedImgAnalysisLib.analysis import AnalysisRun
from MedImgAnalysisLib.results import Results

MODULE_FILE = MODULE_DIR / "MedImgAnalysis.py"


class StorageNode(Recorder):
    """The stand-in for vtkMRMLVolumeArchetypeStorageNode: writes the volume's array as a real NRRD."""

    def __init__(self, volume):
        super().__init__("storage", SetFileName=lambda path: setattr(self, "path", path), WriteData=self.write)
        self.volume, self.path = volume, None

    def write(self, node):
        image = sitk.GetImageFromArray(np.ascontiguousarray(node.array.T))
        image.SetSpacing((2.0, 2.0, 2.0))
        sitk.WriteImage(image, self.path, useCompression=False)
        return 1


def volume_node(array, transform=None, node_id="vtkMRMLScalarVolumeNode1", colour=False):
    """A scalar volume node of `array` [i, j, k]; `colour`: a vector volume (a colour picture) instead."""
    image = Recorder(
        "imageData", GetDimensions=array.shape[:3], GetScalarRange=(float(array.min()), float(array.max()))
    )
    classes = {"vtkMRMLScalarVolumeNode", "vtkMRMLVolumeNode"} | ({"vtkMRMLVectorVolumeNode"} if colour else set())
    node = Recorder(
        "volume",
        GetImageData=image,
        GetName="CT",
        GetAttribute=None,
        GetParentTransformNode=transform,
        GetTransformNodeID="vtkMRMLLinearTransformNode1" if transform else None,
        GetID=node_id,
        IsA=lambda name: name in classes,
    )
    node.array = array
    return node


def scene_stand_in(nodes=(), **values):
    by_id = {node.GetID(): node for node in nodes}
    sh = Recorder("subjectHierarchy", GetItemByDataNode=lambda node: 7, GetItemParent=lambda item: 3)
    defaults = {
        "GetNodeByID": lambda node_id: by_id.get(node_id),
        "GetSubjectHierarchyNode": sh,
        "GetFirstNodeByClass": lambda cls: None,
        "GetFirstNodeByName": lambda name: None,
    }
    scene = Recorder(
        "scene",
        props={"StartCloseEvent": "StartCloseEvent", "EndCloseEvent": "EndCloseEvent"},
        **{**defaults, **values},
    )
    scene.by_id, scene.sh = by_id, sh
    return scene


def util_stand_in(tmp_path, **more):
    return {
        "loadUI": lambda path: Recorder("uiWidget"),
        "childWidgetVariables": lambda widget: ui_stand_in(),
        "tempDirectory": lambda key="", tempDir=None, includeDateTime=True: str(tmp_path),
        **more,
    }


def test_every_slicer_api_the_module_calls_is_listed_with_its_signature():
    source, listed = MODULE_FILE.read_text(), API_LIST.read_text()
    used = set(re.findall(r"slicer\.util\.(\w+)\(", source)) | set(re.findall(r"slicer\.mrmlScene\.(\w+)\(", source))
    used |= set(re.findall(r"\.([A-Z]\w+)\(", source)) - {"QTimer", "PyTorchUtilsLogic"}
    signatures = listed.split("```signatures", 1)[1].split("```", 1)[0]
    missing = sorted(name for name in used if not re.search(rf"^{name}\(", signatures, re.M))
    assert not missing, f"add these to {API_LIST.name} after checking them in Slicer's source: {missing}"


def test_the_stand_in_rejects_unknown_names_and_wrong_arity():
    check_call("loadVolume", ("a.nrrd", {"name": "x"}), {})
    with pytest.raises(AssertionError, match="not in SLICER_API.md"):
        check_call("loadVolumes", ("a.nrrd",), {})
    with pytest.raises(AssertionError, match="matches none"):
        check_call("SetItemParent", (1,), {})
    with pytest.raises(AssertionError, match="matches none"):
        check_call("pip_install", (["x"],), {"upgrade": True})  # Slicer 5.10 takes the requirements only


def test_the_library_imports_without_slicer():
    code = (
        f"import sys; sys.path.insert(0, {str(MODULE_DIR)!r}); import MedImgAnalysisLib.analysis, "
        "MedImgAnalysisLib.dependencies, MedImgAnalysisLib.environment; "
        "assert not {'slicer', 'qt', 'vtk', 'ctk'} & set(sys.modules), 'Slicer module imported'; "
        "assert not {'monai_bundle', 'torch', 'numpy'} & set(sys.modules), 'bundle or torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def make_widget(module):
    widget = module.MedImgAnalysisWidget()
    widget.setup()
    return widget


def test_setup_lists_task_titles_and_refuses_an_old_slicer(monkeypatch, tmp_path):
    module = install_stand_ins(monkeypatch, scene_stand_in(), util_stand_in(tmp_path))
    widget = make_widget(module)
    items = dict(widget.ui.taskComboBox.items)
    assert items["CT segmentation"] == "ct_segmentation" and items["X-ray classification"] == "xray_classification"
    assert widget.unusable == "" and widget.ui.statusLabel.__dict__.get("text", "") == ""
    widget._parameterNode.inputVolume = volume_node(np.zeros((8, 8, 8)))
    widget.updateButton()
    assert widget.ui.analyzeButton.enabled and widget.ui.analyzeButton.text == "Analyze"

    old = install_stand_ins(monkeypatch, scene_stand_in(), util_stand_in(tmp_path), version=(5, 8))
    widget = make_widget(old)
    widget._parameterNode.inputVolume = volume_node(np.zeros((8, 8, 8)))
    widget.updateButton()
    assert "5.10 or later" in widget.ui.statusLabel.text and not widget.ui.analyzeButton.enabled


def test_dependency_install_success_failure_and_refusal(monkeypatch, tmp_path):
    installs = []
    state = {"missing": ["monai"], "confirm": True, "fail": False}

    def pip_install(requirements):
        installs.append(requirements)
        if state["fail"]:
            raise RuntimeError("pip: network unreachable")
        state["missing"] = []

    module = install_stand_ins(
        monkeypatch,
        scene_stand_in(),
        util_stand_in(tmp_path, pip_install=pip_install, confirmOkCancelDisplay=lambda text, **k: state["confirm"]),
    )
    monkeypatch.setattr(module.dependencies, "missing", lambda *a: list(state["missing"]))
    widget = make_widget(module)
    widget._parameterNode.inputVolume = volume_node(np.zeros((8, 8, 8)))

    assert widget.installDependencies() is True
    assert installs == [["--upgrade", "monai>=1.5.1"]] and not widget.installing and widget.ui.analyzeButton.enabled

    state.update(missing=["monai"], fail=True)
    assert widget.installDependencies() is False  # no exception escapes
    assert "Installing Python packages failed: pip: network unreachable" in widget.ui.statusLabel.text
    assert not widget.installing and widget.ui.analyzeButton.enabled

    state.update(confirm=False, fail=False)
    assert widget.installDependencies() is False
    assert "were not installed" in widget.ui.statusLabel.text


def test_torch_goes_through_the_pytorch_extension_with_a_version_floor(monkeypatch, tmp_path):
    torch_calls = []
    pytorch = type(sys)("PyTorchUtils")
    pytorch.PyTorchUtilsLogic = lambda: Recorder("pytorchLogic", installTorch=lambda **k: torch_calls.append(k))
    monkeypatch.setitem(sys.modules, "PyTorchUtils", pytorch)
    missing = [["torch"], []]
    module = install_stand_ins(
        monkeypatch,
        scene_stand_in(),
        util_stand_in(tmp_path, confirmOkCancelDisplay=lambda text, **k: True),
        modules={"pytorchutils": object()},
    )
    monkeypatch.setattr(module.dependencies, "missing", lambda *a: missing.pop(0))
    assert module.MedImgAnalysisLogic().ensureDependencies() is True
    assert torch_calls == [{"askConfirmation": False, "torchVersionRequirement": ">=2.8"}]


class ScriptedRun(AnalysisRun):
    """A real AnalysisRun whose child is a small script (not the bundle): for the widget's run paths."""

    script = ""

    def command(self, input_path, output_dir):
        return [sys.executable, "-c", self.script]


def scripted(monkeypatch, module, script, tmp_path):
    def start(volume, task, device=None):
        run = ScriptedRun(
            module.MedImgAnalysisLogic().tasks[task],
            lambda path: path.write_text("x"),
            sys.executable,
            device,
            None,
            tmp_path,
        )
        run.script = script
        run.start()
        return run

    monkeypatch.setattr(module.MedImgAnalysisLogic, "startAnalysis", lambda self, *a: start(*a))


def poll_until(widget, states, timeout=30):
    deadline = time.monotonic() + timeout
    while widget.run.state not in states and time.monotonic() < deadline:
        widget.onPoll()
        time.sleep(0.05)
    widget.onPoll()
    return widget.run.state


def test_cancel_returns_at_once_locks_the_panel_and_ends_cancelled(monkeypatch, tmp_path):
    volume = volume_node(np.zeros((8, 8, 8)))
    module = install_stand_ins(monkeypatch, scene_stand_in([volume]), util_stand_in(tmp_path))
    monkeypatch.setattr(module.dependencies, "missing", lambda *a: [])
    scripted(
        monkeypatch,
        module,
        'import time; print(\'MEDIMG-PROGRESS {"stage": "running", "fraction": 0.1}\', flush=True); time.sleep(60)',
        tmp_path,
    )
    widget = make_widget(module)
    widget._parameterNode.inputVolume = volume
    widget.onAnalyzeButton()
    assert widget.run.state == "running" and widget.ui.analyzeButton.text == "Cancel"
    assert not widget.ui.inputsCollapsibleButton.enabled  # no edits mid-run
    widget.onPoll()
    assert widget.ui.progressBar.maximum == 0  # busy indicator, not 10% for the whole run
    started = time.monotonic()
    widget.onAnalyzeButton()
    assert time.monotonic() - started < 0.5 and widget.run.state == "cancelling"
    assert not widget.ui.analyzeButton.enabled  # a click now must not start a new run
    assert poll_until(widget, ("cancelled",), timeout=5) == "cancelled"
    assert widget.ui.statusLabel.text == "Cancelled." and widget.ui.analyzeButton.text == "Analyze"
    assert widget.ui.inputsCollapsibleButton.enabled and not widget.run.workspace.path.exists()


def test_a_deleted_input_fails_with_a_message_and_imports_nothing(monkeypatch, tmp_path):
    volume = volume_node(np.zeros((8, 8, 8)))
    scene = scene_stand_in([volume])
    module = install_stand_ins(monkeypatch, scene, util_stand_in(tmp_path))
    monkeypatch.setattr(module.dependencies, "missing", lambda *a: [])
    scripted(
        monkeypatch,
        module,
        'import time; time.sleep(0.5); print(\'MEDIMG-PROGRESS {"stage": "done", "outputs": []}\')',
        tmp_path,
    )
    widget = make_widget(module)
    widget._parameterNode.inputVolume = volume
    widget.ui.taskComboBox.setCurrentIndex(widget.ui.taskComboBox.findData("ct_denoising"))
    widget.onAnalyzeButton()
    scene.by_id.clear()  # the user deletes the input while it runs
    assert poll_until(widget, ("failed", "done")) == "failed"
    assert "deleted" in widget.ui.statusLabel.text and not widget.run.workspace.path.exists()


def test_a_real_segmentation_run_through_the_widget(monkeypatch, tmp_path):
    ct = np.full((48, 48, 40), -1000, np.int16)
    ct[8:40, 8:40, 4:36] = 40
    volume = volume_node(ct, transform=Recorder("transform", IsLinear=1))
    by_id = {}

    def segment(segment_id):
        return by_id.setdefault(segment_id, Recorder(segment_id))

    segments = Recorder(
        "vtkSegmentation",
        GetSegment=segment,  # as if the phantom had no aorta
        GetSegmentIdBySegmentName=lambda name: "" if name == "aorta" else f"{name}_id",
    )
    colors, segmentation = Recorder("colors", GetID="colors1"), Recorder("segmentation", GetSegmentation=segments)
    scene = scene_stand_in(
        [volume],
        CreateNodeByClass=lambda cls: StorageNode(volume),
        AddNewNodeByClass=lambda cls, name="": {
            "vtkMRMLColorTableNode": colors,
            "vtkMRMLSegmentationNode": segmentation,
        }[cls],
    )
    loaded = []
    util = util_stand_in(tmp_path, loadLabelVolume=lambda path, properties={}: loaded.append(path) or Recorder("lm"))
    module = install_stand_ins(monkeypatch, scene, util)
    monkeypatch.setattr(module.dependencies, "missing", lambda *a: [])
    monkeypatch.setattr(module, "python_slicer", lambda: sys.executable)
    widget = make_widget(module)
    widget.enter()  # opening the module starts the worker (device: Automatic), so a click does not wait for imports
    prestarted = widget.logic.worker.process
    assert prestarted.running
    widget._parameterNode.inputVolume = volume
    widget.onInputChanged(volume)
    assert widget.ui.taskComboBox.currentData == "ct_segmentation"
    widget.onAnalyzeButton()
    assert poll_until(widget, ("done", "failed"), timeout=300) == "done", (widget.run.error, widget.run.log[-10:])
    assert widget.ui.statusLabel.text.startswith("Done in") and widget.run.workspace.path.parent == tmp_path
    names = [args[1] for args in colors.called("SetColor")]
    assert names == ["background", "lungs", "heart", "aorta", "liver", "spleen", "kidneys", "stomach", "bone"]
    assert module.stand_in.segmentations.called("ImportLabelmapToSegmentationNode")
    assert segmentation.called("SetAndObserveTransformNodeID") == [("vtkMRMLLinearTransformNode1",)]
    assert segmentation.called("CreateClosedSurfaceRepresentation") and scene.sh.called("SetItemParent") == [(7, 3)]
    assert loaded == [str(widget.run.results.label_map)]
    lungs = "~SCT^91723000^Anatomical Structure~SCT^39607008^Lung~SCT^51440002^Bilateral~"
    assert lungs in by_id["lungs_id"].called("SetTerminology")[0][0]
    assert set(by_id) == {f"{name}_id" for name in names[1:] if name != "aorta"}  # an absent label: no segment
    assert all(len(node.called("SetTerminology")) == 1 for node in by_id.values())
    served = widget.run.process  # the worker started ahead served it, and stays up for the next click
    assert served is prestarted and widget.logic.worker.running and widget.run.request_id == "1"
    widget.onSceneStartClose(None, None)  # a scene close lets it exit by itself
    assert served.wait(60) == 0 and not widget.logic.worker.running


def test_a_colour_picture_can_be_picked_for_x_ray_classification_only(monkeypatch, tmp_path):
    import typing

    module = install_stand_ins(monkeypatch, scene_stand_in(), util_stand_in(tmp_path))
    annotation = module.MedImgAnalysisParameterNode.annotations["inputVolume"]
    assert typing.get_origin(annotation) is typing.Union  # Slicer 5.10's combo box connector needs typing.Union
    assert [t.__name__ for t in typing.get_args(annotation)] == [
        "vtkMRMLScalarVolumeNode",
        "vtkMRMLVectorVolumeNode",
        "NoneType",
    ]
    widget = make_widget(module)
    photo = volume_node(np.zeros((64, 48, 1, 3), np.uint8), colour=True)
    widget.onInputChanged(photo)
    assert widget.ui.taskComboBox.currentData == "xray_classification"
    tall = volume_node(np.zeros((64, 48, 30, 3), np.uint8), colour=True)  # a colour stack: still the one task
    assert widget.logic.suggestTask(tall) == "xray_classification"
    for task in ("ct_segmentation", "mri_brain_segmentation", "ct_denoising"):
        with pytest.raises(ValueError, match="needs a grey-level volume and this one is colour"):
            widget.logic.startAnalysis(photo, task)


def test_classification_results_are_typed_shown_and_saved_with_the_scene(monkeypatch, tmp_path):
    table, storage = Recorder("table", GetID="table1"), Recorder("heatStorage")
    display = Recorder("heatDisplay")
    heat = Recorder(
        "heat", GetStorageNode=storage, GetDisplayNode=display, GetImageData=Recorder("img", GetScalarRange=(0.0, 1.0))
    )
    scene = scene_stand_in(AddNewNodeByClass=lambda cls, name="": table)
    module = install_stand_ins(monkeypatch, scene, util_stand_in(tmp_path, loadVolume=lambda path, props={}: heat))
    logic = module.MedImgAnalysisLogic()
    found = Results(
        "classification",
        table=[{"file": "a.nrrd", "probability": "0.25", "predicted": "normal"}],
        volumes=[Path("heat.nrrd")],
        summary="probability 0.25",
    )
    run = type("Run", (), {"results": found, "task": logic.tasks["xray_classification"]})()
    assert logic.importResults(run, volume_node(np.zeros((4, 4, 1)))) == "probability 0.25"
    assert table.called("SetColumnType") == [("probability", 11)]
    assert module.stand_in.layout_manager.called("setLayout") == [(15,)]  # a layout with a table view
    assert scene.called("RemoveNode") == [(storage,)]  # no storage node in the deleted temp folder
    assert display.called("SetApplyThreshold") == [(1,)] and display.called("SetLowerThreshold") == [(0.05,)]
