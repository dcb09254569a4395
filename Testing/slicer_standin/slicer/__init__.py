"""Stand-in for 3D Slicer's ``slicer`` Python package, for tests without the application.

What is real and what is faked (see README.md beside this folder):

- REAL: every ``vtkMRML*`` / ``vtkSlicer*Logic`` class is slicer_core's (PyPI ``slicer-core``,
  Slicer's own compiled MRML library); ``slicer.mrmlScene`` is a real ``vtkMRMLScene``
  set up by a real ``vtkSlicerApplicationLogic`` (selection and interaction singletons),
  with the Red/Yellow/Green slice nodes that Slicer's layout manager would add;
  ``slicer.modules.markups.logic()`` and ``slicer.modules.volumes.logic()`` are real
  ``vtkSlicerMarkupsLogic`` / ``vtkSlicerVolumesLogic``; ``slicer.util`` IS Slicer's own
  ``Base/Python/slicer/util.py`` (the copy shipped in the slicer-core wheel), so
  ``arrayFromVolume``, ``updateVolumeFromArray``, ``arrayFromVTKMatrix``, ``tryWithErrorDisplay``,
  ``VTKObservationMixin``, ``loadUI``, ``childWidgetVariables`` ... run Slicer's code.
- FAKED: ``slicer.app`` (no Qt application), the display helpers of ``slicer.util``
  (``errorDisplay`` and friends record what would be shown), ``loadVolume`` /
  ``loadNodeFromFile`` / ``saveNode`` (Slicer routes them through the Qt-side
  ``qSlicerCoreIOManager``; here they call the same MRML logic the IO manager's
  volume reader calls: ``vtkSlicerVolumesLogic.AddArchetypeVolume`` and storage nodes),
  ``pip_install`` (records, never installs), ``qt``/``ctk`` widgets, the
  ``parameterNodeWrapper`` (same API, fewer types) and ``ScriptedLoadableModule`` bases;
  ``slicer.i18n`` (Slicer's ``tr``/``translate``, no translations loaded) and the
  ``SampleData`` module beside this package (registration with Slicer's signature; its
  button's call to a custom downloader) are small re-implementations.

Import it by putting ``Testing/slicer_standin`` first on ``sys.path``; ``reset()``
gives a fresh scene between tests.
"""

from __future__ import annotations

import sys
import types

import slicer_core as _core
import vtk  # noqa: F401  (real VTK, as in Slicer)
from slicer_core import *  # noqa: F401,F403  (real MRML classes)

from . import _standin

#: Fake Qt-side classes that PythonQt exposes in the ``slicer`` namespace.
from ._qmrml import qMRMLNodeComboBox, qMRMLWidget, qSlicerWidget  # noqa: E402,F401

app = _standin.App()
mrmlScene = None
modules = types.SimpleNamespace()
selfTests: dict = {}

util = _standin.load_util()
sys.modules[__name__ + ".util"] = util


def reset(testing: bool = False, version: str = _standin.DEFAULT_VERSION):
    """Fresh scene, logics and recorded displays; ``version`` ("5.6" ... "5.12") picks
    the Slicer whose Python API differences to imitate. Returns the new scene."""
    global mrmlScene
    if version not in _standin.VERSIONS:
        raise ValueError(f"the stand-in imitates Slicer {_standin.VERSIONS}, not {version}")
    scene = _core.vtkMRMLScene()
    appLogic = _core.vtkSlicerApplicationLogic()
    appLogic.SetMRMLScene(scene)  # adds the selection and interaction singletons
    for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
        sliceNode = scene.CreateNodeByClass("vtkMRMLSliceNode")
        sliceNode.UnRegister(None)
        sliceNode.SetName(name)
        sliceNode.SetLayoutName(name)
        sliceNode.SetSingletonTag(name)
        sliceNode.SetDefaultOrientation(orientation)
        sliceNode.SetOrientation(orientation)
        scene.AddNode(sliceNode)
        # what each slice view shows (background/foreground/label volumes)
        composite = scene.CreateNodeByClass("vtkMRMLSliceCompositeNode")
        composite.UnRegister(None)
        composite.SetLayoutName(name)
        composite.SetSingletonTag(name)
        scene.AddNode(composite)
    markupsLogic = _core.vtkSlicerMarkupsLogic()
    markupsLogic.SetMRMLScene(scene)
    markupsLogic.SetMRMLApplicationLogic(appLogic)
    volumesLogic = _core.vtkSlicerVolumesLogic()
    volumesLogic.SetMRMLScene(scene)
    volumesLogic.SetMRMLApplicationLogic(appLogic)
    mrmlScene = scene
    app._reset(scene, appLogic, testing, version)
    # slicer.packaging exists from 5.12 only: forget an import made under another version
    sys.modules.pop(__name__ + ".packaging", None)
    globals().pop("packaging", None)
    modules.__dict__.clear()
    modules.markups = _standin.Module("Markups", markupsLogic)
    modules.volumes = _standin.Module("Volumes", volumesLogic)
    util.displayed.clear()
    util.pipInstalls.clear()
    util.pipFailure.update(returncode=0, pythonSlicerMissing=False)
    app.connections.clear()
    import qt

    qt.slotExceptions.clear()
    qt.QApplication.overrideCursors.clear()
    return scene


def registerModule(name: str, path: str):
    """What Slicer's module factory does for a scripted module: ``slicer.modules.<name>``."""
    setattr(modules, name.lower(), _standin.Module(name, None, path))


reset()
