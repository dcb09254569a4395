"""L3 Locator: 3D Slicer module that finds the third lumbar vertebra (L3) in a CT.

Thin by design: the widget and logic convert the volume node to the pure
``L3LocatorLib.volume.Volume`` type, call ``L3LocatorLib.locate.locate`` and turn the
``L3Result`` into a markups point, a results table, slice-view jumps and the panel's
read-outs. All the algorithm lives in ``L3LocatorLib`` (no Slicer import there). Every Slicer
call made here is listed, with the Slicer versions that have it, in ``SLICER_CALLS.md``.

Loading this file at Slicer start-up imports only Slicer, numpy and ``L3LocatorLib.errors``:
the library (SciPy, SimpleITK, PaddlePaddle) is imported when L3 is first located.

Runs on Slicer 5.6 and later (Python 3.9 + numpy 1.26 up to Python 3.12 + numpy 2).
"""

from __future__ import annotations

import importlib
import logging
import os
import pathlib
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, Callable, Iterator, Optional

import numpy as np
import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

try:  # Slicer's translation functions (Base/Python/slicer/i18n.py)
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # a Slicer without them shows the English text

    def _(text: str) -> str:
        return text

    def translate(context: str, text: str) -> str:
        return text


# The library sits beside this file (installed the same way by the extension build).
_MODULE_DIR = pathlib.Path(__file__).resolve().parent
if str(_MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(_MODULE_DIR))

from L3LocatorLib.errors import DependencyError, InputError  # noqa: E402

if TYPE_CHECKING:
    from L3LocatorLib.result import L3Result
    from L3LocatorLib.volume import Volume

#: The module's logger (the batch script sets its level: Slicer's root logger shows DEBUG).
log = logging.getLogger("L3Locator")

#: Where users read how to use the module (the extension's README).
DOCUMENTATION_URL = "https://github.com/L3Locator/SlicerL3Locator#readme"
#: Attribute on the nodes this module makes (point list, results table): the ID of the
#: volume they belong to.
VOLUME_ID_ATTRIBUTE = "L3Locator.VolumeNodeID"
POINT_LABEL = "L3"
#: Label of a point whose level should be checked (``L3Result.needs_review``): the "?"
#: shows in the slice views, the reasons are in the point's description.
REVIEW_POINT_LABEL = "L3?"
#: Paddle's own package index for CUDA builds of PaddlePaddle 3
#: (PyPI only has the old 2.6 GPU build, which breaks on numpy 2).
PADDLE_CUDA_INDEX = "https://www.paddlepaddle.org.cn/packages/stable/{tag}/"
#: (minimum driver CUDA version, wheel tag), newest first.
PADDLE_CUDA_BUILDS = (((12, 6), "cu126"), ((11, 8), "cu118"))
PADDLE_DISTRIBUTIONS = ("paddlepaddle", "paddlepaddle-gpu")
#: Packages every Slicer release ships (import name, name users know): checked by import
#: and reported when broken, never installed or upgraded by this module (pip replacing
#: Slicer's own numpy or SciPy can break Slicer itself).
BUNDLED_PACKAGES = (("numpy", "NumPy"), ("scipy", "SciPy"), ("SimpleITK", "SimpleITK"),
                    ("PIL", "Pillow"))
DEVICE_CHOICES = ("auto", "cpu", "gpu")
#: Who asks for the packages, in Slicer's install dialogs.
REQUESTER = "L3 Locator"
VIEW_CHOICES = ("both", "frontal", "sagittal")
#: The Sample Data entry: a synthetic abdomen CT made on the spot (no download).
SAMPLE_NAME = "L3LocatorPhantom"
SAMPLE_PRESET, SAMPLE_SEED = "abdomen", 3


#
# L3Locator
#


class L3Locator(ScriptedLoadableModule):
    """Module description shown by Slicer (help, contributors, acknowledgement)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("L3 Locator")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = []
        self.parent.contributors = ["L3Locator contributors"]
        self.parent.helpText = _("""
Finds the third lumbar vertebra (L3) in a CT scan, the level at which body composition
(skeletal muscle, visceral and subcutaneous fat) is measured.
<p>Select a CT volume and click <b>Locate L3</b>. A neural network reads two maximum
intensity projections of the scan (frontal and sagittal) and finds the L3 level. No scan at
hand? Sample Data module, <b>L3LocatorPhantom</b>: a synthetic abdomen CT made on the spot.</p>
<p>The point <b>L3</b> it places is at the L3 vertebral body, at the level of the middle
of the L3 pedicles (level with the top edge of the transverse processes), the landmark
of the method this module follows (Kanavati et al. 2020). The panel shows:
<ul>
<li><b>Slice</b>: the index of the axial slice through that point (counted along the
volume's own slice axis, from 0), the slice used for body composition;</li>
<li><b>Position</b>: its superior-inferior (S) coordinate in mm;</li>
<li><b>Confidence</b>: 0 to 1; low values mean the scan looks unusual to the model,
check the level by counting the vertebrae;</li>
<li>the two projections with the predicted level drawn on them, to check at a glance.</li>
<li><b>Check</b>: when the level should be checked by eye, the point is labelled <b>L3?</b> and this
line says why: the confidence is low, the scan ends or begins within one vertebra of L3 (so
the level was counted from one end of the spine only), or the spine looks atypical.</li>
</ul>
The answer stays in the scene: the point, and a table "<i>volume</i> L3 result" with the
same columns as the batch's results file. When L3 is not in the scan (a chest-only CT, for
example) no point is placed and the panel says so. Always review the level before using it:
vertebral counting is hard with transitional vertebrae or 11 or 13 pairs of ribs.</p>
<p>Volumes loaded by the DICOM module with its acquisition geometry regularization
transform (missing slices, uneven spacing, gantry tilt) are searched on a resampled copy;
the point and slice refer to the volume as shown.</p>
<p>The same logic runs from the Python console
(<code>L3LocatorLogic().locate(volumeNode)</code>) and in batch
(<code>Scripts/locate_l3.py</code>).</p>
""") + _('<p>See the <a href="{url}">documentation</a>.</p>').format(url=DOCUMENTATION_URL)
        self.parent.acknowledgementText = _("""
Based on the method of Kanavati F. et al., "Automatic L3 slice detection in 3D CT images
using fully-convolutional networks" (2020), and its PaddlePaddle port. Built with
3D Slicer (www.slicer.org) and PaddlePaddle.
""")
        # Sample Data registers its sources once every module is loaded.
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# Sample data
#


def registerSampleData() -> None:
    """Add the synthetic phantom to the Sample Data module (its button makes it on the
    spot: ``loadSamplePhantom``). Nothing is downloaded."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="L3 Locator",
        sampleName=SAMPLE_NAME,
        uris=[], fileNames=[], nodeNames=[],  # nothing to download
        thumbnailFileName=str(_MODULE_DIR / "Resources" / "Icons" / "L3Locator.png"),
        customDownloader=loadSamplePhantom,
    )


def loadSamplePhantom(source=None):
    """Make the built-in synthetic abdomen CT (L3 in the field of view; a phantom, not a
    patient) and show it. Sample Data calls this with its data source (older Slicers with
    none). Returns the volume node."""
    from L3LocatorLib.phantoms import make_phantom

    with slicer.util.WaitCursor():
        volume = make_phantom(SAMPLE_SEED, preset=SAMPLE_PRESET)[0]
        node = slicer.util.addVolumeFromArray(np.asarray(volume.array), volume.ijk_to_ras,
                                              SAMPLE_NAME)
    slicer.util.setSliceViewerLayers(background=node, fit=True)
    return node


#
# Parameter node
#


@parameterNodeWrapper
class L3LocatorParameterNode:
    """What the module's panel remembers in the scene.

    inputVolume: the CT to search. modelPath: a model's metadata JSON, empty for the
    shipped model (a ``str``: Slicer's path connector would show an empty ``pathlib.Path``
    as "."; the logic gets a ``pathlib.Path``). device: where the network runs. views:
    which projection(s) answer. createPoint: place (or update) the ``L3`` point.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modelPath: str = ""
    device: Annotated[str, Choice(list(DEVICE_CHOICES))] = "auto"
    views: Annotated[str, Choice(list(VIEW_CHOICES))] = "both"
    createPoint: bool = True


#
# L3LocatorWidget
#


class L3LocatorWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: input, Locate L3, results, QA picture, advanced options."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._lastResult: Optional[L3Result] = None
        self._lastVolumeNode = None
        #: True while Locate runs (installing packages can take minutes)
        self._busy = False

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/L3Locator.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = L3LocatorLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.locateButton.connect("clicked(bool)", self.onLocateButton)
        self.ui.jumpButton.connect("clicked(bool)", self.onJumpButton)
        self.ui.inputSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputChanged)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelPathChanged)

        self.clearResults()
        self.initializeParameterNode()
        self.setupBodyComposition()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self.clearResults()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode and not firstVolumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode: Optional[L3LocatorParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self.ui.modelPathLineEdit.currentPath = self._parameterNode.modelPath
        self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        if self._busy:
            self.ui.locateButton.toolTip = _("L3 Locator is running.")
            self.ui.locateButton.enabled = False
        elif self._parameterNode and self._parameterNode.inputVolume:
            self.ui.locateButton.toolTip = _("Find L3 in the selected CT volume.")
            self.ui.locateButton.enabled = True
        else:
            self.ui.locateButton.toolTip = _("Select a CT volume first.")
            self.ui.locateButton.enabled = False

    def onModelPathChanged(self, path) -> None:
        if self._parameterNode:
            self._parameterNode.modelPath = str(path or "")

    def onInputChanged(self, node=None) -> None:
        if node is not self._lastVolumeNode:
            self.clearResults()

    # ------------------------------------------------------------ results

    def clearResults(self) -> None:
        self._lastResult = None
        self._lastVolumeNode = None
        for label in (self.ui.sliceValueLabel, self.ui.positionValueLabel,
                      self.ui.confidenceValueLabel, self.ui.reviewValueLabel):
            label.text = "-"
        self.ui.statusLabel.text = ""
        self.ui.qaImageLabel.clear()
        self.ui.qaImageLabel.text = _("The two projections with the L3 level appear here.")
        self.ui.jumpButton.enabled = False
        self.ui.jumpButton.toolTip = _("Locate L3 first.")

    def showStatus(self, text: str) -> None:
        """Say what is happening, in the panel and the status bar, and draw it now (pip
        can run for minutes before the next repaint)."""
        self.ui.statusLabel.text = text
        slicer.util.showStatusMessage(f"{REQUESTER}: {text}")
        slicer.app.processEvents()

    def onLocateButton(self) -> None:
        """Run the search on the selected volume; errors go to Slicer's error dialog.

        The button is off while it runs: installing packages keeps Slicer's event loop
        turning (pip's output is shown as it comes), so a second click would otherwise
        start a second installation. The wait cursor is on only while L3 is searched,
        never over a question to the user.
        """
        if self._busy:
            return
        params = self._parameterNode
        volumeNode = params.inputVolume if params else None
        self._busy = True
        self.ui.locateButton.enabled = False
        try:
            self.clearResults()
            self.showStatus(_("Locating L3..."))
            if not self._ensureDependencies():
                return
            try:
                with slicer.util.tryWithErrorDisplay(_("L3 Locator could not locate L3.")):
                    with slicer.util.WaitCursor():
                        result = self.logic.locate(
                            volumeNode,
                            createPoint=params.createPoint,
                            model=pathlib.Path(params.modelPath) if params.modelPath else None,
                            device=params.device,
                            views=params.views,
                        )
                    self.showResult(volumeNode, result)
            except Exception as error:  # already shown in a dialog by tryWithErrorDisplay
                log.debug("L3 Locator failed", exc_info=True)
                self._showFailure(str(error))
        finally:
            self._busy = False
            self._checkCanApply()

    def _ensureDependencies(self) -> bool:
        """PaddlePaddle installed (asking first) and Slicer's own packages working; False,
        with the reason shown once, when L3 cannot be located."""
        try:
            self.logic.ensureDependencies(interactive=True, onStatus=self.showStatus)
            return True
        except DependencyError as error:
            if not getattr(error, "alreadyShown", False):
                slicer.util.errorDisplay(str(error), windowTitle=_("L3 Locator"))
            else:  # Slicer showed its own dialog with pip's log: no second dialog
                log.error("%s", error)
            self._showFailure(str(error))
            return False

    def _showFailure(self, message: str) -> None:
        self.ui.statusLabel.text = _("Failed: {message}").format(message=message)
        slicer.util.showStatusMessage(_("L3 Locator failed; see the message in its panel."), 5000)

    def showResult(self, volumeNode, result: L3Result) -> None:
        self._lastResult = result
        self._lastVolumeNode = volumeNode
        if result.found:
            axis = result.slice_axis if result.slice_axis is not None else 2
            slice_text = str(result.slice_index)
            if axis != 2:
                slice_text += _(" (along the volume's {axis} axis)").format(axis="IJK"[axis])
            self.ui.sliceValueLabel.text = slice_text
            self.ui.positionValueLabel.text = f"S = {result.s_mm:.1f} mm"
            self.ui.confidenceValueLabel.text = f"{result.confidence:.2f}"
            status = result.message or _("L3 found.")
            self.ui.reviewValueLabel.text = (" ".join(result.review) if result.review else
                                             _("Nothing unusual was seen."))
            self.ui.jumpButton.enabled = True
            self.ui.jumpButton.toolTip = _("Show the L3 slice in the slice views.")
            summary = _("L3 at slice {slice} (S = {s:.1f} mm)").format(
                slice=result.slice_index, s=result.s_mm)
        else:
            self.ui.confidenceValueLabel.text = f"{result.confidence:.2f}"
            status = result.message or _("L3 is not in the field of view of this scan.")
            status += " " + _("No point was placed.")
            summary = _("L3 not found")
            if result.shown_voxel is not None:
                self.ui.jumpButton.enabled = True
                self.ui.jumpButton.toolTip = _("Show the most likely L3 slice (not confirmed: "
                                               "check it yourself).")
        self.ui.statusLabel.text = status
        self.showQaPicture(volumeNode, result)
        slicer.util.showStatusMessage(f"{REQUESTER}: {summary}.", 5000)

    def showQaPicture(self, volumeNode, result: L3Result) -> None:
        try:
            from L3LocatorLib.qa import save_qa_png

            path = os.path.join(slicer.app.temporaryPath, f"L3Locator-QA-{volumeNode.GetID()}.png")
            save_qa_png(result, path, title=volumeNode.GetName())
            pixmap = qt.QPixmap(path)
            if pixmap.width() > 400:
                pixmap = pixmap.scaledToWidth(400, qt.Qt.SmoothTransformation)
            self.ui.qaImageLabel.text = ""
            self.ui.qaImageLabel.setPixmap(pixmap)
            self.ui.qaImageLabel.toolTip = path
        except Exception as error:  # the answer stands without its picture
            log.warning("L3 Locator: no QA picture: %s", error)
            self.ui.qaImageLabel.text = _("QA picture not available ({error}).").format(
                error=error)

    def onJumpButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not show the L3 slice.")):
            if self._lastResult is not None and self._lastResult.shown_voxel is not None:
                self.logic.showL3Slice(self._lastVolumeNode, self._lastResult)


    # ------------------------------------------------------------ body composition step

    def setupBodyComposition(self) -> None:
        """The "Body composition" section (after Locate): Measure makes the segments and
        the table once; Recompute reads the segments as corrected in Segment Editor."""
        import ctk

        section = ctk.ctkCollapsibleButton()
        section.text = "Body composition"
        self.layout.addWidget(section)
        form = qt.QFormLayout(section)
        self.compositionHeight = qt.QDoubleSpinBox()
        self.compositionHeight.minimum = 0.0
        self.compositionHeight.maximum = 2.6
        self.compositionHeight.singleStep = 0.01
        self.compositionHeight.value = 0.0
        self.compositionHeight.toolTip = "Height in metres for SMI (0: unknown)"
        form.addRow("Height (m):", self.compositionHeight)
        self.compositionSlice = qt.QSpinBox()
        self.compositionSlice.minimum = -1
        self.compositionSlice.maximum = 100000
        self.compositionSlice.value = -1
        self.compositionSlice.specialValueText = "located L3"
        self.compositionSlice.toolTip = ("Slice to measure (index along the scan's slice axis); "
                                         "'located L3' measures on the slice Locate found")
        form.addRow("Slice:", self.compositionSlice)
        self.compositionMeasureButton = qt.QPushButton("Measure body composition")
        self.compositionRecomputeButton = qt.QPushButton("Recompute from segments")
        self.compositionStatus = qt.QLabel("")
        form.addRow(self.compositionMeasureButton)
        form.addRow(self.compositionRecomputeButton)
        form.addRow(self.compositionStatus)
        self.compositionLogic = L3LocatorCompositionLogic()
        self._composition = None  # (volume node, segmentation node, table node)
        self.compositionMeasureButton.connect("clicked(bool)", self.onMeasureComposition)
        self.compositionRecomputeButton.connect("clicked(bool)", self.onRecomputeComposition)

    def onMeasureComposition(self) -> None:
        volumeNode = self._lastVolumeNode
        with slicer.util.tryWithErrorDisplay("Body composition could not be measured."):
            if volumeNode is None:
                raise InputError("Locate L3 first, then measure (on the located L3 or on "
                                 "the slice you set).")
            height = self.compositionHeight.value or None
            sliceIndex = self.compositionSlice.value if self.compositionSlice.value >= 0 else None
            segmentation, table, result = self.compositionLogic.measure(
                volumeNode, self._lastResult, sliceIndex=sliceIndex, heightM=height)
            self._composition = (volumeNode, segmentation, table)
            self.compositionStatus.text = (
                f"Muscle {result.slice['muscle'].area_cm2:.1f} cm2; correct the segments in "
                "Segment Editor, then Recompute.")

    def onRecomputeComposition(self) -> None:
        with slicer.util.tryWithErrorDisplay("Body composition could not be recomputed."):
            if self._composition is None:
                raise InputError("Measure body composition first.")
            volumeNode, segmentation, table = self._composition
            result = self.compositionLogic.recompute(volumeNode, segmentation, table)
            self.compositionStatus.text = (
                f"Recomputed: muscle {result.slice['muscle'].area_cm2:.1f} cm2.")


#
# L3LocatorLogic
#


class L3LocatorLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, usable without the panel (Python console, batch)::

        logic = L3LocatorLogic()
        result = logic.locate(slicer.util.getNode("CT"))
        print(result.slice_index, result.l3_ras_mm, result.confidence)
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        #: the point list made or updated by the last ``locate`` (None when none)
        self.lastPointListNode = None
        #: the results table made or updated by the last ``locate`` (None when none)
        self.lastTableNode = None

    def getParameterNode(self):
        return L3LocatorParameterNode(super().getParameterNode())

    # ------------------------------------------------------------ node -> Volume

    @staticmethod
    def volumeFromNode(volumeNode) -> Volume:
        """The CT of a scalar volume node as a ``Volume`` in world RAS.

        The voxels are a read-only view of the node's (no copy, never written). The
        matrix is the node's IJK->RAS composed with its parent transforms to world.
        Non-linear parent transforms are refused here (``locate`` searches a hardened copy
        of such a volume instead: ``hardenedCopy``).
        """
        from L3LocatorLib.volume import Volume

        name = _checkScalarVolume(volumeNode)
        array = slicer.util.arrayFromVolume(volumeNode)
        matrix = _ijkToRas(volumeNode)
        transformNode = volumeNode.GetParentTransformNode()
        if transformNode is not None:
            if not transformNode.IsTransformToWorldLinear():
                raise InputError(_(
                    "{name} is under a non-linear (warping) transform ({transform}). Harden "
                    "the transform on the volume (Transforms module) or remove it, then locate "
                    "L3 again.").format(name=name, transform=transformNode.GetName()))
            toWorld = vtk.vtkMatrix4x4()
            transformNode.GetMatrixTransformToWorld(toWorld)
            matrix = slicer.util.arrayFromVTKMatrix(toWorld) @ matrix
        return Volume(array, matrix, name=name)

    @staticmethod
    def hasNonLinearTransform(volumeNode) -> bool:
        """True when the volume is under a warping transform, such as the DICOM module's
        acquisition geometry regularization transform (missing slices, uneven spacing,
        gantry tilt)."""
        transformNode = volumeNode.GetParentTransformNode()
        return transformNode is not None and not transformNode.IsTransformToWorldLinear()

    @staticmethod
    def hardenedCopy(volumeNode) -> Volume:
        """The CT as shown in the views when it is under a non-linear transform: a copy with
        the transform hardened (resampled onto a regular grid in world RAS, Slicer's own
        resampling), as a ``Volume``. The volume node, its transform and the scene are left
        as they were."""
        from L3LocatorLib.volume import Volume

        name = _checkScalarVolume(volumeNode)
        with temporaryNodes():
            copy = slicer.modules.volumes.logic().CloneVolume(
                slicer.mrmlScene, volumeNode, slicer.mrmlScene.GenerateUniqueName(name))
            copy.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
            if not copy.HardenTransform():
                raise InputError(_(
                    "{name}: its transform could not be applied to a copy. Harden the "
                    "transform on the volume (Transforms module), then locate L3 again."
                ).format(name=name))
            return Volume(np.array(slicer.util.arrayFromVolume(copy)), _ijkToRas(copy),
                          name=name)

    # ------------------------------------------------------------ locate

    def locate(self, volumeNode, createPoint: bool = True, model: Any = None,
               device: str = "auto", views: str = "both", pointListNode=None,
               jump: bool = True, createTable: bool = True, **opts) -> L3Result:
        """Find L3 in ``volumeNode`` and (``createPoint``) place the ``L3`` point.

        Args:
            volumeNode: a CT scalar volume node, any geometry, possibly under a linear
                transform or a non-linear one such as the DICOM module's acquisition
                geometry regularization (searched on a hardened copy; the slice and voxel
                reported are the volume's own). Never modified.
            createPoint: add or update the point list of this volume (one locked point
                labelled ``L3``); when L3 is not found, no point is placed and a point
                left by an earlier run on this volume is removed.
            model: a model's metadata JSON path (``str`` or ``pathlib.Path``), a loaded
                model, or None (shipped model).
            device: "auto", "cpu" or "gpu". views: "both", "frontal" or "sagittal".
            pointListNode: the point list to update (default: the one this module
                made for this volume, or a new one).
            jump: show the reported slice in the slice views (``showL3Slice``).
            createTable: keep the answer in the scene as a table node (one row, the
                columns of the batch's results file: ``resultsTable``).
            opts: passed on to ``L3LocatorLib.locate.locate``.

        Returns the ``L3Result``; raises ``L3LocatorError`` subclasses with messages for
        the user (not a CT, model missing, PaddlePaddle missing...).
        """
        from L3LocatorLib.locate import locate as locateVolume

        if isinstance(model, pathlib.PurePath):
            model = str(model)
        warped = (volumeNode is not None and volumeNode.IsA("vtkMRMLScalarVolumeNode")
                  and self.hasNonLinearTransform(volumeNode))
        volume = self.hardenedCopy(volumeNode) if warped else self.volumeFromNode(volumeNode)
        log.info("L3 Locator: locating L3 in %s", volume.name)
        result = locateVolume(volume, model=model, device=device, views=views, **opts)
        if warped:
            self._toNodeVoxels(volumeNode, volume, result)
        self.lastPointListNode = None
        self.lastTableNode = self.resultsTable(volumeNode, result) if createTable else None
        if result.found:
            log.info("L3 Locator: %s: slice %s, RAS %s, confidence %.2f", volume.name,
                     result.slice_index, result.l3_ras_mm, result.confidence)
            if createPoint:
                self.lastPointListNode = self.placePoint(volumeNode, result, pointListNode)
            if jump:
                self.showL3Slice(volumeNode, result)
        else:
            log.info("L3 Locator: %s: %s", volume.name, result.message)
            if createPoint:
                self.removeStalePoint(volumeNode, pointListNode)
        return result

    @staticmethod
    def _toNodeVoxels(volumeNode, searched: Volume, result: L3Result) -> None:
        """Re-express the voxels of a result found on a hardened copy (``searched``) in the
        volume node's own voxel grid (the DICOM slice order, for the DICOM module's
        regularization transform): world RAS -> the node's local RAS through the inverse of
        its transform -> IJK. The world point (``l3_ras_mm``) stays as found."""
        from L3LocatorLib.volume import slice_axis

        rasToIjk = np.linalg.inv(_ijkToRas(volumeNode))
        extent = np.array(volumeNode.GetImageData().GetDimensions()) - 1
        axis = slice_axis(_ijkToRas(volumeNode))

        def toNode(voxel):
            world = searched.ijk_to_ras_points(np.array([float(v) for v in voxel]))
            local = [0.0, 0.0, 0.0]
            volumeNode.TransformPointFromWorld([float(v) for v in world], local)
            ijk = rasToIjk @ np.append(local, 1.0)
            return [int(v) for v in np.clip(np.rint(ijk[:3]), 0, extent)]

        if result.l3_ijk is not None:
            result.l3_ijk = toNode(result.l3_ijk)
        if result.candidate_ijk is not None:
            result.candidate_ijk = toNode(result.candidate_ijk)
        if result.shown_voxel is not None:
            result.slice_axis = axis
            if result.found:
                result.slice_index = result.l3_ijk[axis]

    def _findOwnNode(self, className: str, volumeNode):
        """The node of ``className`` this module made for ``volumeNode``, or None."""
        scene = slicer.mrmlScene
        for index in range(scene.GetNumberOfNodesByClass(className)):
            node = scene.GetNthNodeByClass(index, className)
            if node.GetAttribute(VOLUME_ID_ATTRIBUTE) == volumeNode.GetID():
                return node
        return None

    def _newOwnNode(self, className: str, volumeNode, suffix: str):
        node = slicer.mrmlScene.AddNewNodeByClass(
            className, slicer.mrmlScene.GenerateUniqueName(f"{volumeNode.GetName()} {suffix}"))
        node.SetAttribute(VOLUME_ID_ATTRIBUTE, volumeNode.GetID())
        return node

    def findPointList(self, volumeNode):
        """The point list this module made for ``volumeNode``, or None."""
        return self._findOwnNode("vtkMRMLMarkupsFiducialNode", volumeNode)

    def placePoint(self, volumeNode, result: L3Result, pointListNode=None):
        """Add or update the point list of ``volumeNode`` with one locked point ``L3``
        (``L3?`` when the level should be checked) at ``result.l3_ras_mm`` (world RAS).
        Returns the point list node."""
        node = pointListNode or self.findPointList(volumeNode)
        if node is None:
            node = self._newOwnNode("vtkMRMLMarkupsFiducialNode", volumeNode, "L3")
            node.CreateDefaultDisplayNodes()
        model = " ".join(filter(None, (result.model_name, result.model_version))) or "unknown"
        description = (f"Third lumbar vertebra (L3): slice {result.slice_index}, "
                       f"S = {result.s_mm:.1f} mm, confidence {result.confidence:.2f}, "
                       f"model {model}")
        if result.review:
            description += ". Check: " + " ".join(result.review)
        wasModified = node.StartModify()
        try:
            node.SetLocked(False)
            node.RemoveAllControlPoints()
            r, a, s = (float(v) for v in result.l3_ras_mm)
            label = REVIEW_POINT_LABEL if result.needs_review else POINT_LABEL
            index = node.AddControlPointWorld(vtk.vtkVector3d(r, a, s), label)
            node.SetNthControlPointLabel(index, label)
            node.SetNthControlPointDescription(index, description)
            node.SetNthControlPointLocked(index, True)
            node.SetLocked(True)
        finally:
            node.EndModify(wasModified)
        return node

    def removeStalePoint(self, volumeNode, pointListNode=None) -> None:
        """L3 not found: a point from an earlier run on this volume would mislead."""
        node = pointListNode or self.findPointList(volumeNode)
        if node is not None and node.GetNumberOfControlPoints() > 0:
            log.info("L3 Locator: removing the earlier L3 point of %s", volumeNode.GetName())
            node.SetLocked(False)
            node.RemoveAllControlPoints()
            node.SetLocked(True)

    def resultsTable(self, volumeNode, result: L3Result):
        """Keep the answer in the scene: the table node of ``volumeNode`` (made once, updated
        by every run) with one row, the columns of a results file (``report.ROW_FIELDS``:
        what ``l3locator`` and the batch script write). Returns the table node; further
        sections (body composition) may add their own columns to it."""
        from L3LocatorLib.report import ROW_FIELDS, result_row

        row = result_row(volumeNode.GetName(), result)
        table = self._findOwnNode("vtkMRMLTableNode", volumeNode)
        if table is None:
            table = self._newOwnNode("vtkMRMLTableNode", volumeNode, "L3 result")
        wasModified = table.StartModify()
        try:
            table.RemoveAllColumns()
            for name in ROW_FIELDS:
                table.AddColumn().SetName(name)
            table.AddEmptyRow()
            for column, name in enumerate(ROW_FIELDS):
                table.SetCellText(0, column, _cellText(row[name]))
            table.SetLocked(True)  # a record of the run, not a form
        finally:
            table.EndModify(wasModified)
        return table

    def showL3Slice(self, volumeNode, result: L3Result) -> None:
        """Show the reported slice in the slice views.

        The CT becomes the background of every slice view, the views are rotated to the
        volume's planes (for an axial CT: back to standard axial/sagittal/coronal, even
        after an oblique volume turned them), then all views go through the CENTRE of the
        reported voxel slice (``sliceCentreRas``), so the red view shows exactly that
        slice, not a blend of two neighbouring slices.
        """
        centre = self.sliceCentreRas(volumeNode, result)
        slicer.util.setSliceViewerLayers(background=volumeNode)
        scene = slicer.mrmlScene
        for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
            scene.GetNthNodeByClass(index, "vtkMRMLSliceNode").RotateToVolumePlane(volumeNode)
        slicer.modules.markups.logic().JumpSlicesToLocation(
            centre[0], centre[1], centre[2], True)

    @staticmethod
    def sliceCentreRas(volumeNode, result: L3Result) -> list[float]:
        """World RAS (mm) of the centre of the voxel whose slice is shown
        (``result.shown_voxel``: L3's voxel, or the candidate's when L3 was not found), so
        the view lies on that slice exactly; through the volume's parent transforms,
        linear or not."""
        ijk = np.array([float(v) for v in result.shown_voxel] + [1.0])
        local = (_ijkToRas(volumeNode) @ ijk)[:3]
        world = [0.0, 0.0, 0.0]
        volumeNode.TransformPointToWorld([float(v) for v in local], world)
        return [float(v) for v in world]

    # ------------------------------------------------------------ dependencies

    @staticmethod
    def requirementsPath() -> pathlib.Path:
        return _MODULE_DIR / "Resources" / "requirements.txt"

    @classmethod
    def requirements(cls) -> list[str]:
        """What Slicer lacks and pip installs (``Resources/requirements.txt``)."""
        with open(cls.requirementsPath(), encoding="utf-8") as stream:
            return [line.split("#")[0].strip() for line in stream
                    if line.split("#")[0].strip() and not line.strip().startswith("-")]

    @staticmethod
    def missingRequirements(requirements: list[str]) -> list[str]:
        """The requirements not satisfied in this Python (PaddlePaddle counts when either
        its CPU or its CUDA build is installed)."""
        from importlib.metadata import PackageNotFoundError, version

        missing = []
        for requirement in requirements:
            name, specifier = _splitRequirement(requirement)
            names = PADDLE_DISTRIBUTIONS if name.lower() in PADDLE_DISTRIBUTIONS else (name,)
            satisfied = False
            for candidate in names:
                try:
                    installed = version(candidate)
                except PackageNotFoundError:
                    continue
                satisfied = _versionSatisfies(installed, specifier)
                if satisfied:
                    break
            if not satisfied:
                missing.append(requirement)
        return missing

    @staticmethod
    def checkBundledPackages() -> None:
        """Raise ``DependencyError`` when a package every Slicer ships (NumPy, SciPy,
        SimpleITK, Pillow) cannot be imported: a damaged Slicer, which L3 Locator reports
        and never repairs with pip."""
        broken = []
        for module, name in BUNDLED_PACKAGES:
            try:
                importlib.import_module(module)
            except ImportError as error:
                broken.append(f"{name} ({_firstLine(error)})")
        if broken:
            raise DependencyError(_(
                "This Slicer cannot load {packages}, which come with every 3D Slicer. L3 "
                "Locator does not reinstall Slicer's own Python packages (that can break "
                "Slicer): reinstall 3D Slicer, then try again.").format(
                    packages=", ".join(broken)))

    @staticmethod
    def nvidiaCudaVersion() -> Optional[tuple[int, int]]:
        """The CUDA version the NVIDIA driver supports, or None without an NVIDIA GPU."""
        smi = shutil.which("nvidia-smi")
        if not smi:
            return None
        try:
            output = subprocess.run([smi], capture_output=True, text=True, timeout=15).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        match = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", output or "")
        return (int(match.group(1)), int(match.group(2))) if match else None

    @staticmethod
    def paddleInstallArgs(paddleRequirement: str, cuda: Optional[tuple[int, int]]) -> list[str]:
        """pip arguments for PaddlePaddle: the CUDA build from Paddle's index when the
        driver supports one, else the CPU build from PyPI."""
        _name, specifier = _splitRequirement(paddleRequirement)
        if cuda is not None:
            for minimum, tag in PADDLE_CUDA_BUILDS:
                if cuda >= minimum:
                    return [f"paddlepaddle-gpu{specifier}", "--extra-index-url",
                            PADDLE_CUDA_INDEX.format(tag=tag)]
            log.warning("L3 Locator: the NVIDIA driver supports CUDA %d.%d only; "
                        "installing the CPU build of PaddlePaddle.", *cuda)
        return [f"paddlepaddle{specifier}"]

    def ensureDependencies(self, interactive: bool = True, install: bool = False,
                           onStatus: Optional[Callable[[str], None]] = None) -> bool:
        """Make sure L3 Locator can run: Slicer's own packages import
        (``checkBundledPackages``) and what Slicer lacks (``Resources/requirements.txt``:
        PaddlePaddle) is installed.

        interactive (the panel): ask the user first (our question, every Slicer version),
        then install with ``slicer.packaging.pip_ensure`` on Slicer 5.12+ (its progress
        dialog, its restart prompt), else ``slicer.util.pip_install`` under a busy cursor
        with ``onStatus`` saying what is happening. With an NVIDIA GPU, PaddlePaddle's
        CUDA build is installed from Paddle's own index. Nothing is installed in testing
        mode (returns False). Non-interactive (batch): installs, without any dialog, only
        when ``install`` is True, otherwise raises ``DependencyError`` naming what is
        missing.

        Returns True when everything is installed. Raises ``DependencyError`` when a
        bundled package is broken, the user declines, or the installation failed: pip's
        own failure (``subprocess.CalledProcessError``) or pip not starting (Slicer's
        "PythonSlicer executable not found" ``RuntimeError``) becomes a message that says
        what to do; ``alreadyShown`` is True on it when Slicer has shown its own dialog.
        """
        self.checkBundledPackages()
        missing = self.missingRequirements(self.requirements())
        if not missing:
            return True
        paddle = [r for r in missing if _splitRequirement(r)[0].lower() in PADDLE_DISTRIBUTIONS]
        others = [r for r in missing if r not in paddle]
        cuda = self.nvidiaCudaVersion() if paddle else None
        installs = ([others] if others else []) + (
            [self.paddleInstallArgs(paddle[0], cuda)] if paddle else [])
        listing = "\n".join(f"- {' '.join(args)}" for args in installs)
        if not interactive:
            if not install:
                raise DependencyError(_(
                    "L3 Locator needs Python packages that are not installed:\n{listing}\n"
                    "Run again with --install-dependencies, or install them with Slicer's "
                    "Python (PythonSlicer -m pip install ...).").format(listing=listing))
            self._pipInstall(installs, showProgress=False)
        elif slicer.app.testingEnabled():
            log.info("Testing mode: not installing %s", missing)
            return False
        else:
            self._askToInstall(listing, cuda if paddle else None)
            if onStatus is not None:
                onStatus(_("Installing {packages}: downloading about 100-500 MB can take "
                           "several minutes; pip's messages are in the Python console.").format(
                    packages=", ".join(args[0] for args in installs)))
            packaging = _slicerPackaging()
            if packaging is not None and not (paddle and cuda):
                with _pipErrors(installs, dialogShown=True):
                    packaging.pip_ensure(missing, prompt_install=False, requester=REQUESTER)
            else:
                self._pipInstall(installs, showProgress=True)
        still = self.missingRequirements(missing)
        if still:
            raise DependencyError(_(
                "These Python packages could not be installed: {packages}. See the Python "
                "console for pip's messages; restarting Slicer may help.").format(
                    packages=", ".join(still)))
        return True

    @staticmethod
    def _askToInstall(listing: str, cuda: Optional[tuple[int, int]]) -> None:
        """Our question before any download (raises ``DependencyError`` when declined)."""
        text = _("L3 Locator needs these Python packages, which are not installed:\n"
                 "{listing}\n\nInstall them now? This changes Slicer's Python environment "
                 "and downloads about 100-500 MB.").format(listing=listing)
        if cuda:
            text += "\n\n" + _(
                "An NVIDIA GPU was found (CUDA {major}.{minor}): the CUDA build of "
                "PaddlePaddle will be installed from Paddle's own package index, not "
                "PyPI.").format(major=cuda[0], minor=cuda[1])
        if not slicer.util.confirmOkCancelDisplay(
                text, _("L3 Locator - Install Python packages")):
            raise DependencyError(_(
                "L3 Locator cannot run without these Python packages:\n{listing}").format(
                    listing=listing))

    @staticmethod
    def _pipInstall(installs: list[list[str]], showProgress: bool) -> None:
        """Run pip for each argument list. Slicer 5.12+: ``slicer.packaging.pip_install``
        (its modal progress dialog only when ``showProgress``: never in batch, where no
        one can see it); older Slicer: ``slicer.util.pip_install`` under a busy cursor.
        Raises ``DependencyError`` when pip fails or cannot start."""
        packaging = _slicerPackaging()
        with _pipErrors(installs, dialogShown=packaging is not None and showProgress):
            for args in installs:
                if packaging is not None:
                    packaging.pip_install(args, show_progress=showProgress, requester=REQUESTER)
                else:
                    with slicer.util.WaitCursor():
                        slicer.util.pip_install(args)


class InstallError(DependencyError):
    """pip failed or could not start. ``alreadyShown``: Slicer (5.12+, with its progress
    dialog) has already shown its own error dialog with pip's log, so the panel shows this
    message without a second dialog."""

    def __init__(self, message: str, alreadyShown: bool = False) -> None:
        super().__init__(message)
        self.alreadyShown = alreadyShown


@contextmanager
def _pipErrors(installs: list[list[str]], dialogShown: bool) -> Iterator[None]:
    """Turn what Slicer's pip helpers raise into ``InstallError`` with a message for the
    user: ``CalledProcessError`` (pip failed, every version; ``dialogShown``: Slicer
    already showed its failure dialog), ``RuntimeError``/``OSError`` (pip could not be
    started, e.g. "PythonSlicer executable not found")."""
    try:
        yield
    except subprocess.CalledProcessError as error:
        raise InstallError(_installFailedMessage(installs, error), dialogShown) from None
    except (RuntimeError, OSError) as error:
        raise InstallError(_(
            "L3 Locator could not start pip to install its Python packages ({error}). "
            "Restart Slicer and try again; if it persists, reinstall 3D Slicer.").format(
                error=_firstLine(error))) from None


def _installFailedMessage(installs: list[list[str]], error: BaseException) -> str:
    """What to tell the user when pip failed: usually no internet access (or a proxy)."""
    status = getattr(error, "returncode", None)
    how = (_("pip stopped with status {status}").format(status=status)
           if status is not None else str(error))
    packages = " ".join(a for args in installs for a in args if not a.startswith(("-", "http")))
    return _(
        "L3 Locator could not install the Python packages it needs ({how}; pip's messages are "
        "in the Python console). Check the internet connection (or proxy settings) and try "
        "again. Without internet access: on a computer that has it, run "
        "'PythonSlicer -m pip download {packages} -d l3locator-wheels', copy the folder "
        "here and run 'PythonSlicer -m pip install --no-index --find-links l3locator-wheels "
        "{packages}' (README, 'Installing without internet access')."
    ).format(how=how, packages=packages)


def _checkScalarVolume(volumeNode) -> str:
    """The volume's name; raises ``InputError`` unless it is a grey-scale volume with data."""
    if volumeNode is None:
        raise InputError(_("No volume is selected. Select a CT volume."))
    name = volumeNode.GetName() or _("The volume")
    if not volumeNode.IsA("vtkMRMLScalarVolumeNode") or volumeNode.IsA(
            "vtkMRMLLabelMapVolumeNode"):
        raise InputError(_(
            "{name} is a {kind}, not a scalar (grey-scale) volume. Select the CT image itself, "
            "not a segmentation or label map.").format(name=name, kind=volumeNode.GetClassName()))
    imageData = volumeNode.GetImageData()
    if imageData is None or imageData.GetPointData() is None or \
            imageData.GetPointData().GetScalars() is None:
        raise InputError(_("{name} holds no voxel data. Load the CT again.").format(name=name))
    if imageData.GetNumberOfScalarComponents() != 1:
        raise InputError(_(
            "{name} has {count} values per voxel (colour or vector data); a grey-scale CT "
            "volume is needed.").format(name=name, count=imageData.GetNumberOfScalarComponents()))
    return name


def _ijkToRas(volumeNode) -> np.ndarray:
    """The node's own 4x4 IJK->RAS (local: parent transforms not applied)."""
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


@contextmanager
def temporaryNodes() -> Iterator[None]:
    """Remove, on the way out (also on an error), every node added to the scene inside the
    block: the hardened copy here, each scan of the batch script."""
    scene = slicer.mrmlScene
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    try:
        yield
    finally:
        for index in reversed(range(scene.GetNumberOfNodes())):
            node = scene.GetNthNode(index)
            if node is not None and node.GetID() not in before:
                scene.RemoveNode(node)


def _cellText(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_cellText(v) for v in value) + "]"
    return str(value)


def _firstLine(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _slicerPackaging():
    """``slicer.packaging`` when this Slicer has ``pip_ensure`` (5.12+), else None."""
    try:
        import slicer.packaging as packaging
    except ImportError:
        return None
    return packaging if hasattr(packaging, "pip_ensure") else None


def _splitRequirement(requirement: str) -> tuple[str, str]:
    """"paddlepaddle>=3.0" -> ("paddlepaddle", ">=3.0")."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)", requirement.split(";")[0])
    if not match:
        return requirement.strip(), ""
    return match.group(1), match.group(2).strip()


def _versionSatisfies(installed: str, specifier: str) -> bool:
    if not specifier:
        return True
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:  # without `packaging`, presence is enough
        return True
    return SpecifierSet(specifier).contains(installed, prereleases=True)



#
# Body composition (issue 26): a step after Locate. The array work is in
# L3LocatorLib.composition (slicer_bridge); this section only moves arrays in and out of
# MRML nodes. Nothing here recomputes masks on its own: "Measure" makes the segments
# once, "Recompute" reads them as the user left them.
#


class L3LocatorCompositionLogic(ScriptedLoadableModuleLogic):
    """Muscle, IMAT, VAT and SAT at L3 as a Segmentation the user corrects, and a Table::

        logic = L3LocatorCompositionLogic()
        segmentation, table, result = logic.measure(ctNode, l3Result, heightM=1.72)
        # ... correct the segments in Segment Editor ...
        result = logic.recompute(ctNode, segmentation, table)
    """

    #: node attributes remembering what a segmentation was measured on
    ATTRIBUTE_S_MM = "L3Locator.composition.sMm"
    ATTRIBUTE_SLAB_MM = "L3Locator.composition.slabHalfMm"
    ATTRIBUTE_PRESET = "L3Locator.composition.preset"
    ATTRIBUTE_HEIGHT = "L3Locator.composition.heightM"
    ATTRIBUTE_SEX = "L3Locator.composition.sex"
    ATTRIBUTE_WEIGHT = "L3Locator.composition.weightKg"

    def measure(self, volumeNode, l3Result: Optional[L3Result] = None,
                sliceIndex: Optional[int] = None, preset: str = "alberta",
                slabHalfMm: float = 5.0, heightM: Optional[float] = None,
                sex: Optional[str] = None, weightKg: Optional[float] = None,
                segmentationNode=None, tableNode=None):
        """Measure on the located L3 (or on ``sliceIndex`` along the scan's slice axis),
        make the Segmentation node (one segment per tissue, on the CT's grid) and fill the
        Table node. Returns ``(segmentationNode, tableNode, CompositionResult)``."""
        from L3LocatorLib.composition import measure_composition
        from L3LocatorLib.composition.cutoffs import Patient, checked_height
        from L3LocatorLib.composition.measure import where_to_measure

        volume = L3LocatorLogic.volumeFromNode(volumeNode)
        try:
            sMm, point = where_to_measure(volume, l3Result, sliceIndex)
        except ValueError as error:
            raise InputError(str(error)) from None
        patient = Patient(checked_height(heightM), "user" if heightM else "", sex, weightKg)
        result = measure_composition(volume, sMm, body_point_ras=point, preset=preset,
                                     slab_half_mm=slabHalfMm, patient=patient)
        segmentationNode = self.makeSegmentation(volumeNode, volume, result, segmentationNode)
        for name, value in ((self.ATTRIBUTE_S_MM, sMm), (self.ATTRIBUTE_SLAB_MM, slabHalfMm),
                            (self.ATTRIBUTE_PRESET, preset), (self.ATTRIBUTE_HEIGHT, heightM),
                            (self.ATTRIBUTE_SEX, sex), (self.ATTRIBUTE_WEIGHT, weightKg)):
            segmentationNode.SetAttribute(name, "" if value is None else str(value))
        tableNode = self.fillTable(result, tableNode, volumeNode.GetName())
        return segmentationNode, tableNode, result

    def makeSegmentation(self, volumeNode, volume: Volume, result, segmentationNode=None):
        """One segment per tissue (usual colours), each tagged with its HU range."""
        from L3LocatorLib.composition.slicer_bridge import (
            TAG_HU_RANGE,
            TAG_TISSUE,
            masks_to_volume,
            segment_specs,
        )

        if segmentationNode is None:
            segmentationNode = slicer.mrmlScene.AddNewNodeByClass(
                "vtkMRMLSegmentationNode", f"{volumeNode.GetName()} body composition")
        segmentationNode.CreateDefaultDisplayNodes()
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        segmentationNode.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
        segmentation = segmentationNode.GetSegmentation()
        segmentation.RemoveAllSegments()
        arrays = masks_to_volume(volume, result)
        ijkToRas = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(ijkToRas)
        for spec in segment_specs(result.preset):
            image = _orientedImage(arrays[spec["tissue"]], ijkToRas)
            segmentId = segmentationNode.AddSegmentFromBinaryLabelmapRepresentation(
                image, spec["name"], spec["colour"])
            segment = segmentation.GetSegment(segmentId)
            segment.SetTag(TAG_TISSUE, spec["tissue"])
            low, high = spec["hu_range"]
            segment.SetTag(TAG_HU_RANGE, f"{low:g} {high:g}")
        return segmentationNode

    def readSegments(self, segmentationNode, volumeNode) -> dict:
        """The tissue segments as uint8 arrays ``[k, j, i]`` on the CT's grid."""
        from L3LocatorLib.composition.slicer_bridge import TAG_TISSUE

        shape = slicer.util.arrayFromVolume(volumeNode).shape
        ijkToRas = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(ijkToRas)
        rasToIjk = vtk.vtkMatrix4x4()
        vtk.vtkMatrix4x4.Invert(ijkToRas, rasToIjk)
        segmentation = segmentationNode.GetSegmentation()
        arrays = {}
        for index in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(index)
            tissue = _segmentTag(segmentation.GetSegment(segmentId), TAG_TISSUE)
            if not tissue:
                continue
            image = slicer.vtkOrientedImageData()
            segmentationNode.GetBinaryLabelmapRepresentation(segmentId, image)
            arrays[tissue] = _arrayOnGrid(image, segmentId, shape, rasToIjk)
        return arrays

    def recompute(self, volumeNode, segmentationNode, tableNode=None):
        """The table from the segments as they are now (after Segment Editor edits)."""
        from L3LocatorLib.composition.cutoffs import Patient
        from L3LocatorLib.composition.slicer_bridge import recompute

        def attribute(name):
            value = segmentationNode.GetAttribute(name)
            return value if value else None

        sMm = attribute(self.ATTRIBUTE_S_MM)
        if sMm is None:
            raise InputError("This segmentation was not made by Body composition: measure "
                             "first, then correct the segments and recompute.")
        height = attribute(self.ATTRIBUTE_HEIGHT)
        weight = attribute(self.ATTRIBUTE_WEIGHT)
        patient = Patient(float(height) if height else None, "user" if height else "",
                          attribute(self.ATTRIBUTE_SEX), float(weight) if weight else None)
        volume = L3LocatorLogic.volumeFromNode(volumeNode)
        result = recompute(volume, float(sMm), float(attribute(self.ATTRIBUTE_SLAB_MM) or 0),
                           self.readSegments(segmentationNode, volumeNode),
                           attribute(self.ATTRIBUTE_PRESET), patient)
        self.fillTable(result, tableNode, volumeNode.GetName())
        return result

    @staticmethod
    def fillTable(result, tableNode=None, name: str = ""):
        """Write ``slicer_bridge.table_rows`` into a Table node (all columns text)."""
        from L3LocatorLib.composition.slicer_bridge import TABLE_COLUMNS, table_rows

        if tableNode is None:
            tableNode = slicer.mrmlScene.AddNewNodeByClass(
                "vtkMRMLTableNode", f"{name} body composition".strip())
        table = tableNode.GetTable()
        table.Initialize()
        rows = table_rows(result)
        for column, title in enumerate(TABLE_COLUMNS):
            values = vtk.vtkStringArray()
            values.SetName(title)
            for row in rows:
                values.InsertNextValue(row[column])
            table.AddColumn(values)
        tableNode.Modified()
        return tableNode

    @staticmethod
    def setMaskingRange(segmentEditorNode, segmentationNode, segmentId) -> tuple:
        """Set the Segment Editor's intensity masking range to the segment's HU range
        (editing muscle paints only -29..150 HU with the Alberta preset)."""
        from L3LocatorLib.composition.slicer_bridge import TAG_HU_RANGE

        text = _segmentTag(segmentationNode.GetSegmentation().GetSegment(segmentId),
                           TAG_HU_RANGE)
        low, high = (float(v) for v in text.split())
        if hasattr(segmentEditorNode, "SetSourceVolumeIntensityMask"):  # Slicer 5.4+
            segmentEditorNode.SetSourceVolumeIntensityMask(True)
            segmentEditorNode.SetSourceVolumeIntensityMaskRange(low, high)
        else:
            segmentEditorNode.SetMasterVolumeIntensityMask(True)
            segmentEditorNode.SetMasterVolumeIntensityMaskRange(low, high)
        segmentEditorNode.SetSelectedSegmentID(segmentId)
        return low, high


def _segmentTag(segment, tag: str) -> str:
    """A segment's tag value ("" when absent)."""
    holder = vtk.reference("")
    return str(holder) if segment is not None and segment.GetTag(tag, holder) else ""


def _orientedImage(array, ijkToRas):
    """A binary labelmap (uint8 ``[k, j, i]``) on the volume's grid as vtkOrientedImageData."""
    from vtk.util import numpy_support

    image = slicer.vtkOrientedImageData()
    k, j, i = array.shape
    image.SetDimensions(i, j, k)
    image.SetImageToWorldMatrix(ijkToRas)
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True,
                                         array_type=vtk.VTK_UNSIGNED_CHAR)
    image.GetPointData().SetScalars(scalars)
    return image


def _arrayOnGrid(image, segmentId, shape, rasToIjk):
    """A segment's labelmap (its own extent, the volume's lattice) as uint8 ``[k, j, i]`` of
    the volume's shape; a labelmap on another lattice is refused."""
    from vtk.util import numpy_support

    out = np.zeros(shape, np.uint8)
    extent = image.GetExtent()
    if extent[1] < extent[0] or image.GetPointData().GetScalars() is None:
        return out
    imageToWorld = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(imageToWorld)
    toIjk = vtk.vtkMatrix4x4()
    vtk.vtkMatrix4x4.Multiply4x4(rasToIjk, imageToWorld, toIjk)
    matrix = slicer.util.arrayFromVTKMatrix(toIjk)
    if not np.allclose(matrix[:3, :3], np.eye(3), atol=1e-3) or not np.allclose(
            matrix[:3, 3], np.round(matrix[:3, 3]), atol=1e-3):
        raise InputError(f"Segment {segmentId} is not on the CT's voxel grid; recompute "
                         "needs the segments on the CT's grid (Segment Editor's source "
                         "geometry = the CT).")
    offset = np.round(matrix[:3, 3]).astype(int)
    dims = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
    values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    values = values.reshape(dims[2], dims[1], dims[0])
    low = offset + np.array([extent[0], extent[2], extent[4]])
    kji_low = low[::-1]
    kji_high = kji_low + np.array(values.shape)
    src = tuple(slice(max(0, -lo), s - max(0, hi - n)) for lo, hi, n, s in
                zip(kji_low, kji_high, shape, values.shape))
    dst = tuple(slice(max(0, lo), min(n, hi)) for lo, hi, n in zip(kji_low, kji_high, shape))
    out[dst] = values[src] != 0
    return out


#
# L3LocatorTest
#


class L3LocatorTest(ScriptedLoadableModuleTest):
    """Self test, run inside Slicer with no download: synthetic CT phantoms. The tests
    that need PaddlePaddle are skipped (``skipTest``) where it is not installed."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_GeometryRoundTrip()
        self.setUp()
        self.test_PhantomWithL3()
        self.setUp()
        self.test_PhantomWithoutL3()

    def _requireDependencies(self) -> None:
        logic = L3LocatorLogic()
        missing = logic.missingRequirements(logic.requirements())
        if missing:
            self.skipTest(f"PaddlePaddle is not installed ({', '.join(missing)})")

    def _phantomNode(self, preset: str, seed: int, name: str):
        from L3LocatorLib.phantoms import make_phantom

        volume, truth = make_phantom(seed, preset=preset)
        node = slicer.util.addVolumeFromArray(np.array(volume.array), volume.ijk_to_ras, name)
        return node, truth

    def test_GeometryRoundTrip(self):
        """The node's IJK->RAS (with a parent transform) reaches the Volume exactly."""
        self.delayDisplay("Node to Volume geometry")
        ijkToRas = np.array([[0, -0.8, 0, 10], [0.7, 0, 0, -20], [0, 0, 2.5, 30], [0, 0, 0, 1.0]])
        node = slicer.util.addVolumeFromArray(np.zeros((4, 5, 6), dtype=np.int16), ijkToRas, "g")
        transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "t")
        toParent = np.eye(4)
        toParent[:3, 3] = [5, 6, 7]
        transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(toParent))
        node.SetAndObserveTransformNodeID(transform.GetID())
        volume = L3LocatorLogic.volumeFromNode(node)
        self.assertTrue(np.allclose(volume.ijk_to_ras, toParent @ ijkToRas))
        self.assertEqual(volume.array.shape, (4, 5, 6))

    def test_PhantomWithL3(self):
        self.delayDisplay("Phantom with L3")
        self._requireDependencies()
        node, truth = self._phantomNode("abdomen", 3, "PhantomAbdomen")
        before = np.array(slicer.util.arrayFromVolume(node))
        logic = L3LocatorLogic()
        result = logic.locate(node)
        self.assertTrue(result.found, result.message)
        pointList = logic.lastPointListNode
        self.assertIsNotNone(pointList)
        self.assertEqual(pointList.GetNumberOfControlPoints(), 1)
        self.assertEqual(pointList.GetNthControlPointLabel(0), POINT_LABEL)
        position = [0.0, 0.0, 0.0]
        pointList.GetNthControlPointPositionWorld(0, position)
        # the point's level lies within L3 (with 5 mm to spare) and near its body centre
        self.assertGreaterEqual(position[2], truth.l3_bottom_s_mm - 5.0)
        self.assertLessEqual(position[2], truth.l3_top_s_mm + 5.0)
        self.assertLess(float(np.linalg.norm(np.subtract(position, truth.l3_centre_ras))), 30.0)
        self.assertTrue(np.array_equal(before, slicer.util.arrayFromVolume(node)))
        self.assertEqual(logic.lastTableNode.GetCellText(0, 2), "ok")
        self.delayDisplay("Test passed: L3 point within tolerance")

    def test_PhantomWithoutL3(self):
        self.delayDisplay("Phantom without L3 (chest)")
        self._requireDependencies()
        node, truth = self._phantomNode("chest", 5, "PhantomChest")
        self.assertFalse(truth.l3_in_fov)
        logic = L3LocatorLogic()
        count = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode")
        result = logic.locate(node)
        self.assertFalse(result.found)
        self.assertIsNone(logic.lastPointListNode)
        self.assertEqual(
            slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode"), count)
        self.delayDisplay("Test passed: no point without L3")
