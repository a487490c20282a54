"""MedImg Analysis: run a MedImg (or another MONAI) bundle task on a volume from inside 3D Slicer.

Glue only: Slicer's GUI, scene and file I/O. What runs and how its results are read lives in
MedImgAnalysisLib (importable and tested without Slicer); the work itself runs in a warm worker, one
child Python process per module session (monai_bundle.apps.worker: the bundle engine the scripts use),
ended by Cancel, scene close, module cleanup or its own idle timeout, and restarted by the next Analyze.
"""

import logging
import os
from pathlib import Path
from typing import Annotated, Union

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLVectorVolumeNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from MedImgAnalysisLib import dependencies, environment, results, tasks
from MedImgAnalysisLib.analysis import AnalysisRun
from MedImgAnalysisLib.process import PythonNotFoundError, Worker, child_environment, python_slicer

# qt-scripted-modules/ when installed, MedImgExtension/MedImgAnalysis/ in a source checkout
MODULE_DIR = Path(__file__).resolve().parent
DEVICES = environment.device_choices()
POLL_MS = 200
BUSY = ("preparing", "running", "cancelling")


class MedImgAnalysis(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedImg Analysis")
        self.parent.categories = [_("Segmentation")]  # the extension's EXTENSION_CATEGORY too
        self.parent.dependencies = []
        self.parent.contributors = ["MedImg team (MedImg)"]
        self.parent.helpText = _(
            "Pick a volume, check the suggested task (X-ray classification, CT or brain MRI segmentation, "
            "CT denoising, or another MONAI bundle's inference) and click Analyze. The analysis runs in a separate "
            "Python process; Cancel stops it. Needs 3D Slicer 5.10 or later. The shipped demo weights are for "
            "demonstration, not diagnosis."
        )
        self.parent.acknowledgementText = _("Built on MONAI, PyTorch, ITK and 3D Slicer.")


@parameterNodeWrapper
class MedImgAnalysisParameterNode:
    # Grey volumes, and colour pictures (vector volumes) for the tasks that read colour. Slicer 5.10's node combo box
    # connector recognises typing.Union only (parameterNodeWrapper/util.py getNodeTypes), not X | Y.
    inputVolume: Union[vtkMRMLScalarVolumeNode, vtkMRMLVectorVolumeNode, None]  # noqa: UP007
    device: Annotated[str, Choice(list(DEVICES))] = "Automatic"


class MedImgAnalysisWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.run = None
        self.runInputID = None  # the volume the running analysis was started on
        self.installing = False
        self.unusable = ""  # why the module cannot run here (old Slicer, no bundle)
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
        self.unusable = environment.version_problem((slicer.app.majorVersion, slicer.app.minorVersion))
        if not self.unusable and self.logic.bundle is None:
            self.unusable = environment.not_found_message(MODULE_DIR)
        if self.unusable:
            self.showStatus(self.unusable, error=True)
        self.initializeParameterNode()

    def cleanup(self):
        if self.run is not None:
            self.run.cancel(block=True)
        if self.logic is not None:
            self.logic.closeWorker()
        self.timer.stop()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()
        if not self.unusable and not self.installing:
            self.logic.prepareWorker(DEVICES.get(self._parameterNode.device))

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButton)

    def onSceneStartClose(self, caller, event):
        if self.run is not None:
            self.run.cancel()
        self.logic.closeWorker()  # its memory back; the next Analyze starts a fresh one
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
        """The task list shows titles ('CT segmentation'); each item's data is the task id."""
        self.ui.taskComboBox.clear()
        for name, task in self.logic.tasks.items():
            self.ui.taskComboBox.addItem(task.title, name)

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
            self.ui.taskComboBox.setCurrentIndex(self.ui.taskComboBox.findData(suggestion))
        self.updateButton()

    def updateButton(self, caller=None, event=None):
        busy = self.run is not None and self.run.state in BUSY
        ready = bool(self._parameterNode and self._parameterNode.inputVolume and self.ui.taskComboBox.currentData)
        self.ui.analyzeButton.text = _("Cancel") if busy else _("Analyze")
        self.ui.analyzeButton.enabled = (busy and self.run.state != "cancelling") or (
            ready and not self.installing and not self.unusable and not busy
        )
        self.ui.inputsCollapsibleButton.enabled = not busy and not self.installing  # no edits mid-run

    def showStatus(self, text, error=False, warning=False):
        self.ui.statusLabel.text = text
        self.ui.statusLabel.setStyleSheet("color: #c0392b" if error else "color: #d35400" if warning else "")
        if error:
            logging.error(text)
        elif warning:
            logging.warning(text)

    def onAnalyzeButton(self):
        if self.run is not None and self.run.state in ("preparing", "running"):
            self.run.cancel()
            self.showStatus(_("Cancelling ..."))
            self.updateButton()
            return
        if not self.installDependencies():
            return
        params = self._parameterNode
        task = self.ui.taskComboBox.currentData
        self.ui.logText.clear()
        self.ui.progressBar.maximum, self.ui.progressBar.value = 100, 0
        try:
            self.run = self.logic.startAnalysis(params.inputVolume, task, DEVICES.get(params.device))
        except ValueError as error:
            self.showStatus(str(error), error=True)
            return
        self.runInputID = params.inputVolume.GetID()
        self.showStatus(_("Running {task} ...").format(task=self.logic.tasks[task].title))
        self.timer.start()
        self.updateButton()

    def installDependencies(self):
        """Ask, then install what is missing; Analyze is disabled meanwhile. False (and a status) when not done."""
        self.installing = True
        self.updateButton()
        self.showStatus(_("Checking Python packages ..."))
        try:
            installed = self.logic.ensureDependencies()
        except Exception as error:  # noqa: BLE001 - pip or the PyTorch extension failed: say so, keep the module usable
            logging.exception("installing Python packages failed")
            installed = None
            self.showStatus(_("Installing Python packages failed: {error}").format(error=error), error=True)
        finally:
            self.installing = False
            self.updateButton()
        if installed is False:
            self.showStatus(_("Missing Python packages were not installed; nothing was run."), error=True)
        elif installed:
            self.showStatus("")
        return bool(installed)

    def onPoll(self):
        run = self.run
        for line in run.poll():
            self.ui.logText.appendPlainText(line)
        percent = run.percent
        self.ui.progressBar.maximum = 0 if percent is None else 100  # maximum 0: Qt's busy indicator
        if percent is not None:
            self.ui.progressBar.value = percent
        if run.state == "importing":
            volumeNode = slicer.mrmlScene.GetNodeByID(self.runInputID) if self.runInputID else None
            if volumeNode is None:
                run.finish(failed=_("The input volume was deleted during the analysis; nothing was imported."))
            else:
                try:
                    summary = self.logic.importResults(run, volumeNode)
                    run.finish()
                    done = _("Done in {seconds:.1f} s: {summary}").format(seconds=run.seconds, summary=summary)
                    warning = run.results.warning  # the model's quality flag says: do not trust this blindly
                    self.showStatus(f"{done}. {warning}" if warning else done, warning=bool(warning))
                except Exception as error:  # noqa: BLE001 - shown in the module, whatever failed while loading
                    logging.exception("loading the results failed")
                    run.finish(failed=f"could not load the results: {error}")
        if run.state in ("done", "failed", "cancelled"):
            self.timer.stop()
            self.ui.progressBar.maximum = 100
            if run.state == "failed":
                self.showStatus(run.error, error=True)
            elif run.state == "cancelled":
                self.showStatus(_("Cancelled."))
        self.updateButton()


class MedImgAnalysisLogic(ScriptedLoadableModuleLogic):
    """Slicer side of an analysis: write the volume, start the run, turn its outputs into nodes."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.bundle = environment.locate_bundle(MODULE_DIR)
        self.tasks = tasks.builtin_tasks(self.bundle.metadata) if self.bundle else {}
        self.builtinTasks = dict(self.tasks)
        self.worker = None  # the warm worker, started by the first analysis

    def getParameterNode(self):
        return MedImgAnalysisParameterNode(super().getParameterNode())

    def useBundle(self, folder):
        """Add another MONAI bundle's inference as a task (its configs run code: only the user's choice is run)."""
        self.tasks = dict(self.builtinTasks)
        if folder:
            task = tasks.other_bundle_task(Path(folder), tasks.codes_by_name(self.builtinTasks))
            self.tasks[task.name] = task

    def suggestTask(self, volumeNode):
        imageData = volumeNode.GetImageData()
        if imageData is None:
            return None
        dims = imageData.GetDimensions()
        low, high = imageData.GetScalarRange()
        modality = self.dicomModality(volumeNode)
        return tasks.suggest_task(tuple(dims), (low, high), self.tasks, modality, self.isColour(volumeNode))

    @staticmethod
    def isColour(volumeNode):
        """A colour picture (PNG/JPEG) loads as a vector volume (RGB or RGBA components)."""
        return bool(volumeNode.IsA("vtkMRMLVectorVolumeNode"))

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
        """Ask before installing anything missing or too old in Slicer's Python; True when all is there, False
        when the user declined. Install errors are raised (the widget shows them)."""
        missing = dependencies.missing()
        if not missing:
            return True
        pytorchExtension = hasattr(slicer.modules, "pytorchutils")
        plan = dependencies.install_plan(missing, pytorchExtension)
        text = _("MedImg Analysis needs these Python packages in Slicer's Python:") + "\n- " + "\n- ".join(plan)
        if not slicer.util.confirmOkCancelDisplay(text + "\n\n" + _("Install them now? (a restart may be needed)")):
            return False
        installTorch = None
        if "torch" in missing and pytorchExtension:
            import PyTorchUtils

            def installTorch(versionRequirement):
                PyTorchUtils.PyTorchUtilsLogic().installTorch(
                    askConfirmation=False, torchVersionRequirement=versionRequirement
                )

        dependencies.install(missing, slicer.util.pip_install, installTorch)
        stillMissing = dependencies.missing()
        if stillMissing:
            raise RuntimeError(", ".join(dependencies.describe(stillMissing)) + " still missing: restart Slicer")
        return True

    @staticmethod
    def tempRoot():
        """Slicer's temporary folder (Application Settings), not the system's."""
        return Path(slicer.util.tempDirectory("MedImgAnalysis", includeDateTime=False))

    def startAnalysis(self, volumeNode, taskName, device=None):
        """Write the volume on its own grid (a parent transform is not applied: results get the same
        parent, so they overlay exactly) and send it to the warm worker."""
        if volumeNode is None or volumeNode.GetImageData() is None:
            raise ValueError(_("Select a volume with image data."))
        if self.bundle is None:
            raise ValueError(environment.not_found_message(MODULE_DIR))
        transform = volumeNode.GetParentTransformNode()
        if transform is not None and not transform.IsLinear():
            raise ValueError(_("The volume is under a non-linear transform: harden it first (Data module)."))
        task = self.tasks[taskName]
        if self.isColour(volumeNode) and not task.reads_colour:
            raise ValueError(
                _(
                    "{task} needs a grey-level volume and this one is colour: pick X-ray classification, "
                    "or convert it with the Vector to Scalar Volume module."
                ).format(task=task.title)
            )

        def writeInput(path):
            storage = slicer.mrmlScene.CreateNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
            storage.SetFileName(str(path))
            storage.UseCompressionOff()
            if not storage.WriteData(volumeNode):
                raise OSError(f"Slicer could not write {path}")
            storage.UnRegister(None)

        try:
            python = python_slicer()
        except PythonNotFoundError as error:
            raise ValueError(str(error)) from None
        if self.worker is None or self.worker.python != python:
            self.worker = Worker(python)
        run = AnalysisRun(task, writeInput, python, device, self.bundle.package_parent, self.tempRoot(), self.worker)
        run.start()
        if run.state == "failed":
            raise ValueError(run.error)
        return run

    def prepareWorker(self, device=None):
        """Start the warm worker when the module is entered, so the first Analyze does not wait for it to
        import PyTorch and MONAI; not before the Python packages are there (the first Analyze installs them)."""
        if self.bundle is None or dependencies.missing():
            return
        try:
            python = python_slicer()
        except PythonNotFoundError:
            return  # Analyze says so
        if self.worker is None or self.worker.python != python:
            self.worker = Worker(python)
        try:
            self.worker.start(child_environment(device, self.bundle.package_parent))
        except OSError:
            logging.exception("the MedImg worker could not be started ahead; Analyze will try again")

    def closeWorker(self):
        """Let the warm worker exit (scene close, module cleanup); the next analysis starts a new one."""
        if self.worker is not None:
            self.worker.close()

    def importResults(self, run, volumeNode):
        """Turn the run's outputs into nodes next to the input (same transform, same study); return a summary."""
        found, name = run.results, volumeNode.GetName()
        created = []
        if found.kind == "segmentation":
            created.append(self.importSegmentation(found, volumeNode, f"{name} {run.task.title}"))
        elif found.kind == "classification":
            created.append(self.importTable(found, f"{name} {run.task.title}"))
            for path in found.volumes:
                heat = self.loadResultVolume(path, f"{name} heat map", show=False)
                display = heat.GetDisplayNode()
                display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeRainbow")
                lower, upper = results.heat_map_threshold(heat.GetImageData().GetScalarRange())
                display.SetApplyThreshold(1)
                display.SetLowerThreshold(lower)
                display.SetUpperThreshold(upper)
                slicer.util.setSliceViewerLayers(background=volumeNode, foreground=heat, foregroundOpacity=0.4)
                created.append(heat)
        else:
            for path in found.volumes:
                node = self.loadResultVolume(path, f"{name} {run.task.title}", show=True)
                slicer.util.setSliceViewerLayers(background=node)
                created.append(node)
        for node in created:
            self.placeNextTo(node, volumeNode)
        return found.summary

    @staticmethod
    def loadResultVolume(path, name, show):
        """Load a result volume and forget its temp file: with no storage node it counts as modified, so the
        Save dialog ticks it and writes it with the scene (qSlicerSaveDataDialog adds a default storage node)."""
        node = slicer.util.loadVolume(str(path), {"name": name, "show": show})
        storage = node.GetStorageNode()
        if storage is not None:
            slicer.mrmlScene.RemoveNode(storage)
        return node

    @staticmethod
    def placeNextTo(node, volumeNode):
        """Same parent transform and same subject-hierarchy folder (patient/study) as the input volume."""
        node.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
        shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
        parent = shNode.GetItemParent(shNode.GetItemByDataNode(volumeNode))
        shNode.SetItemParent(shNode.GetItemByDataNode(node), parent)

    @staticmethod
    def importSegmentation(found, volumeNode, name):
        """A segmentation named after the input and the task; a rerun replaces the segments of the same node."""
        colors = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLColorTableNode", f"{name} colors")
        colors.SetTypeToUser()
        colors.SetNumberOfColors(max([s.label for s in found.segments], default=0) + 1)
        colors.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
        for segment in found.segments:
            colors.SetColor(segment.label, segment.name, *segment.colour, 1.0)
        labelmap = slicer.util.loadLabelVolume(str(found.label_map), {"show": False})
        labelmap.GetDisplayNode().SetAndObserveColorNodeID(colors.GetID())
        segmentation = slicer.mrmlScene.GetFirstNodeByName(name)
        if segmentation is not None and segmentation.IsA("vtkMRMLSegmentationNode"):
            segmentation.GetSegmentation().RemoveAllSegments()
        else:
            segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)  # also links it to its source
        slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, segmentation)
        segments = segmentation.GetSegmentation()
        for segment in found.segments:  # standard codes: the plain import does not take them from the colour table
            segmentId = segments.GetSegmentIdBySegmentName(segment.name)  # '' for a label absent from the result
            if segment.terminology and segmentId:
                segments.GetSegment(segmentId).SetTerminology(segment.terminology)
        segmentation.CreateDefaultDisplayNodes()
        segmentation.CreateClosedSurfaceRepresentation()  # shown in 3D
        slicer.mrmlScene.RemoveNode(labelmap)
        slicer.mrmlScene.RemoveNode(colors)
        return segmentation

    @staticmethod
    def importTable(found, name):
        """The prediction table, numbers as numeric columns, shown in a layout with a table view
        (as SegmentStatistics.showTable does)."""
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)
        columns = list(found.table[0]) if found.table else []
        for column in columns:
            table.AddColumn().SetName(column)
        for row in found.table:
            index = table.AddEmptyRow()
            for col, column in enumerate(columns):
                table.SetCellText(index, col, row[column])
        for column in results.numeric_columns(found.table):
            table.SetColumnType(column, vtk.VTK_DOUBLE)
        layoutManager = slicer.app.layoutManager()
        layoutManager.setLayout(slicer.modules.tables.logic().GetLayoutWithTable(layoutManager.layout))
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()
        return table


class MedImgAnalysisTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, ctest, or Slicer --testing). slicer.testing.runUnitTest loads every
    test_* method, so the CPU inference test skips itself unless MEDIMG_SLICER_TEST_INFERENCE=1 (too slow for
    Slicer's build machines) and gives up after INFERENCE_TIMEOUT_S."""

    INFERENCE_TIMEOUT_S = 600

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_suggestion()
        self.setUp()
        self.test_segments_get_standard_terminology()
        if os.environ.get("MEDIMG_SLICER_TEST_INFERENCE") == "1":
            self.setUp()
            self.test_ct_segmentation()

    def _volume(self, array, name):
        import numpy as np

        return slicer.util.addVolumeFromArray(np.asarray(array), name=name)

    def test_suggestion(self):
        import numpy as np

        logic = MedImgAnalysisLogic()
        self.assertIsNotNone(logic.bundle, environment.not_found_message(MODULE_DIR))
        radiograph = self._volume(np.random.rand(1, 64, 64) * 4095, "radiograph")
        ct = self._volume(np.full((40, 64, 64), -1000.0), "ct")
        self.assertEqual(logic.suggestTask(radiograph), "xray_classification")
        self.assertEqual(logic.suggestTask(ct), "ct_segmentation")
        photo = slicer.util.addVolumeFromArray(
            np.random.randint(0, 256, (1, 48, 64, 3)).astype(np.uint8),
            name="photo",
            nodeClassName="vtkMRMLVectorVolumeNode",
        )
        self.assertEqual(logic.suggestTask(photo), "xray_classification")
        with self.assertRaisesRegex(ValueError, "colour"):
            logic.startAnalysis(photo, "ct_segmentation")
        self.delayDisplay("task suggestion passed")

    def test_segments_get_standard_terminology(self):
        """A result's segments carry the bundle's codes as Slicer terminology (a label map made here, no inference)."""
        import numpy as np

        logic = MedImgAnalysisLogic()
        labels = np.zeros((6, 16, 16), np.uint8)
        labels[1:5, 2:8, 2:8], labels[1:5, 9:14, 9:14] = 1, 4  # lungs, liver
        labelNode = slicer.util.addVolumeFromArray(labels, name="labels", nodeClassName="vtkMRMLLabelMapVolumeNode")
        path = logic.tempRoot() / "terminology_test_labels.nrrd"
        self.assertTrue(slicer.util.saveNode(labelNode, str(path)))
        slicer.mrmlScene.RemoveNode(labelNode)
        try:
            found = results.collect(logic.tasks["ct_segmentation"], [str(path)], logic.bundle.package_parent)
            segmentation = logic.importSegmentation(found, self._volume(labels.astype(float), "ct"), "ct labels")
        finally:
            path.unlink()
        segments = segmentation.GetSegmentation()
        lungs = segments.GetSegment(segments.GetSegmentIdBySegmentName("lungs"))
        self.assertEqual(lungs.GetTerminology(), next(s.terminology for s in found.segments if s.name == "lungs"))
        self.assertIn("~SCT^39607008^Lung~SCT^51440002^", lungs.GetTerminology())
        self.assertEqual(segments.GetSegmentIdBySegmentName("heart"), "")  # absent from the label map: no segment
        self.delayDisplay("segment terminology passed")

    def test_ct_segmentation(self):
        if os.environ.get("MEDIMG_SLICER_TEST_INFERENCE") != "1":
            self.skipTest("set MEDIMG_SLICER_TEST_INFERENCE=1 to run a CPU inference")
        import time

        import numpy as np

        ct = np.full((60, 96, 96), -1000.0)
        ct[10:50, 20:76, 20:76] = 40.0
        volume = self._volume(ct, "phantom ct")
        logic = MedImgAnalysisLogic()
        run = logic.startAnalysis(volume, "ct_segmentation", "cpu")
        deadline = time.monotonic() + self.INFERENCE_TIMEOUT_S
        while run.state == "running" and time.monotonic() < deadline:
            run.poll()
            time.sleep(0.2)
        if run.state == "running":
            run.cancel(block=True)
            self.fail(f"no result within {self.INFERENCE_TIMEOUT_S} s")
        self.assertEqual(run.state, "importing", run.error)
        summary = logic.importResults(run, volume)
        run.finish()
        self.assertEqual(summary, "8 labels")
        self.assertIsNotNone(slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode"))
        self.delayDisplay("CT segmentation passed")
