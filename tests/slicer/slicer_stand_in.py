"""Stand-ins for slicer, qt and vtk that check every call against the signatures in SLICER_API.md.

A method the module calls on a stand-in must be listed there (extracted from Slicer's source) and its
arguments must bind to one of the listed signatures: a misspelt or wrongly called API fails the test.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import types
import unittest

from conftest import REPO

MODULE_DIR = REPO / "MedImgExtension" / "MedImgAnalysis"
API_LIST = REPO / "MedImgExtension" / "SLICER_API.md"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))  # MedImgAnalysisLib, as Slicer puts qt-scripted-modules on sys.path


def parse_signatures(text: str, section: str = "") -> dict[str, list[inspect.Signature]]:
    """name -> signatures listed in SLICER_API.md's signatures block (only under `section`'s comment if given)."""
    block = re.search(r"```signatures\n(.*?)```", text, re.S).group(1)
    out: dict[str, list[inspect.Signature]] = {}
    header = ""
    for line in block.splitlines():
        line = line.strip()
        if line.startswith("#"):
            header = line
            continue
        if not line or section not in header:
            continue
        name, params = re.fullmatch(r"(\w+)\((.*)\)", line).groups()
        namespace: dict = {}
        exec(f"def f({params}): pass", namespace)  # noqa: S102 - our own API list
        out.setdefault(name, []).append(inspect.signature(namespace["f"]))
    return out


SIGNATURES = parse_signatures(API_LIST.read_text())
UTIL_FUNCTIONS = parse_signatures(API_LIST.read_text(), "Base/Python/slicer/util.py (")


def check_call(name: str, args: tuple, kwargs: dict) -> None:
    signatures = SIGNATURES.get(name)
    assert signatures, f"{name}() is not in {API_LIST.name}: check it in Slicer's source and list it"
    for signature in signatures:
        try:
            signature.bind(*args, **kwargs)
            return
        except TypeError:
            pass
    raise AssertionError(f"{name}{args}{kwargs or ''} matches none of {[str(s) for s in signatures]}")


class Recorder:
    """A Slicer object: every method call is checked (name, arity) and recorded; `values` give return values
    (callables are called), `props` plain attributes."""

    def __init__(self, name="node", props=None, **values):
        self.__dict__.update(props or {})
        self._name, self._values, self.calls = name, values, []

    def __getattr__(self, attr):
        if attr.startswith("_"):
            raise AttributeError(attr)
        values = self._values

        def call(*args, **kwargs):
            check_call(attr, args, kwargs)
            self.calls.append((attr, args))
            if attr in values:
                value = values[attr]
                return value(*args, **kwargs) if callable(value) else value
            return Recorder(f"{self._name}.{attr}")

        return call

    def called(self, attr):
        return [args for name, args in self.calls if name == attr]


class Combo(Recorder):
    """A QComboBox with items and data."""

    def __init__(self):
        super().__init__(
            "combo",
            clear=lambda: self.items.clear(),
            addItem=lambda text, data=None: self.items.append((text, data)),
            findData=lambda data: [d for _, d in self.items].index(data) if data in [d for _, d in self.items] else -1,
            setCurrentIndex=lambda index: setattr(self, "index", index),
        )
        self.items, self.index = [], 0

    @property
    def currentData(self):
        return self.items[self.index][1] if 0 <= self.index < len(self.items) else None

    @property
    def currentText(self):
        return self.items[self.index][0] if 0 <= self.index < len(self.items) else ""


def ui_stand_in():
    names = [
        "analyzeButton",
        "inputSelector",
        "bundleFolderLineEdit",
        "statusLabel",
        "progressBar",
        "logText",
        "inputsCollapsibleButton",
    ]
    ui = types.SimpleNamespace(**{name: Recorder(name) for name in names})
    ui.taskComboBox = Combo()
    return ui


def install_stand_ins(monkeypatch, scene, util, version=(5, 10), modules=None, module_dir=MODULE_DIR):
    """Put slicer, qt, vtk stand-ins in sys.modules and import MedImgAnalysis.py against them."""
    slicer = types.ModuleType("slicer")
    slm = types.ModuleType("slicer.ScriptedLoadableModule")

    class Base:
        def __init__(self, parent=None):
            self.parent = parent or types.SimpleNamespace(isEntered=True)

        def getParameterNode(self):
            return Recorder("parameterNode")

        def resourcePath(self, filename):
            check_call("resourcePath", (filename,), {})
            return str(module_dir / "Resources" / filename)

        def setup(self):
            self.layout = Recorder("layout")

    class Mixin:
        def __init__(self):
            self.observed = []

        def addObserver(self, obj, event, method, group="none", priority=0.0):  # noqa: N802
            check_call("addObserver", (obj, event, method, group, priority), {})
            self.observed.append((obj, event, method))

        def removeObserver(self, *args):  # noqa: N802
            check_call("removeObserver", args, {})

        def removeObservers(self, *args):  # noqa: N802
            check_call("removeObservers", args, {})

    slm.ScriptedLoadableModule = slm.ScriptedLoadableModuleWidget = slm.ScriptedLoadableModuleLogic = Base
    slm.ScriptedLoadableModuleTest = unittest.TestCase
    util_module = types.ModuleType("slicer.util")
    util_module.VTKObservationMixin = Mixin
    checked_util = Recorder("slicer.util", **util)
    for name in UTIL_FUNCTIONS:
        setattr(util_module, name, getattr(checked_util, name))
    util_module.calls = checked_util
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")

    def parameter_node_wrapper(cls):
        defaults = {k: getattr(cls, k, None) for k in cls.__annotations__}

        def wrap(node):
            return Recorder("parameters", props=dict(defaults), connectGui=lambda gui: "tag")

        wrap.annotations = cls.__annotations__  # what Slicer's wrapper would build its serializers and connectors from
        return wrap

    wrapper.parameterNodeWrapper = parameter_node_wrapper
    wrapper.Choice = lambda choices: ("Choice", tuple(choices))
    slicer.ScriptedLoadableModule, slicer.util, slicer.i18n = slm, util_module, i18n
    slicer.parameterNodeWrapper = wrapper
    slicer.vtkMRMLScalarVolumeNode = type("vtkMRMLScalarVolumeNode", (), {})
    slicer.vtkMRMLVectorVolumeNode = type("vtkMRMLVectorVolumeNode", (slicer.vtkMRMLScalarVolumeNode,), {})
    slicer.mrmlScene = scene
    segmentations = Recorder("segmentationsLogic")
    tables = Recorder("tablesLogic", GetLayoutWithTable=lambda layout: 15)
    slicer.modules = types.SimpleNamespace(
        segmentations=Recorder("segmentations", logic=segmentations),
        tables=Recorder("tables", logic=tables),
        **(modules or {}),
    )
    layout_manager = Recorder("layoutManager", props={"layout": 2})
    slicer.app = Recorder(
        "app", props={"majorVersion": version[0], "minorVersion": version[1]}, layoutManager=layout_manager
    )
    qt = types.ModuleType("qt")
    qt.QTimer = lambda: Recorder("timer")
    vtk = types.ModuleType("vtk")
    vtk.vtkCommand = types.SimpleNamespace(ModifiedEvent="ModifiedEvent")
    vtk.VTK_DOUBLE = 11
    for name, module in {
        "slicer": slicer,
        "slicer.ScriptedLoadableModule": slm,
        "slicer.util": util_module,
        "slicer.i18n": i18n,
        "slicer.parameterNodeWrapper": wrapper,
        "qt": qt,
        "vtk": vtk,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.syspath_prepend(str(module_dir))
    monkeypatch.delitem(sys.modules, "MedImgAnalysis", raising=False)
    module = importlib.import_module("MedImgAnalysis")
    module.stand_in = types.SimpleNamespace(
        segmentations=segmentations, tables=tables, app=slicer.app, layout_manager=layout_manager, util=checked_util
    )
    return module
