"""The faked parts of the stand-in: ``slicer.app``, module objects, and the
``slicer.util`` functions that need the Qt application in real Slicer."""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import types
from pathlib import Path


class App:
    """What ``slicer.app`` (qSlicerApplication) answers, without Qt."""

    applicationName = "3D Slicer stand-in"
    majorVersion = 5
    minorVersion = 8

    def __init__(self):
        self.temporaryPath = tempfile.mkdtemp(prefix="slicer-standin-")
        self._testing = False
        self._scene = None
        self._appLogic = None
        self.connections = []
        self.exitCode = None

    def _reset(self, scene, appLogic, testing):
        self._scene = scene
        self._appLogic = appLogic
        self._testing = testing
        self.exitCode = None

    def setTestingEnabled(self, enabled=True):
        self._testing = bool(enabled)

    def testingEnabled(self):
        return self._testing

    def mrmlScene(self):
        return self._scene

    def applicationLogic(self):
        return self._appLogic

    def processEvents(self, *args):
        pass

    def setOverrideCursor(self, cursor):
        import qt

        qt.QApplication.setOverrideCursor(cursor)

    def restoreOverrideCursor(self):
        import qt

        qt.QApplication.restoreOverrideCursor()

    def topLevelWidgets(self):
        return []  # no main window: slicer.util.mainWindow() returns None

    def connect(self, signal, slot):
        self.connections.append((signal, slot))
        return True

    def moduleManager(self):
        return types.SimpleNamespace(connect=lambda *a: True, disconnect=lambda *a: True)

    def userSettings(self):
        import qt

        return qt.QSettings()

    def exit(self, status=0):
        self.exitCode = status


class Module:
    """``slicer.modules.<name>``: its ``logic()`` and ``path``."""

    def __init__(self, name, logic=None, path=""):
        self.name = name
        self._logic = logic
        self.path = path

    def logic(self):
        return self._logic


def _realUtilPath() -> Path:
    spec = importlib.util.find_spec("slicer_core")
    if spec is None or not spec.origin:
        raise ImportError("slicer-core is not installed; the slicer stand-in needs it")
    path = Path(spec.origin).resolve().parent.parent / "slicer" / "util.py"
    if not path.is_file():
        raise ImportError(f"Slicer's util.py is not where slicer-core puts it: {path}")
    return path


def load_util():
    """Slicer's own util.py (from the slicer-core wheel) with the Qt-application parts
    replaced. The replacements are set on that module object, so Slicer's functions
    that call them (``tryWithErrorDisplay`` -> ``errorDisplay``) reach them too."""
    spec = importlib.util.spec_from_file_location("slicer.util", _realUtilPath())
    util = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(util)
    for name, value in _OVERRIDES.items():
        setattr(util, name, value)
    util.displayed = DISPLAYED
    util.pipInstalls = PIP_INSTALLS
    util.confirmAnswers = CONFIRM_ANSWERS
    util.STANDIN_OVERRIDES = sorted(_OVERRIDES)
    return util


# ----------------------------------------------------------------- display helpers

#: (kind, text, windowTitle) of everything that would have been shown to the user
DISPLAYED: list = []
#: what confirm* dialogs answer, first in first out; empty -> "Cancel"/"No"
CONFIRM_ANSWERS: list = []
#: requirement lists passed to pip_install (nothing is ever installed)
PIP_INSTALLS: list = []


def _display(kind, level):
    def show(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
        logging.log(level, text)
        DISPLAYED.append((kind, str(text), windowTitle))

    show.__name__ = kind + "Display"
    return show


def _confirm(kind):
    def confirm(text, windowTitle=None, parent=None, **kwargs):
        import slicer

        DISPLAYED.append((kind, str(text), windowTitle))
        if slicer.app.testingEnabled():
            return True  # what Slicer's helpers return in testing mode
        return bool(CONFIRM_ANSWERS.pop(0)) if CONFIRM_ANSWERS else False

    confirm.__name__ = kind + "Display"
    return confirm


def delayDisplay(message, autoCloseMsec=1000, parent=None, **kwargs):
    logging.info(message)
    DISPLAYED.append(("delay", str(message), None))


def showStatusMessage(message, duration=0):
    DISPLAYED.append(("status", str(message), None))
    return True


def messageBox(text, parent=None, **kwargs):
    DISPLAYED.append(("messageBox", str(text), kwargs.get("windowTitle")))


def pip_install(requirements, **kwargs):
    PIP_INSTALLS.append(requirements)
    logging.info("stand-in pip_install (nothing installed): %s", requirements)


# ------------------------------------------------------------------ data I/O

def loadNodeFromFile(filename, filetype=None, properties=None, returnNode=False):
    """Like Slicer's (which asks qSlicerCoreIOManager), for volumes: the IO manager's
    volume reader (qSlicerVolumesReader) calls vtkSlicerVolumesLogic.AddArchetypeVolume
    with these loading options; so does this."""
    import vtk

    import slicer

    if filetype not in (None, "VolumeFile"):
        raise RuntimeError(f"stand-in loadNodeFromFile: file type {filetype} is not supported")
    properties = dict(properties or {})
    filename = str(filename)
    name = properties.get("name") or _nodeNameFromFile(filename)
    options = 0
    options |= 1 if properties.get("labelmap") else 0
    options |= 2 if properties.get("center") else 0
    options |= 4 if properties.get("singleFile") else 0
    options |= 8 if properties.get("autoWindowLevel", True) else 0
    options |= 16 if properties.get("discardOrientation") else 0
    fileList = None
    if properties.get("fileNames"):
        fileList = vtk.vtkStringArray()
        for name_ in properties["fileNames"]:
            fileList.InsertNextValue(str(name_))
    messages = slicer.vtkMRMLMessageCollection()
    logic = slicer.modules.volumes.logic()
    node = logic.AddArchetypeVolume(filename, name, options, fileList, messages)
    if returnNode:
        return (node is not None), node
    if node is None:
        message = f"Failed to load node from file: {filename}"
        if messages.GetNumberOfMessages() > 0:
            message += "\n" + messages.GetAllMessagesAsString()
        raise RuntimeError(message)
    return node


def loadVolume(filename, properties=None, returnNode=False):
    return loadNodeFromFile(filename, "VolumeFile", properties, returnNode)


def saveNode(node, filename, properties=None):
    """Like Slicer's: writes one node with its default storage node's writer."""
    storage = node.GetStorageNode()
    if storage is None or not storage.SupportedFileType(str(filename)):
        storage = node.CreateDefaultStorageNode()
        storage.UnRegister(None)
        node.GetScene().AddNode(storage)
        node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(filename))
    success = bool(storage.WriteData(node))
    if not success:
        logging.error("Failed to save node to file: %s", filename)
    return success


def _nodeNameFromFile(filename):
    base = os.path.basename(filename)
    for ext in (".nii.gz", ".seg.nrrd", ".nrrd", ".nii", ".mha", ".mhd", ".nhdr", ".dcm"):
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return os.path.splitext(base)[0]


_OVERRIDES = {
    "errorDisplay": _display("error", logging.ERROR),
    "warningDisplay": _display("warning", logging.WARNING),
    "infoDisplay": _display("info", logging.INFO),
    "confirmOkCancelDisplay": _confirm("confirmOkCancel"),
    "confirmYesNoDisplay": _confirm("confirmYesNo"),
    "delayDisplay": delayDisplay,
    "showStatusMessage": showStatusMessage,
    "messageBox": messageBox,
    "pip_install": pip_install,
    "loadNodeFromFile": loadNodeFromFile,
    "loadVolume": loadVolume,
    "saveNode": saveNode,
}
