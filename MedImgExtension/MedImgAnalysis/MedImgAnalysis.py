"""MedImg Analysis: run a MedImg (or another MONAI) bundle task on a volume from inside 3D Slicer.

Glue only: Slicer's GUI, scene and file I/O. What runs and how its results are read lives in
MedImgAnalysisLib (importable and tested without Slicer); the work itself runs in a child Python
process through monai_bundle.apps.analysis, the runner the scripts use.
"""

import logging
import os
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from MedImgAnalysisLib import dependencies, tasks
from MedImgAnalysisLib.analysis import AnalysisRun
from MedImgAnalysisLib.process import default_python
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MODULE_DIR = Path(__file__).resolve().parent
SOURCE_ROOT = MODULE_DIR.parents[1]  # a source checkout: MedImgExtension/ sits next to monai_bundle/
DEVICES = {"Automatic": None, "CPU": "cpu", "GPU (CUDA)": "cuda"}
POLL_MS = 200


class MedImgAnalysis(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedImg Analysis")
        self.parent.categories = [_("MedImg")]
        self.parent.dependencies = []
        self.parent.contributors = ["MedImg team"]
        self.parent.helpText = _(
            "Pick a volume, check the suggested task (X-ray classification, CT or brain MRI segmentation, "
            "or another MONAI bundle's inference) and click Analyze. The analysis runs in a separate Python "
            "process; Cancel stops it. The shipped demo weights are for demonstration, not diagnosis."
        )
        self.parent.acknowledgementText = _("Built on MONAI, PyTorch, ITK and 3D Slicer.")


@parameterNodeWrapper
class MedImgAnalysisParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    device: Annotated[str, Choice(list(DEVICES))] = "Automatic"


class MedImgAnalysisWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.run = None
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.connect("timeout()", self.onPoll)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedImgAnalysis.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MedImgAnalysisLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.analyzeButton.connect("clicked(bool)", self.onAnalyzeButton)
        self.ui.inputSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputChanged)
        self.ui.bundleFolderLineEdit.connect("currentPathChanged(QString)", self.onBundleFolderChanged)
        self.refreshTasks()
        self.initializeParameterNode()

    def cleanup(self):
        if self.run is not None:
            self.run.cancel()
        self.timer.stop()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButton)

    def onSceneStartClose(self, caller, event):
        if self.run is not None:
            self.run.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, parameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButton)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButton)
            self.updateButton()

    def refreshTasks(self):
        self.ui.taskComboBox.clear()
        self.ui.taskComboBox.addItems(list(self.logic.tasks))

    def onBundleFolderChanged(self, path):
        try:
            self.logic.useBundle(path)
        except tasks.BundleError as error:
            self.showStatus(str(error), error=True)
        self.refreshTasks()
        self.onInputChanged(self.ui.inputSelector.currentNode())

    def onInputChanged(self, volumeNode):
        suggestion = self.logic.suggestTask(volumeNode) if volumeNode else None
        if suggestion:
            self.ui.taskComboBox.setCurrentIndex(self.ui.taskComboBox.findText(suggestion))
        self.updateButton()

    def updateButton(self, caller=None, event=None):
        busy = self.run is not None and self.run.state in ("preparing", "running", "cancelling")
        ready = bool(self._parameterNode and self._parameterNode.inputVolume and self.ui.taskComboBox.currentText)
        self.ui.analyzeButton.text = _("Cancel") if busy else _("Analyze")
        self.ui.analyzeButton.enabled = busy or ready

    def showStatus(self, text, error=False):
        self.ui.statusLabel.text = text
        self.ui.statusLabel.setStyleSheet("color: #c0392b" if error else "")
        if error:
            logging.error(text)

    def onAnalyzeButton(self):
        if self.run is not None and self.run.state in ("preparing", "running"):
            self.run.cancel()
            return
        if not self.logic.ensureDependencies():
            self.showStatus(_("Missing Python packages were not installed; nothing was run."), error=True)
            return
        params = self._parameterNode
        self.ui.logText.clear()
        self.ui.progressBar.value = 0
        try:
            task = self.ui.taskComboBox.currentText
            self.run = self.logic.startAnalysis(params.inputVolume, task, DEVICES.get(params.device))
        except ValueError as error:
            self.showStatus(str(error), error=True)
            return
        self.showStatus(_("Running {task} ...").format(task=task))
        self.timer.start()
        self.updateButton()

    def onPoll(self):
        run = self.run
        for line in run.poll():
            self.ui.logText.appendPlainText(line)
        self.ui.progressBar.value = int(100 * run.fraction)
        if run.state == "importing":
            try:
                summary = self.logic.importResults(run, self._parameterNode.inputVolume)
                run.finish()
                self.showStatus(_("Done in {seconds:.1f} s: {summary}").format(seconds=run.seconds, summary=summary))
            except Exception as error:  # noqa: BLE001 - shown in the module, whatever failed while loading
                run.finish(failed=f"could not load the results: {error}")
        if run.state in ("done", "failed", "cancelled"):
            self.timer.stop()
            if run.state == "failed":
                self.showStatus(run.error, error=True)
            elif run.state == "cancelled":
                self.showStatus(_("Cancelled."))
        self.updateButton()


class MedImgAnalysisLogic(ScriptedLoadableModuleLogic):
    """Slicer side of an analysis: write the volume, start the run, turn its outputs into nodes."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        metadata = self.metadataPath()
        self.tasks = tasks.builtin_tasks(metadata) if metadata.is_file() else {}  # until monai_bundle is installed
        self.builtinTasks = dict(self.tasks)

    def getParameterNode(self):
        return MedImgAnalysisParameterNode(super().getParameterNode())

    @staticmethod
    def metadataPath():
        try:
            import monai_bundle

            return Path(monai_bundle.BUNDLE_ROOT) / "configs" / "metadata.json"
        except ImportError:
            return SOURCE_ROOT / "monai_bundle" / "configs" / "metadata.json"

    def useBundle(self, folder):
        """Add another MONAI bundle's inference as a task (its configs run code: only the user's choice is run)."""
        self.tasks = dict(self.builtinTasks)
        if folder:
            task = tasks.other_bundle_task(Path(folder))
            self.tasks[task.name] = task

    def suggestTask(self, volumeNode):
        imageData = volumeNode.GetImageData()
        if imageData is None:
            return None
        dims = imageData.GetDimensions()
        low, high = imageData.GetScalarRange()
        modality = self.dicomModality(volumeNode)
        return tasks.suggest_task(tuple(dims), (low, high), self.tasks, modality)

    @staticmethod
    def dicomModality(volumeNode):
        """The DICOM Modality of a volume loaded from DICOM, else ''."""
        uids = volumeNode.GetAttribute("DICOM.instanceUIDs")
        if not uids:
            return ""
        try:
            return slicer.dicomDatabase.fileValue(slicer.dicomDatabase.fileForInstance(uids.split()[0]), "0008,0060")
        except Exception:  # noqa: BLE001 - no DICOM database: no modality hint
            return ""

    def ensureDependencies(self):
        """Ask before installing anything missing from Slicer's Python; True when all is importable."""
        missing = dependencies.missing()
        bundleImportable = self.bundleImportable()
        if not missing and bundleImportable:
            return True
        pytorchExtension = hasattr(slicer.modules, "pytorchutils")
        plan = dependencies.install_plan(missing, pytorchExtension, SOURCE_ROOT, bundleImportable)
        text = _("MedImg Analysis needs these Python packages in Slicer's Python:") + "\n- " + "\n- ".join(plan)
        if not slicer.util.confirmOkCancelDisplay(text + "\n\n" + _("Install them now? (a restart may be needed)")):
            return False
        installTorch = None
        if "torch" in missing and pytorchExtension:
            import PyTorchUtils

            installTorch = lambda: PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False)  # noqa: E731
        with slicer.util.tryWithErrorDisplay(_("Installing Python packages failed."), waitCursor=True):
            dependencies.install(missing, slicer.util.pip_install, installTorch, SOURCE_ROOT, bundleImportable)
            return not dependencies.missing()
        return False

    @staticmethod
    def bundleImportable():
        return (SOURCE_ROOT / "monai_bundle" / "__init__.py").is_file() or _findSpec("monai_bundle")

    def startAnalysis(self, volumeNode, taskName, device=None):
        """Write the volume on its own grid (a parent transform is not applied: results get the same
        parent, so they overlay exactly) and start the child process."""
        if volumeNode is None or volumeNode.GetImageData() is None:
            raise ValueError(_("Select a volume with image data."))
        transform = volumeNode.GetParentTransformNode()
        if transform is not None and not transform.IsLinear():
            raise ValueError(_("The volume is under a non-linear transform: harden it first (Data module)."))
        task = self.tasks[taskName]

        def writeInput(path):
            storage = slicer.mrmlScene.CreateNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
            storage.SetFileName(str(path))
            storage.UseCompressionOff()
            if not storage.WriteData(volumeNode):
                raise OSError(f"Slicer could not write {path}")
            storage.UnRegister(None)

        python = default_python()
        run = AnalysisRun(task, writeInput, python, device, SOURCE_ROOT if (SOURCE_ROOT / "monai_bundle").is_dir() else None)
        run.start()
        if run.state == "failed":
            raise ValueError(run.error)
        return run

    def importResults(self, run, volumeNode):
        """Turn the run's outputs into nodes next to the input; return a one-line summary."""
        results, name = run.results, volumeNode.GetName()
        transformID = volumeNode.GetTransformNodeID()
        if results.kind == "segmentation":
            segmentation = self.importSegmentation(results, volumeNode, f"{name} {run.task.name}")
            segmentation.SetAndObserveTransformNodeID(transformID)
        elif results.kind == "classification":
            self.importTable(results, f"{name} {run.task.name}")
            for path in results.volumes:
                heat = slicer.util.loadVolume(str(path), {"name": f"{name} heat map", "show": False})
                heat.SetAndObserveTransformNodeID(transformID)
                heat.GetDisplayNode().SetAndObserveColorNodeID("vtkMRMLColorTableNodeRainbow")
                slicer.util.setSliceViewerLayers(background=volumeNode, foreground=heat, foregroundOpacity=0.4)
        else:
            for path in results.volumes:
                node = slicer.util.loadVolume(str(path), {"name": f"{name} {run.task.name}"})
                node.SetAndObserveTransformNodeID(transformID)
                slicer.util.setSliceViewerLayers(background=node)
        return results.summary

    @staticmethod
    def importSegmentation(results, volumeNode, name):
        colors = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLColorTableNode", f"{name} colors")
        colors.SetTypeToUser()
        colors.SetNumberOfColors(max([s.label for s in results.segments], default=0) + 1)
        colors.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
        for segment in results.segments:
            colors.SetColor(segment.label, segment.name, *segment.colour, 1.0)
        labelmap = slicer.util.loadLabelVolume(str(results.label_map), {"show": False})
        labelmap.GetDisplayNode().SetAndObserveColorNodeID(colors.GetID())
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, segmentation)
        segmentation.CreateDefaultDisplayNodes()
        slicer.mrmlScene.RemoveNode(labelmap)
        slicer.mrmlScene.RemoveNode(colors)
        return segmentation

    @staticmethod
    def importTable(results, name):
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)
        columns = list(results.table[0]) if results.table else []
        for column in columns:
            table.AddColumn().SetName(column)
        for row in results.table:
            index = table.AddEmptyRow()
            for col, column in enumerate(columns):
                table.SetCellText(index, col, row[column])
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()
        return table


def _findSpec(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


class MedImgAnalysisTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, or Slicer --testing). The inference part runs on CPU and is
    off unless MEDIMG_SLICER_TEST_INFERENCE=1 (too slow for Slicer's build machines)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_suggestion()
        if os.environ.get("MEDIMG_SLICER_TEST_INFERENCE") == "1":
            self.test_ct_segmentation()

    def _volume(self, array, name):
        import numpy as np

        return slicer.util.addVolumeFromArray(np.asarray(array), name=name)

    def test_suggestion(self):
        import numpy as np

        logic = MedImgAnalysisLogic()
        radiograph = self._volume(np.random.rand(1, 64, 64) * 4095, "radiograph")
        ct = self._volume(np.full((40, 64, 64), -1000.0), "ct")
        self.assertEqual(logic.suggestTask(radiograph), "xray_classification")
        self.assertEqual(logic.suggestTask(ct), "ct_segmentation")
        self.delayDisplay("task suggestion passed")

    def test_ct_segmentation(self):
        import time

        import numpy as np

        ct = np.full((60, 96, 96), -1000.0)
        ct[10:50, 20:76, 20:76] = 40.0
        volume = self._volume(ct, "phantom ct")
        logic = MedImgAnalysisLogic()
        run = logic.startAnalysis(volume, "ct_segmentation", "cpu")
        while run.state == "running":
            run.poll()
            time.sleep(0.2)
        self.assertEqual(run.state, "importing", run.error)
        summary = logic.importResults(run, volume)
        run.finish()
        self.assertEqual(summary, "8 labels")
        self.assertIsNotNone(slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode"))
        self.delayDisplay("CT segmentation passed")
