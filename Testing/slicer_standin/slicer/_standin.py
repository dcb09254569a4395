"""The faked parts of the stand-in: ``slicer.app``, module objects, and the
``slicer.util`` functions that need the Qt application in real Slicer."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

#: Slicer versions the stand-in imitates where they differ for this module:
#: 5.6-5.10 have no ``slicer.packaging`` and ``slicer.util.pip_install`` runs pip through
#: ``logProcessOutput``; 5.12 adds ``slicer.packaging`` (``pip_ensure``, ``pip_install``
#: with a modal progress dialog by default) and ``slicer.util.pip_install`` delegates there.
VERSIONS = ("5.6", "5.8", "5.10", "5.12")
DEFAULT_VERSION = "5.12"


class CommandOptions:
    """The part of qSlicerCommandOptions a script sees. ``runPythonAndExit`` is False for
    ``--python-script`` (only ``--testing``, ``-c`` or a script given as the first bare
    argument set it): such a Slicer keeps running after the script unless it calls
    ``slicer.util.exit`` (Base/QTCore/qSlicerCoreApplication.cxx)."""

    def __init__(self):
        self.runPythonAndExit = False
        self.noMainWindow = True
        self.pythonScript = ""

    def isTestingEnabled(self):
        import slicer

        return slicer.app.testingEnabled()


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
        self._commandOptions = CommandOptions()
        self.version = DEFAULT_VERSION

    def _reset(self, scene, appLogic, testing, version):
        self._scene = scene
        self._appLogic = appLogic
        self._testing = testing
        self.exitCode = None
        self._commandOptions = CommandOptions()
        self.version = version
        self.majorVersion, self.minorVersion = (int(v) for v in version.split("."))

    def commandOptions(self):
        return self._commandOptions

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

    def translate(self, context, text):
        """QCoreApplication::translate: no translation is loaded (English)."""
        return text

    def emitStartupCompleted(self):
        """What qSlicerApplication does once every module is loaded (stand-in only): call
        what was connected to ``startupCompleted()``."""
        for signal, slot in self.connections:
            if signal == "startupCompleted()":
                slot()

    def exit(self, status=0):
        """QCoreApplication::exit: asks the event loop to end with ``status``; the Python
        code that called it goes on running (``run_slicer.py`` ends the process after the
        script returns, as Slicer's event loop would)."""
        self.exitCode = status

    def layoutManager(self):
        return None  # no main window


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
    util.pipFailure = PIP_FAILURE
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
#: ``PIP_FAILURE["returncode"]``: when set, pip "runs" and exits with it, as pip does
#: offline (every Slicer version then raises ``subprocess.CalledProcessError``);
#: ``PIP_FAILURE["pythonSlicerMissing"]``: pip cannot even start (Slicer's
#: ``_executePythonModule`` raises ``RuntimeError("PythonSlicer executable not found")``)
PIP_FAILURE: dict = {"returncode": 0, "pythonSlicerMissing": False}


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


def run_pip(requirements):
    """What ``python -m pip install ...`` would do here: record; fail when told to, the
    way Slicer's ``logProcessOutput`` reports it (``CalledProcessError`` with pip's
    command line). Nothing is ever installed."""
    if isinstance(requirements, str):
        requirements = requirements.split()
    import slicer

    command = [sys.executable, "-m", "pip", "install", *requirements]
    if PIP_FAILURE.get("pythonSlicerMissing"):  # util._executePythonModule, before pip runs
        raise RuntimeError("PythonSlicer executable not found")
    PIP_INSTALLS.append(list(requirements))
    slicer.app.processEvents()  # logProcessOutput does, per line of pip's output
    returncode = PIP_FAILURE.get("returncode") or 0
    if returncode:
        print("ERROR: Could not find a version that satisfies the requirement "
              f"{requirements[0]} (from versions: none)", flush=True)
        raise subprocess.CalledProcessError(returncode, command)
    logging.info("stand-in pip install (nothing installed): %s", requirements)


def pip_install(requirements, **kwargs):
    """``slicer.util.pip_install``: 5.6-5.10 run pip themselves (``_executePythonModule`` ->
    ``logProcessOutput``); 5.12 delegates to ``slicer.packaging.pip_install``."""
    import slicer

    if slicer.app.minorVersion >= 12:
        from slicer.packaging import pip_install as packagingPipInstall

        return packagingPipInstall(requirements, **kwargs)
    if kwargs:
        raise TypeError(f"pip_install() got unexpected keyword arguments {sorted(kwargs)} "
                        f"(Slicer {slicer.app.version})")
    return run_pip(requirements)


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
