"""MedImgAnalysis.py against a minimal stand-in for Slicer (slicer, qt, vtk): the glue only.

Stand-ins replace Slicer itself and nothing else: the child process, the bundle and the files are real.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import time
import types
import unittest

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import REPO

MODULE_DIR = REPO / "MedImgExtension" / "MedImgAnalysis"
MODULE_FILE = MODULE_DIR / "MedImgAnalysis.py"
API_LIST = REPO / "MedImgExtension" / "SLICER_API.md"


class Recorder:
    """Any attribute is a callable that records its calls and returns another Recorder (or a set value)."""

    def __init__(self, name="node", **values):
        self._name, self._values, self.calls = name, values, []

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if attr in self._values:
            value = self._values[attr]
            return value if callable(value) else (lambda *a, **k: value)

        def call(*args, **kwargs):
            self.calls.append((attr, args))
            return Recorder(f"{self._name}.{attr}")

        return call

    def called(self, attr):
        return [args for name, args in self.calls if name == attr]


def install_stand_ins(monkeypatch, scene, util):
    slicer = types.ModuleType("slicer")
    slm = types.ModuleType("slicer.ScriptedLoadableModule")

    class Base:
        def __init__(self, parent=None):
            self.parent = parent or types.SimpleNamespace()

        def getParameterNode(self):
            return Recorder("parameterNode")

    slm.ScriptedLoadableModule = slm.ScriptedLoadableModuleWidget = slm.ScriptedLoadableModuleLogic = Base
    slm.ScriptedLoadableModuleTest = unittest.TestCase
    util_module = types.ModuleType("slicer.util")
    util_module.VTKObservationMixin = type("VTKObservationMixin", (), {"__init__": lambda self: None})
    for name, value in util.items():
        setattr(util_module, name, value)
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.Choice = lambda choices: ("Choice", tuple(choices))
    slicer.ScriptedLoadableModule, slicer.util, slicer.i18n, slicer.parameterNodeWrapper = slm, util_module, i18n, wrapper
    slicer.vtkMRMLScalarVolumeNode = type("vtkMRMLScalarVolumeNode", (), {})
    slicer.mrmlScene = scene
    segmentations = Recorder("segmentationsLogic")
    slicer.modules = types.SimpleNamespace(segmentations=types.SimpleNamespace(logic=lambda: segmentations))
    slicer.app = Recorder("app")
    qt = types.ModuleType("qt")
    qt.QTimer = lambda: Recorder("timer")
    vtk = types.ModuleType("vtk")
    vtk.vtkCommand = types.SimpleNamespace(ModifiedEvent="ModifiedEvent")
    for name, module in {"slicer": slicer, "slicer.ScriptedLoadableModule": slm, "slicer.util": util_module,
                         "slicer.i18n": i18n, "slicer.parameterNodeWrapper": wrapper, "qt": qt, "vtk": vtk}.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.syspath_prepend(str(MODULE_DIR))
    monkeypatch.delitem(sys.modules, "MedImgAnalysis", raising=False)
    return importlib.import_module("MedImgAnalysis"), segmentations


class StorageNode(Recorder):
    """The stand-in for vtkMRMLVolumeArchetypeStorageNode: writes the volume's array as a real NRRD."""

    def __init__(self, volume):
        super().__init__("storage")
        self.volume, self.path = volume, None

    def SetFileName(self, path):  # noqa: N802 - Slicer's name
        self.path = path

    def WriteData(self, node):  # noqa: N802
        image = sitk.GetImageFromArray(np.ascontiguousarray(node.array.T))
        image.SetSpacing((2.0, 2.0, 2.0))
        sitk.WriteImage(image, self.path, useCompression=False)
        return 1


def volume_node(array, transform=None):
    dims = array.shape
    image = Recorder("imageData", GetDimensions=dims, GetScalarRange=(float(array.min()), float(array.max())))
    node = Recorder("volume", GetImageData=image, GetName="CT", GetAttribute=None, GetParentTransformNode=transform,
                    GetTransformNodeID="vtkMRMLLinearTransformNode1" if transform else None)
    node.array = array
    return node


def test_every_slicer_api_the_module_calls_is_listed_and_checked():
    source, listed = MODULE_FILE.read_text(), API_LIST.read_text()
    used = set(re.findall(r"slicer\.util\.(\w+)", source)) | set(re.findall(r"slicer\.mrmlScene\.(\w+)", source))
    used |= set(re.findall(r"\.([A-Z]\w+)\(", source))
    missing = sorted(name for name in used if name not in listed)
    assert not missing, f"add these to {API_LIST.name} after checking them in Slicer's source: {missing}"


def test_the_library_imports_without_slicer():
    code = ("import sys; sys.path.insert(0, %r); import MedImgAnalysisLib.analysis, MedImgAnalysisLib.dependencies; "
            "assert not {'slicer', 'qt', 'vtk', 'ctk'} & set(sys.modules), 'Slicer module imported'; "
            "assert not {'monai_bundle', 'torch', 'numpy'} & set(sys.modules), 'bundle or torch imported'") % str(MODULE_DIR)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_module_glue_suggests_refuses_runs_and_imports(monkeypatch, tmp_path):
    scene = Recorder("scene")
    loaded = []

    def load_label_volume(path, properties=None):
        loaded.append(path)
        return Recorder("labelmap")

    util = {"loadLabelVolume": load_label_volume, "loadVolume": lambda *a, **k: Recorder("volume"),
            "setSliceViewerLayers": lambda **k: None}
    module, segmentations = install_stand_ins(monkeypatch, scene, util)
    logic = module.MedImgAnalysisLogic()
    assert logic.suggestTask(volume_node(np.zeros((512, 512, 1)))) == "xray_classification"
    nonlinear = Recorder("transform", IsLinear=0)
    with pytest.raises(ValueError, match="non-linear"):
        logic.startAnalysis(volume_node(np.zeros((8, 8, 8)), transform=nonlinear), "ct_segmentation")

    ct = np.full((48, 48, 40), -1000, np.int16)
    ct[8:40, 8:40, 4:36] = 40
    volume = volume_node(ct, transform=Recorder("transform", IsLinear=1))
    scene._values["CreateNodeByClass"] = lambda cls: StorageNode(volume)
    colors = Recorder("colors", GetID="colors1")
    segmentation = Recorder("segmentation")
    scene._values["AddNewNodeByClass"] = lambda cls, name="": {"vtkMRMLColorTableNode": colors,
                                                              "vtkMRMLSegmentationNode": segmentation}[cls]
    run = logic.startAnalysis(volume, "ct_segmentation", "cpu")
    deadline = time.monotonic() + 300
    while run.state == "running" and time.monotonic() < deadline:
        run.poll()
        time.sleep(0.1)
    assert run.state == "importing", (run.error, run.log[-10:])
    summary = logic.importResults(run, volume)
    run.finish()
    assert summary == "8 labels" and loaded == [str(run.results.label_map)]
    names = [args[1] for args in colors.called("SetColor")]
    assert names == ["background", "lungs", "heart", "aorta", "liver", "spleen", "kidneys", "stomach", "bone"]
    assert segmentations.called("ImportLabelmapToSegmentationNode")
    assert segmentation.called("SetAndObserveTransformNodeID") == [("vtkMRMLLinearTransformNode1",)]
    assert run.state == "done" and not run.workspace.path.exists()
