"""The stand-in ``slicer`` package stays honest: its MRML objects are slicer-core's real
classes, ``slicer.util`` is Slicer's own util.py, and the few fakes behave like Slicer.

It also checks that every Slicer call listed in L3Locator/SLICER_CALLS.md exists in the
stand-in (so the module's tests exercise the same names it uses in Slicer).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("slicer_core", reason="slicer-core (Slicer's MRML on PyPI) is not installed")

REPO = Path(__file__).resolve().parent.parent
STANDIN = REPO / "Testing" / "slicer_standin"


@pytest.fixture()
def slicer(monkeypatch):
    """The stand-in, importable only inside the test; a fresh scene each time."""
    monkeypatch.syspath_prepend(str(STANDIN))
    for name in [m for m in sys.modules if m in ("slicer", "qt", "ctk") or m.startswith("slicer.")]:
        monkeypatch.delitem(sys.modules, name)
    module = importlib.import_module("slicer")
    module.reset()
    yield module
    for name in [m for m in sys.modules if m in ("slicer", "qt", "ctk") or m.startswith("slicer.")]:
        sys.modules.pop(name, None)


def test_mrml_objects_are_slicer_core_classes(slicer):
    import slicer_core

    assert slicer.vtkMRMLScalarVolumeNode is slicer_core.vtkMRMLScalarVolumeNode
    assert slicer.vtkMRMLMarkupsFiducialNode is slicer_core.vtkMRMLMarkupsFiducialNode
    assert isinstance(slicer.mrmlScene, slicer_core.vtkMRMLScene)
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "p")
    assert type(node) is slicer_core.vtkMRMLMarkupsFiducialNode
    assert isinstance(slicer.modules.markups.logic(), slicer_core.vtkSlicerMarkupsLogic)
    assert isinstance(slicer.modules.volumes.logic(), slicer_core.vtkSlicerVolumesLogic)


def test_util_is_slicers_own_file(slicer):
    import slicer_core

    expected = Path(slicer_core.__file__).resolve().parent.parent / "slicer" / "util.py"
    assert Path(slicer.util.__file__).resolve() == expected
    text = expected.read_text()
    for name in ("arrayFromVolume", "updateVolumeFromArray", "arrayFromVTKMatrix",
                 "tryWithErrorDisplay", "VTKObservationMixin", "childWidgetVariables", "loadUI"):
        assert f"def {name}" in text or f"class {name}" in text
        assert name not in slicer.util.STANDIN_OVERRIDES
    # only application/GUI parts are replaced
    assert set(slicer.util.STANDIN_OVERRIDES) <= {
        "errorDisplay", "warningDisplay", "infoDisplay", "confirmOkCancelDisplay",
        "confirmYesNoDisplay", "delayDisplay", "showStatusMessage", "messageBox",
        "pip_install", "loadNodeFromFile", "loadVolume", "saveNode"}


def test_array_from_volume_is_a_kji_view(slicer):
    data = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    node = slicer.util.addVolumeFromArray(data, np.diag([0.5, 0.6, 2.0, 1.0]), "v")
    dims = node.GetImageData().GetDimensions()
    assert dims == (5, 4, 3)  # i, j, k
    view = slicer.util.arrayFromVolume(node)
    assert view.shape == (3, 4, 5)
    assert np.array_equal(view, data)
    view[0, 0, 0] = 999  # a view: writes reach the image data (Slicer's documented behaviour)
    assert node.GetImageData().GetScalarComponentAsDouble(0, 0, 0, 0) == 999
    slicer.util.updateVolumeFromArray(node, data)
    assert slicer.util.arrayFromVolume(node)[0, 0, 0] == 0


def test_load_volume_reads_files_with_geometry(slicer, tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    image = sitk.GetImageFromArray(data)
    image.SetSpacing((0.5, 0.7, 2.0))
    image.SetOrigin((1.0, 2.0, 3.0))
    image.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(image, str(path))
    node = slicer.util.loadVolume(str(path))
    assert node.GetName() == "ct"
    assert np.array_equal(slicer.util.arrayFromVolume(node), data)
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    lps = np.eye(4)
    lps[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    assert np.allclose(slicer.util.arrayFromVTKMatrix(m), np.diag([-1, -1, 1, 1]) @ lps)
    bad = tmp_path / "bad.nrrd"
    bad.write_text("not an image")
    with pytest.raises(RuntimeError, match="Failed to load node from file"):
        slicer.util.loadVolume(str(bad))


def test_jump_slices_moves_the_real_slice_nodes(slicer):
    slicer.modules.markups.logic().JumpSlicesToLocation(10.0, -20.0, 35.5, True)
    red = slicer.mrmlScene.GetNodeByID("vtkMRMLSliceNodeRed")
    assert red.GetOrientation() == "Axial"
    assert red.GetSliceOffset() == pytest.approx(35.5)


def test_error_display_is_recorded_and_try_with_error_display_reraises(slicer):
    import qt

    with pytest.raises(ValueError):
        with slicer.util.tryWithErrorDisplay("It failed.", waitCursor=True):
            assert qt.QApplication.overrideCursors == [qt.Qt.WaitCursor]
            raise ValueError("details")
    assert qt.QApplication.overrideCursors == []
    assert slicer.util.displayed[-1][0] == "error"
    shown = slicer.util.displayed[-1][1]
    assert "It failed." in shown and "details" in shown
    slicer.reset(testing=True)  # Slicer shows no dialog in testing mode
    with pytest.raises(ValueError):
        with slicer.util.tryWithErrorDisplay("It failed."):
            raise ValueError("quiet")
    assert slicer.util.displayed == []


def test_parameter_node_wrapper_round_trip(slicer):
    from typing import Annotated

    from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper

    # (annotations as objects: this file's `from __future__ import annotations` would make
    # them strings that get_type_hints cannot resolve inside a function, in Slicer too)
    P = parameterNodeWrapper(type("P", (), {
        "__annotations__": {"volume": slicer.vtkMRMLScalarVolumeNode,
                            "mode": Annotated[str, Choice(["a", "b"])], "flag": bool},
        "mode": "a", "flag": True}))

    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    p = P(node)
    assert p.volume is None and p.mode == "a" and p.flag is True
    v = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    p.volume, p.mode, p.flag = v, "b", False
    again = P(node)
    assert again.volume is v and again.mode == "b" and again.flag is False
    with pytest.raises(ValueError):
        p.mode = "c"


def _listed_calls() -> list[str]:
    text = (REPO / "L3Locator" / "SLICER_CALLS.md").read_text()
    return re.findall(r"^\| `([^`]+)` \|", text, flags=re.M)


def test_every_listed_slicer_call_exists_in_the_standin(slicer):
    """SLICER_CALLS.md lists the calls as `object.Name`; each must resolve here."""
    import qt
    import vtk

    calls = _listed_calls()
    assert len(calls) > 20
    scene = slicer.mrmlScene
    roots = {
        "slicer": slicer, "qt": qt, "vtk": vtk,
        "volumeNode": slicer.vtkMRMLScalarVolumeNode,
        "transformNode": slicer.vtkMRMLTransformNode,
        "sliceNode": slicer.vtkMRMLSliceNode,
        "pointListNode": slicer.vtkMRMLMarkupsFiducialNode,
        "parameterNode": slicer.vtkMRMLScriptedModuleNode,
        "slicer.mrmlScene": scene,
        "markupsLogic": slicer.vtkSlicerMarkupsLogic,
        "volumesLogic": slicer.vtkSlicerVolumesLogic,
        "tableNode": slicer.vtkMRMLTableNode,
        "imageData": vtk.vtkImageData,
        "SampleData": importlib.import_module("SampleData"),
    }
    missing = []
    for call in calls:
        name = call.split("(")[0]
        for prefix in sorted(roots, key=len, reverse=True):
            if name == prefix or name.startswith(prefix + "."):
                obj = roots[prefix]
                rest = name[len(prefix) + 1:] if name != prefix else ""
                break
        else:
            if name.startswith("slicer.") or name.startswith("from slicer"):
                obj, rest = slicer, name.split(".", 1)[1]
            else:
                missing.append(call)
                continue
        try:
            for part in filter(None, rest.split(".")):
                if part in ("ScriptedLoadableModule", "parameterNodeWrapper", "packaging",
                            "util", "i18n") and not hasattr(obj, part):
                    obj = importlib.import_module(f"{obj.__name__}.{part}")
                else:
                    obj = getattr(obj, part)
        except (AttributeError, ImportError):
            missing.append(call)
    assert not missing, f"listed in SLICER_CALLS.md but not in the stand-in: {missing}"


def test_every_slicer_name_the_module_uses_is_listed():
    """Every ``slicer.util``/``slicer.app``/``slicer.mrmlScene``/``slicer.modules``/
    ``slicer.packaging`` name in L3Locator.py and the batch script is in SLICER_CALLS.md."""
    listed = set(_listed_calls())
    used = set()
    for path in (REPO / "L3Locator" / "L3Locator.py", REPO / "L3Locator" / "Scripts" /
                 "locate_l3.py"):
        code = path.read_text()
        used |= set(re.findall(
            r"\b(slicer\.(?:util|app|mrmlScene|packaging)\.[A-Za-z_]+|"
            r"slicer\.modules\.\w+\.logic)\b", code))
        used |= {f"slicer.packaging.{name}" for name in
                 re.findall(r"\bpackaging\.(pip_\w+)\(", code)}
    used -= {"slicer.util.getNode"}  # in a docstring's example, not called
    assert used and not used - listed, f"used but not in SLICER_CALLS.md: {used - listed}"


# ----------------------------------------------------------------- no friendlier than Slicer


@pytest.mark.parametrize("version", ["5.6", "5.8", "5.10", "5.12"])
def test_failed_pip_raises_called_process_error_in_every_version(slicer, version):
    import subprocess

    slicer.reset(version=version)
    slicer.util.pipFailure["returncode"] = 1
    with pytest.raises(subprocess.CalledProcessError):
        slicer.util.pip_install(["paddlepaddle>=3.0"])
    if version == "5.12":
        import slicer.packaging

        with pytest.raises(subprocess.CalledProcessError):
            slicer.packaging.pip_install(["paddlepaddle>=3.0"], show_progress=False)
    slicer.util.pipFailure["returncode"] = 0
    slicer.util.pip_install(["paddlepaddle>=3.0"])  # "works": recorded, nothing installed
    assert slicer.util.pipInstalls[-1] == ["paddlepaddle>=3.0"]


@pytest.mark.parametrize("version", ["5.6", "5.8", "5.10"])
def test_no_packaging_module_before_5_12(slicer, version):
    slicer.reset(version=version)
    with pytest.raises(ImportError):
        import slicer.packaging  # noqa: F401
    with pytest.raises(TypeError):  # 5.6-5.10's pip_install takes the requirements only
        slicer.util.pip_install(["x"], show_progress=False)
    slicer.reset(version="5.12")
    import slicer.packaging

    assert hasattr(slicer.packaging, "pip_ensure")


def test_5_12_pip_install_opens_a_modal_dialog_unless_told_not_to(slicer):
    import slicer.packaging

    slicer.packaging.pip_install(["x"])
    assert [kind for kind, _, _ in slicer.util.displayed] == ["progressDialog"]
    slicer.util.displayed.clear()
    slicer.packaging.pip_install(["x"], show_progress=False)
    assert slicer.util.displayed == []


def test_exit_is_slicers_and_does_not_end_the_process(slicer):
    """slicer.util.exit is Slicer's own code: it clears runPythonAndExit and asks the
    application to exit; the Python code that called it goes on."""
    assert "exit" not in slicer.util.STANDIN_OVERRIDES
    slicer.app.commandOptions().runPythonAndExit = True
    slicer.util.exit(7)
    assert slicer.app.exitCode == 7
    assert slicer.app.commandOptions().runPythonAndExit is False


def test_headless_standin_exits_only_through_slicer_util_exit(tmp_path):
    """run_slicer.py ends with the status given to slicer.util.exit; a script that
    raises or just returns leaves it running, as Slicer --python-script does."""
    import subprocess

    def run(body, timeout):
        script = tmp_path / "script.py"
        script.write_text(body)
        return subprocess.run([sys.executable, str(STANDIN / "run_slicer.py"),
                               "--no-main-window", "--python-script", str(script)],
                              capture_output=True, encoding="utf-8", errors="replace",
                              timeout=timeout, env={**os.environ, "PYTHONIOENCODING": "utf-8"})

    done = run("import slicer\nprint('ran')\nslicer.util.exit(5)\nprint('still running')\n",
               timeout=240)
    assert done.returncode == 5 and done.stdout.splitlines() == ["ran", "still running"]
    for body in ("raise RuntimeError('offline')\n", "print('forgot to exit')\n"):
        with pytest.raises(subprocess.TimeoutExpired):
            run(body, timeout=20)


def test_path_line_edit_binds_only_to_pathlib_parameters(slicer):
    """Slicer's GUI connector for ctkPathLineEdit represents pathlib types, not str."""
    import pathlib

    import ctk
    import qt
    from slicer.parameterNodeWrapper import parameterNodeWrapper

    def wrapped(kind):
        return parameterNodeWrapper(type("P", (), {"__annotations__": {"path": kind}}))

    gui = qt.QWidget()
    edit = ctk.ctkPathLineEdit(gui)
    edit.setProperty("SlicerParameterName", "path")
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    with pytest.raises(RuntimeError, match="Unable to create GUI connector"):
        wrapped(str)(node).connectGui(gui)
    other = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    p = wrapped(pathlib.Path)(other)
    p.connectGui(gui)
    edit.currentPath = "/tmp/model.json"
    assert p.path == pathlib.Path("/tmp/model.json")
