"""L3Locator.py (the 3D Slicer module) and Scripts/locate_l3.py, against the stand-in
``slicer`` package in Testing/slicer_standin (real MRML from slicer-core, faked GUI).

Two kinds of tests:
- how the module turns a result into nodes and UI: ``L3LocatorLib.locate.locate`` is
  replaced by a fake that answers with the RAS of the brightest voxel, so the point's
  position can be checked against Slicer's own geometry (oblique, flipped, transformed);
- end to end (real ``locate``, a trained model, the phantoms): skipped with the reason
  while the model or the phantom generator is missing.
"""

from __future__ import annotations

import csv
import importlib
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("slicer_core", reason="slicer-core (Slicer's MRML on PyPI) is not installed")

REPO = Path(__file__).resolve().parent.parent
MODULE_DIR = REPO / "L3Locator"
STANDIN = REPO / "Testing" / "slicer_standin"
_STANDIN_MODULES = ("slicer", "qt", "ctk", "L3Locator", "locate_l3")


def _drop_standin_modules():
    for name in list(sys.modules):
        if name in _STANDIN_MODULES or name.startswith("slicer."):
            sys.modules.pop(name, None)


@pytest.fixture()
def slicer(monkeypatch):
    """The stand-in slicer package (fresh scene), only for the duration of one test."""
    monkeypatch.syspath_prepend(str(STANDIN))
    monkeypatch.syspath_prepend(str(MODULE_DIR))
    for name in list(sys.modules):
        if name in _STANDIN_MODULES or name.startswith("slicer."):
            monkeypatch.delitem(sys.modules, name)
    module = importlib.import_module("slicer")
    module.reset()
    yield module
    _drop_standin_modules()


@pytest.fixture()
def mod(slicer):
    """The L3Locator module imported against the stand-in."""
    module = importlib.import_module("L3Locator")
    slicer.registerModule("L3Locator", module.__file__)
    return module


# ----------------------------------------------------------------- helpers


def oblique_matrix(spacing=(0.7, 0.8, 2.5), flip=(1, 1, 1), angle_deg=20.0, origin=(10, -20, 30)):
    a = np.radians(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
    c, s = np.cos(a / 2), np.sin(a / 2)
    tilt = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    m = np.eye(4)
    m[:3, :3] = tilt @ rot @ np.diag(np.multiply(spacing, flip))
    m[:3, 3] = origin
    return m


def bright_volume(slicer, matrix, shape=(12, 14, 16), bright_kji=(7, 3, 11), name="CT"):
    data = np.full(shape, -1000, dtype=np.int16)
    data[bright_kji] = 1500
    return slicer.util.addVolumeFromArray(data, matrix, name)


def world_of_voxel(node, ijk):
    """Independent route through Slicer's own geometry: node IJK->RAS, then the node's
    transform to world (vtkMRMLTransformableNode::TransformPointToWorld)."""
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    local = m.MultiplyPoint([float(ijk[0]), float(ijk[1]), float(ijk[2]), 1.0])[:3]
    world = [0.0, 0.0, 0.0]
    node.TransformPointToWorld(local, world)
    return np.array(world)


def fake_locate_brightest(calls):
    """Stand-in for L3LocatorLib.locate.locate: 'L3' is the brightest voxel. Used only to
    test how the module turns a result into nodes."""
    from L3LocatorLib.result import L3Result

    def locate(volume, model=None, device="auto", views="both", **opts):
        calls.append({"volume": volume, "model": model, "device": device, "views": views})
        k, j, i = np.unravel_index(int(np.argmax(volume.array)), volume.array.shape)
        ras = volume.ijk_to_ras_points(np.array([i, j, k], dtype=float))
        return L3Result(status="ok", message="L3 found.", slice_index=int(k), slice_axis=2,
                        l3_ijk=[int(i), int(j), int(k)], l3_ras_mm=[float(v) for v in ras],
                        s_mm=float(ras[2]), confidence=0.91, model_name="fake",
                        model_version="1")

    return locate


def test_flagged_answer_is_labelled_for_checking(slicer, mod, monkeypatch):
    import L3LocatorLib.locate

    inner = fake_locate_brightest([])
    reason = "The scan ends 10 mm below this level, so it was counted from the ribs alone."

    def locate(*args, **kwargs):
        result = inner(*args, **kwargs)
        result.review = [reason]
        return result

    monkeypatch.setattr(L3LocatorLib.locate, "locate", locate)
    node = bright_volume(slicer, np.diag([0.8, 0.8, 3.0, 1.0]), bright_kji=(7, 3, 11))
    result = mod.L3LocatorLogic().locate(node)
    assert result.needs_review
    (pointList,) = fiducial_nodes(slicer)
    assert pointList.GetNthControlPointLabel(0) == "L3?"
    assert reason in pointList.GetNthControlPointDescription(0)


def fake_locate_not_found(volume, model=None, device="auto", views="both", **opts):
    from L3LocatorLib.result import L3Result

    return L3Result(status="not_found", message="L3 is not in the field of view.",
                    confidence=0.05, model_name="fake", model_version="1")


@pytest.fixture()
def fake_locate(monkeypatch):
    import L3LocatorLib.locate

    calls = []
    monkeypatch.setattr(L3LocatorLib.locate, "locate", fake_locate_brightest(calls))
    return calls


def red_plane(slicer):
    """(unit normal, a point) of the red slice view's plane, in world RAS."""
    red = slicer.mrmlScene.GetNodeByID("vtkMRMLSliceNodeRed")
    m = slicer.util.arrayFromVTKMatrix(red.GetSliceToRAS())
    return m[:3, 2] / np.linalg.norm(m[:3, 2]), m[:3, 3]


def red_plane_distance(slicer, point):
    normal, origin = red_plane(slicer)
    return float(np.dot(np.asarray(point, dtype=float) - origin, normal))


def fiducial_nodes(slicer):
    scene = slicer.mrmlScene
    return [scene.GetNthNodeByClass(i, "vtkMRMLMarkupsFiducialNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode"))]


def point_world(node, index=0):
    position = [0.0, 0.0, 0.0]
    node.GetNthControlPointPositionWorld(index, position)
    return np.array(position)


# ----------------------------------------------------------------- node -> Volume


@pytest.mark.parametrize("flip", [(1, 1, 1), (-1, 1, 1), (1, -1, -1), (-1, -1, -1)])
def test_volume_from_node_oblique_and_flipped(slicer, mod, flip):
    matrix = oblique_matrix(flip=flip)
    node = bright_volume(slicer, matrix)
    volume = mod.L3LocatorLogic.volumeFromNode(node)
    assert np.allclose(volume.ijk_to_ras, matrix)
    assert volume.array.shape == (12, 14, 16)
    assert not volume.array.flags.writeable
    assert np.shares_memory(volume.array, slicer.util.arrayFromVolume(node))  # no copy


def test_volume_from_node_composes_nested_linear_transforms(slicer, mod):
    matrix = oblique_matrix()
    node = bright_volume(slicer, matrix)
    outer = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "outer")
    inner = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "inner")
    outer_m = oblique_matrix(spacing=(1, 1, 1), angle_deg=-35, origin=(5, 6, -7))
    inner_m = np.eye(4)
    inner_m[:3, 3] = [1.5, -2.5, 40]
    outer.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(outer_m))
    inner.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(inner_m))
    inner.SetAndObserveTransformNodeID(outer.GetID())
    node.SetAndObserveTransformNodeID(inner.GetID())
    volume = mod.L3LocatorLogic.volumeFromNode(node)
    assert np.allclose(volume.ijk_to_ras, outer_m @ inner_m @ matrix)
    assert np.allclose(volume.ijk_to_ras_points(np.array([3.0, 4.0, 5.0])),
                       world_of_voxel(node, (3, 4, 5)))


def test_volume_from_node_refuses_what_is_not_a_ct(slicer, mod):
    import vtk

    from L3LocatorLib.errors import InputError

    with pytest.raises(InputError, match="No volume"):
        mod.L3LocatorLogic.volumeFromNode(None)
    label = slicer.util.addVolumeFromArray(np.zeros((3, 4, 5), np.uint8), np.eye(4), "seg",
                                           "vtkMRMLLabelMapVolumeNode")
    with pytest.raises(InputError, match="label map"):
        mod.L3LocatorLogic.volumeFromNode(label)
    empty = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="no voxel data"):
        mod.L3LocatorLogic.volumeFromNode(empty)
    warped = bright_volume(slicer, oblique_matrix())
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTransformNode", "warp")
    tps = vtk.vtkThinPlateSplineTransform()
    src, dst = vtk.vtkPoints(), vtk.vtkPoints()
    for p in [(0, 0, 0), (100, 0, 0), (0, 100, 0), (0, 0, 100)]:
        src.InsertNextPoint(p)
        dst.InsertNextPoint(p[0] + 3, p[1], p[2])
    tps.SetSourceLandmarks(src)
    tps.SetTargetLandmarks(dst)
    tps.SetBasisToR()
    transform.SetAndObserveTransformToParent(tps)
    warped.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(InputError, match="non-linear"):
        mod.L3LocatorLogic.volumeFromNode(warped)


# ----------------------------------------------------------------- result -> nodes


@pytest.mark.parametrize("case", ["axial", "oblique", "flipped", "transformed"])
def test_point_lands_at_the_right_ras(slicer, mod, fake_locate, case):
    bright = (7, 3, 11)  # k, j, i
    if case == "axial":
        matrix = np.diag([0.8, 0.8, 3.0, 1.0])
    elif case == "oblique":
        matrix = oblique_matrix()
    else:
        matrix = oblique_matrix(flip=(-1, 1, -1), angle_deg=0 if case == "flipped" else 15)
    node = bright_volume(slicer, matrix, bright_kji=bright)
    if case == "transformed":
        transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "reg")
        m = oblique_matrix(spacing=(1, 1, 1), angle_deg=30, origin=(-12, 8, 100))
        transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(m))
        node.SetAndObserveTransformNodeID(transform.GetID())
    logic = mod.L3LocatorLogic()
    result = logic.locate(node)
    assert result.found
    lists = fiducial_nodes(slicer)
    assert len(lists) == 1
    pointList = lists[0]
    assert pointList is logic.lastPointListNode
    assert pointList.GetNumberOfControlPoints() == 1
    assert pointList.GetNthControlPointLabel(0) == "L3"
    assert pointList.GetNthControlPointLocked(0) and pointList.GetLocked()
    description = pointList.GetNthControlPointDescription(0)
    assert "confidence 0.91" in description and "model fake 1" in description
    truth = world_of_voxel(node, (bright[2], bright[1], bright[0]))
    assert np.allclose(point_world(pointList), truth, atol=1e-6)
    # the red view goes through that voxel's centre
    assert red_plane_distance(slicer, truth) == pytest.approx(0.0, abs=1e-6)


def test_locate_again_updates_the_same_point_list(slicer, mod, fake_locate):
    node = bright_volume(slicer, oblique_matrix())
    logic = mod.L3LocatorLogic()
    logic.locate(node)
    logic.locate(node)
    lists = fiducial_nodes(slicer)
    assert len(lists) == 1 and lists[0].GetNumberOfControlPoints() == 1
    other = bright_volume(slicer, np.eye(4), name="CT2")
    logic.locate(other)
    assert len(fiducial_nodes(slicer)) == 2


def test_options_reach_the_library_and_create_point_false(slicer, mod, fake_locate):
    node = bright_volume(slicer, np.eye(4))
    result = mod.L3LocatorLogic().locate(node, createPoint=False, model="m.json",
                                         device="cpu", views="frontal")
    assert result.found
    assert fiducial_nodes(slicer) == []
    assert fake_locate[-1]["model"] == "m.json"
    assert fake_locate[-1]["device"] == "cpu" and fake_locate[-1]["views"] == "frontal"


def test_not_found_creates_no_point_and_clears_a_stale_one(slicer, mod, fake_locate,
                                                           monkeypatch):
    import L3LocatorLib.locate

    node = bright_volume(slicer, oblique_matrix())
    logic = mod.L3LocatorLogic()
    monkeypatch.setattr(L3LocatorLib.locate, "locate", fake_locate_not_found)
    result = logic.locate(node)
    assert not result.found and "not in the field of view" in result.message
    assert fiducial_nodes(slicer) == [] and logic.lastPointListNode is None
    monkeypatch.setattr(L3LocatorLib.locate, "locate", fake_locate_brightest([]))
    logic.locate(node)
    monkeypatch.setattr(L3LocatorLib.locate, "locate", fake_locate_not_found)
    logic.locate(node)
    assert [n.GetNumberOfControlPoints() for n in fiducial_nodes(slicer)] == [0]


def test_input_node_is_never_modified(slicer, mod, fake_locate):
    import vtk

    node = bright_volume(slicer, oblique_matrix())
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "t")
    node.SetAndObserveTransformNodeID(transform.GetID())
    before = np.array(slicer.util.arrayFromVolume(node))
    m_before = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m_before)
    mtimes = (node.GetMTime(), node.GetImageData().GetMTime(), transform.GetMTime())
    attributes = node.GetAttributeNames()
    mod.L3LocatorLogic().locate(node)
    # the library got a read-only view: writing into it must fail
    with pytest.raises(ValueError):
        fake_locate[-1]["volume"].array[0, 0, 0] = 0
    m_after = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m_after)
    assert np.array_equal(before, slicer.util.arrayFromVolume(node))
    assert np.array_equal(slicer.util.arrayFromVTKMatrix(m_before),
                          slicer.util.arrayFromVTKMatrix(m_after))
    assert (node.GetMTime(), node.GetImageData().GetMTime(), transform.GetMTime()) == mtimes
    assert node.GetAttributeNames() == attributes
    assert node.GetParentTransformNode() is transform


# ----------------------------------------------------------------- widget and .ui


def ui_object_names():
    root = ET.parse(MODULE_DIR / "Resources" / "UI" / "L3Locator.ui").getroot()
    return {w.get("name"): w.get("class") for w in root.iter("widget")}


def ui_parameter_names():
    root = ET.parse(MODULE_DIR / "Resources" / "UI" / "L3Locator.ui").getroot()
    return {p.findtext("string") for p in root.iter("property")
            if p.get("name") == "SlicerParameterName"}


def test_ui_widget_names_match_the_widget_code(mod):
    names = ui_object_names()
    used = set(re.findall(r"self\.ui\.(\w+)", (MODULE_DIR / "L3Locator.py").read_text()))
    assert used, "the widget code uses no ui names?"
    assert used <= set(names), f"used in L3Locator.py but not in the .ui: {used - set(names)}"
    assert ui_parameter_names() <= set(mod.L3LocatorParameterNode.allParameters)
    # what the issue asks the panel to have
    for required in ("inputSelector", "locateButton", "sliceValueLabel", "positionValueLabel",
                     "confidenceValueLabel", "qaImageLabel", "jumpButton",
                     "advancedCollapsibleButton", "modelPathLineEdit", "deviceComboBox",
                     "viewsComboBox", "createPointCheckBox"):
        assert required in names
    root = ET.parse(MODULE_DIR / "Resources" / "UI" / "L3Locator.ui").getroot()
    advanced = next(w for w in root.iter("widget") if w.get("name") == "advancedCollapsibleButton")
    collapsed = [p for p in advanced.findall("property") if p.get("name") == "collapsed"]
    assert collapsed and collapsed[0].findtext("bool") == "true"


_WIDGETS: list = []


@pytest.fixture(autouse=True)
def _clean_up_widgets():
    """Widgets are cleaned up as Slicer does on module unload: their scene observers go,
    so no stale panel reacts to a later scene close (or to the one at interpreter exit)."""
    yield
    while _WIDGETS:
        _WIDGETS.pop().cleanup()


@pytest.fixture()
def widget(slicer, mod):
    """As Slicer's module factory does it: the panel's parent widget first, then setup()."""
    return _fresh_widget(slicer, mod)


def test_widget_button_disabled_until_a_volume_is_chosen(slicer, mod, widget):
    ui = widget.ui
    assert not ui.locateButton.enabled
    assert "Select a CT volume" in ui.locateButton.toolTip
    assert not ui.jumpButton.enabled
    node = bright_volume(slicer, np.eye(4))
    ui.inputSelector.setCurrentNode(node)
    assert widget._parameterNode.inputVolume is node
    assert ui.locateButton.enabled
    assert ui.deviceComboBox.currentText == "auto" and ui.viewsComboBox.currentText == "both"
    assert ui.createPointCheckBox.checked


def test_widget_locate_shows_results_and_point(slicer, mod, widget, monkeypatch):
    import qt

    import L3LocatorLib.locate

    cursors = []
    calls = []
    inner = fake_locate_brightest(calls)

    def locate(*args, **kwargs):
        cursors.append(list(qt.QApplication.overrideCursors))
        return inner(*args, **kwargs)

    monkeypatch.setattr(L3LocatorLib.locate, "locate", locate)
    node = bright_volume(slicer, np.diag([0.8, 0.8, 2.0, 1.0]), bright_kji=(5, 6, 7))
    widget.ui.inputSelector.setCurrentNode(node)
    widget.ui.viewsComboBox.currentIndex = 1  # frontal
    widget.ui.locateButton.click()
    assert qt.slotExceptions == []
    assert cursors == [[qt.Qt.WaitCursor]]  # busy cursor while it runs...
    assert qt.QApplication.overrideCursors == []  # ...and restored after
    assert calls[-1]["views"] == "frontal"
    assert widget.ui.sliceValueLabel.text == "5"
    assert widget.ui.positionValueLabel.text == "S = 10.0 mm"
    assert widget.ui.confidenceValueLabel.text == "0.91"
    assert widget.ui.jumpButton.enabled
    assert any(kind == "status" and "L3 at slice 5" in text
               for kind, text, _ in slicer.util.displayed)
    assert len(fiducial_nodes(slicer)) == 1
    # the jump button re-centres the views on the point
    slicer.modules.markups.logic().JumpSlicesToLocation(0, 0, -50, True)
    widget.ui.jumpButton.click()
    red = slicer.mrmlScene.GetNodeByID("vtkMRMLSliceNodeRed")
    assert red.GetSliceOffset() == pytest.approx(10.0)


def test_widget_shows_errors_in_a_dialog(slicer, mod, widget, monkeypatch):
    import qt

    import L3LocatorLib.locate
    from L3LocatorLib.errors import ModelError

    def broken(*args, **kwargs):
        raise ModelError("The model file default.json is missing. Reinstall L3 Locator.")

    monkeypatch.setattr(L3LocatorLib.locate, "locate", broken)
    node = bright_volume(slicer, np.eye(4))
    widget.ui.inputSelector.setCurrentNode(node)
    widget.ui.locateButton.click()
    errors = [text for kind, text, _ in slicer.util.displayed if kind == "error"]
    assert len(errors) == 1 and "default.json is missing" in errors[0]
    assert "Failed" in widget.ui.statusLabel.text
    assert qt.slotExceptions == []  # handled, not a traceback
    assert qt.QApplication.overrideCursors == []
    assert fiducial_nodes(slicer) == []


def test_widget_not_found_says_so(slicer, mod, widget, monkeypatch):
    import L3LocatorLib.locate

    monkeypatch.setattr(L3LocatorLib.locate, "locate", fake_locate_not_found)
    node = bright_volume(slicer, np.eye(4))
    widget.ui.inputSelector.setCurrentNode(node)
    widget.ui.locateButton.click()
    assert "not in the field of view" in widget.ui.statusLabel.text
    assert "No point" in widget.ui.statusLabel.text
    assert not widget.ui.jumpButton.enabled
    assert fiducial_nodes(slicer) == []


def test_widget_near_miss_offers_the_candidate_slice(slicer, mod, widget, monkeypatch):
    """L3 not found but a candidate named: no point, and the jump button (marked as not
    confirmed) shows the candidate's slice."""
    import L3LocatorLib.locate
    from L3LocatorLib.result import L3Result

    node = bright_volume(slicer, np.diag([0.8, 0.8, 5.0, 1.0]), shape=(14, 12, 12))
    volume = mod.L3LocatorLogic.volumeFromNode(node)
    message = "L3 was not found with enough confidence (0.45; the model needs 0.67)."
    result = L3Result(status="not_found", message=message, confidence=0.45, slice_axis=2,
                      candidate_ijk=[6, 5, 9], model_name="fake", model_version="1")
    monkeypatch.setattr(L3LocatorLib.locate, "locate", lambda *a, **k: result)
    widget.ui.inputSelector.setCurrentNode(node)
    widget.ui.locateButton.click()
    assert message in widget.ui.statusLabel.text and "No point" in widget.ui.statusLabel.text
    assert widget.ui.jumpButton.enabled and "not confirmed" in widget.ui.jumpButton.toolTip
    assert fiducial_nodes(slicer) == []
    widget.ui.jumpButton.click()
    centre = volume.ijk_to_ras_points(np.array([6.0, 5.0, 9.0]))
    assert red_plane_distance(slicer, centre) == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------- dependencies


@pytest.fixture()
def missing_paddle(slicer, mod, monkeypatch):
    """A Python where PaddlePaddle is not installed (``importlib.metadata`` does not find
    it, for the module and for Slicer's ``pip_check`` alike) until the stand-in's pip
    "installs" it (pip itself never runs; ``slicer.util.pipFailure`` makes it fail as
    pip does offline)."""
    import importlib.metadata

    from slicer import _standin

    state = {"installed": False}
    realVersion = importlib.metadata.version

    def version(name):
        if "paddle" in name.lower() and not state["installed"]:
            raise importlib.metadata.PackageNotFoundError(name)
        return realVersion(name)

    runPip = _standin.run_pip

    def pip(requirements):
        runPip(requirements)
        state["installed"] = True

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(_standin, "run_pip", pip)
    monkeypatch.setattr(mod.L3LocatorLogic, "nvidiaCudaVersion", staticmethod(lambda: None))
    return state


def test_requirements_file_and_check(mod):
    # item 8: only what Slicer lacks goes to pip; Slicer's own packages are never listed
    assert mod.L3LocatorLogic.requirements() == ["paddlepaddle>=3.0"]
    assert mod.L3LocatorLogic.missingRequirements(["numpy>=1.0"]) == []
    assert mod.L3LocatorLogic.missingRequirements(["numpy>=999"]) == ["numpy>=999"]
    assert mod.L3LocatorLogic.missingRequirements(["surely-not-installed-pkg"]) != []


@pytest.mark.parametrize("version", ["5.8", "5.12"])
def test_headless_installs_only_when_told(slicer, mod, missing_paddle, version):
    from L3LocatorLib.errors import DependencyError

    slicer.reset(version=version)
    logic = mod.L3LocatorLogic()
    with pytest.raises(DependencyError, match="--install-dependencies"):
        logic.ensureDependencies(interactive=False)
    assert slicer.util.pipInstalls == []
    assert logic.ensureDependencies(interactive=False, install=True)
    assert slicer.util.pipInstalls == [["paddlepaddle>=3.0"]]
    # no dialog in a batch (5.12's pip_install opens a modal one unless told not to)
    assert [kind for kind, _, _ in slicer.util.displayed] == []


def test_gpu_machines_get_paddles_cuda_build(mod):
    args = mod.L3LocatorLogic.paddleInstallArgs("paddlepaddle>=3.0", (12, 8))
    assert args[0] == "paddlepaddle-gpu>=3.0"
    assert "https://www.paddlepaddle.org.cn/packages/stable/cu126/" in args
    assert mod.L3LocatorLogic.paddleInstallArgs("paddlepaddle>=3.0", (12, 2))[2].endswith(
        "/cu118/")
    assert mod.L3LocatorLogic.paddleInstallArgs("paddlepaddle>=3.0", (11, 2)) == [
        "paddlepaddle>=3.0"]
    assert mod.L3LocatorLogic.paddleInstallArgs("paddlepaddle>=3.0", None) == [
        "paddlepaddle>=3.0"]


@pytest.mark.parametrize("version", ["5.8", "5.12"])
def test_gui_asks_once_and_installs_nothing_when_declined(slicer, mod, missing_paddle, version):
    import slicer.util

    from L3LocatorLib.errors import DependencyError

    slicer.reset(version=version)
    logic = mod.L3LocatorLogic()
    slicer.util.confirmAnswers[:] = [False]
    with pytest.raises(DependencyError, match="cannot run without"):
        logic.ensureDependencies(interactive=True)
    assert [kind for kind, _, _ in slicer.util.displayed] == ["confirmOkCancel"]
    assert slicer.util.pipInstalls == []
    if version == "5.12":
        import slicer.packaging as packaging

        assert packaging.ENSURED == []


def test_gui_on_5_12_installs_through_pip_ensure_without_asking_twice(slicer, mod,
                                                                      missing_paddle):
    """Our question (it says what and how much), then pip_ensure without its own prompt:
    its progress dialog and its restart check, one question in all."""
    import slicer.packaging as packaging

    slicer.util.confirmAnswers[:] = [True]
    assert mod.L3LocatorLogic().ensureDependencies(interactive=True)
    assert packaging.ENSURED == [(["paddlepaddle>=3.0"], "L3 Locator")]
    asked = [kind for kind, _, _ in slicer.util.displayed if kind.startswith("confirm")]
    assert asked == ["confirmOkCancel"]
    assert slicer.util.pipInstalls == [["paddlepaddle>=3.0"]]


@pytest.mark.parametrize("version", ["5.8", "5.12"])
def test_gpu_machine_gets_the_cuda_build_from_the_panel(slicer, mod, missing_paddle,
                                                         monkeypatch, version):
    """With an NVIDIA GPU the CUDA build comes from Paddle's index (pip_ensure cannot pass
    an index): our question, then pip with --extra-index-url; on 5.12 through
    slicer.packaging.pip_install with its progress dialog."""
    slicer.reset(version=version)
    monkeypatch.setattr(mod.L3LocatorLogic, "nvidiaCudaVersion", staticmethod(lambda: (12, 6)))
    logic = mod.L3LocatorLogic()
    slicer.util.confirmAnswers[:] = [True]
    assert logic.ensureDependencies(interactive=True)
    asked = [text for kind, text, _ in slicer.util.displayed if kind == "confirmOkCancel"]
    assert len(asked) == 1 and "NVIDIA GPU" in asked[0] and "not PyPI" in asked[0]
    (args,) = slicer.util.pipInstalls
    assert args[0] == "paddlepaddle-gpu>=3.0" and "--extra-index-url" in args
    dialogs = [kind for kind, _, _ in slicer.util.displayed if kind == "progressDialog"]
    assert len(dialogs) == (1 if version == "5.12" else 0)


def test_nothing_installed_in_testing_mode(slicer, mod, missing_paddle):
    slicer.app.setTestingEnabled(True)
    assert mod.L3LocatorLogic().ensureDependencies(interactive=True) is False
    assert slicer.util.pipInstalls == []


# ----------------------------------------------------------------- CMake and packaging


def cmake_list(text, variable):
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, flags=re.S)
    assert match, variable
    return [line.strip() for line in match.group(1).splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_cmake_lists_name_every_file_the_module_needs():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    scripts = [s.replace("${MODULE_NAME}", "L3Locator")
               for s in cmake_list(text, "MODULE_PYTHON_SCRIPTS")]
    for script in scripts:
        assert (MODULE_DIR / script).is_file(), f"CMake lists a missing file: {script}"
    library = sorted(str(p.relative_to(MODULE_DIR)).replace("\\", "/")
                     for p in (MODULE_DIR / "L3LocatorLib").rglob("*.py"))
    # item 9: the command line and its cohort package (Dask, pydicom) stay out of Slicer
    outside = {f for f in library if f.startswith("L3LocatorLib/cohort/")}
    outside.add("L3LocatorLib/cli.py")
    assert not outside & set(scripts), f"installed into Slicer: {sorted(outside & set(scripts))}"
    unlisted = set(library) - set(scripts) - outside
    assert not unlisted, f"library files not installed by the extension: {sorted(unlisted)}"
    assert "L3Locator.py" in scripts and "Scripts/locate_l3.py" in scripts
    resources = [r.replace("${MODULE_NAME}", "L3Locator")
                 for r in cmake_list(text, "MODULE_PYTHON_RESOURCES") if not r.startswith("${")]
    for resource in ("Resources/Icons/L3Locator.png", "Resources/UI/L3Locator.ui",
                     "Resources/requirements.txt"):
        assert resource in resources
        assert (MODULE_DIR / resource).is_file()
    assert "Resources/Models/*.json" in text and "${MODULE_MODEL_FILES}" in text
    models = MODULE_DIR / "Resources" / "Models"
    for shipped in ("default.json", "default.npz"):  # every shipped model file is installed
        assert (models / shipped).is_file() and f"*{Path(shipped).suffix}" in text
    assert "slicerMacroBuildScriptedModule" in text and "WITH_GENERIC_TESTS" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    assert (MODULE_DIR / "Testing" / "CMakeLists.txt").is_file()
    assert (MODULE_DIR / "Testing" / "Python" / "CMakeLists.txt").is_file()


def test_extension_metadata_icon_and_index_entry():
    from PIL import Image

    top = (REPO / "CMakeLists.txt").read_text()
    for field in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS",
                  "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS",
                  "EXTENSION_DEPENDS"):
        assert re.search(rf'set\({field} "[^"]+"\)', top), field
    assert "add_subdirectory(L3Locator)" in top
    with Image.open(MODULE_DIR / "Resources" / "Icons" / "L3Locator.png") as icon:
        assert icon.size == (128, 128) and icon.format == "PNG"
    entry = json.loads((REPO / "ExtensionsIndex" / "L3Locator.json").read_text())
    for key in ("scm_url", "scm_revision", "build_subdirectory", "category", "tier"):
        assert key in entry


def test_catalog_urls_resolve_inside_this_repository():
    """What the Extensions Index checker (Slicer/ExtensionsIndex
    scripts/check_description_files.py) verifies, done offline: the project name is the
    description file's name, the repository name contains "slicer", a licence at the
    root, and the icon and every screenshot URL (read with the checker's own patterns) is
    an image; here: a raw URL of this repository at scm_revision naming a PNG that is
    committed. The homepage is the same repository."""
    from PIL import Image

    top = (REPO / "CMakeLists.txt").read_text()
    entry = json.loads((REPO / "ExtensionsIndex" / "L3Locator.json").read_text())
    assert re.findall(r"project\s*\(\s*([^\s\)\n\r]+)", top, re.I)[0] == "L3Locator"
    owner, repo = re.match(r"https://github\.com/([^/]+)/([^/]+?)(\.git)?$",
                           entry["scm_url"]).group(1, 2)
    assert "slicer" in repo.lower()
    assert (REPO / "LICENSE").is_file()
    assert entry["category"] == re.search(r'set\(EXTENSION_CATEGORY "([^"]+)"\)', top).group(1)
    homepage = re.search(r'set\(EXTENSION_HOMEPAGE "([^"]+)"\)', top).group(1)
    assert homepage.startswith(f"https://github.com/{owner}/{repo}")
    icons = re.findall(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', top, re.I)
    shots = re.findall(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', top, re.I)
    urls = icons[:1] + (shots[0].split() if shots else [])
    assert len(urls) >= 2, "an icon URL and at least one screenshot URL"
    prefix = f"https://raw.githubusercontent.com/{owner}/{repo}/{entry['scm_revision']}/"
    for url in urls:
        assert url.startswith(prefix), url
        path = REPO / url[len(prefix):]
        assert path.is_file(), f"{url} names a file that is not in the repository"
        with Image.open(path) as picture:
            assert picture.format == "PNG" and min(picture.size) >= 128
    tracked = subprocess_run(["git", "ls-files", "--error-unmatch",
                              *(url[len(prefix):] for url in urls)])
    if "not a git repository" not in tracked.stderr:  # (a source archive has no history)
        assert tracked.returncode == 0, f"not committed: {tracked.stderr}"


def subprocess_run(command):
    import subprocess

    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


def module_files():
    """Every Python file the extension installs (and so Slicer may load): CMake's list."""
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    return [MODULE_DIR / s.replace("${MODULE_NAME}", "L3Locator")
            for s in cmake_list(text, "MODULE_PYTHON_SCRIPTS")]


def test_module_code_is_python39_compatible():
    """Slicer 5.6 and 5.8 run Python 3.9: every file the module loads is read for 3.10+
    grammar, run-time ``X | Y`` unions and newer standard-library names."""
    sys.path.insert(0, str(STANDIN))
    try:
        from py39_check import problems
    finally:
        sys.path.remove(str(STANDIN))
    files = module_files()
    assert len(files) > 20 and MODULE_DIR / "Scripts" / "locate_l3.py" in files
    found = [problem for path in files for problem in problems(path)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("code", [
    "match x:\n    case 1:\n        pass\n",
    "ok = isinstance(1, int | None)\n",
    "def f(a: int | None):\n    return a\n",  # evaluated: no __future__ import
    "from __future__ import annotations\n@parameterNodeWrapper\nclass P:\n    a: str | None\n",
    "pairs = list(zip([1], [2], strict=True))\n",
    "from dataclasses import dataclass\n@dataclass(slots=True)\nclass A:\n    a: int = 0\n",
    "import tomllib\n",
    "import itertools\npairs = itertools.pairwise([1, 2])\n",
    "from typing import TypeAlias\n",
    "try:\n    pass\nexcept* ValueError:\n    pass\n",
])
def test_python39_check_catches_newer_python(tmp_path, code):
    sys.path.insert(0, str(STANDIN))
    try:
        from py39_check import problems
    finally:
        sys.path.remove(str(STANDIN))
    path = tmp_path / "newer.py"
    path.write_text(code)
    assert problems(path)
    path.write_text("from __future__ import annotations\n\n\n"
                    "def f(a: int | None = None) -> list[int] | None:\n    return [a or 0]\n")
    assert problems(path) == []  # annotations stay strings on 3.9


def test_module_description(slicer, mod):
    parent = slicer.ScriptedLoadableModule.ScriptedLoadableModule.standinParent(mod.__file__)
    mod.L3Locator(parent)
    assert parent.title == "L3 Locator"
    assert parent.categories and parent.contributors
    assert "L3" in parent.helpText and "pedicles" in parent.helpText
    assert parent.acknowledgementText.strip()
    assert parent.icon is not None and parent.icon.path.endswith("L3Locator.png")
    assert "L3Locator" in slicer.selfTests


# ----------------------------------------------------------------- batch script


def load_script():
    spec = importlib.util.spec_from_file_location(
        "locate_l3", MODULE_DIR / "Scripts" / "locate_l3.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_ct(path, shape=(40, 64, 64), spacing=(4.0, 4.0, 5.0)):
    from L3LocatorLib.volume import Volume, write_volume

    rng = np.random.default_rng(0)
    data = (rng.normal(40, 20, size=shape)).astype(np.int16)
    data[:, 20:44, 28:36] = 700  # a bony column
    write_volume(Volume.from_geometry(data, spacing), path)


def test_script_exit_statuses_are_the_commands():
    from L3LocatorLib import batch

    script = load_script()
    assert (script.EXIT_OK, script.EXIT_SOME_FAILED, script.EXIT_USAGE, script.EXIT_STOPPED) == (
        batch.EXIT_OK, batch.EXIT_SOME_FAILED, batch.EXIT_USAGE, batch.EXIT_STOPPED)


def test_script_usage_errors(slicer, mod, tmp_path, capsys):
    script = load_script()
    assert script.run(["--", "--output", str(tmp_path / "r.csv")]) == 2  # no --input
    assert script.run(["--input", str(tmp_path), "--output", str(tmp_path / "r.txt")]) == 2
    assert "must end in .csv or .jsonl" in capsys.readouterr().err


def test_script_writes_every_row_even_when_the_model_is_missing(slicer, mod, tmp_path):
    """Real pipeline: a readable CT, a damaged file and a model that does not exist:
    one error row each (read error for the damaged file), exit status 1."""
    folder = tmp_path / "scans"
    folder.mkdir()
    write_ct(folder / "good.nrrd")
    (folder / "bad.nrrd").write_text("NRRD0004\nthis file was cut short")
    out = tmp_path / "results.csv"
    script = load_script()
    status = script.main(["--input", str(folder), "--output", str(out),
                          "--model", str(tmp_path / "no-such-model.json")])
    assert status == 1
    rows = {Path(r["input"]).name: r for r in csv.DictReader(out.open())}
    assert set(rows) == {"good.nrrd", "bad.nrrd"}
    assert all(r["status"] == "error" for r in rows.values())
    assert "could not be read" in rows["bad.nrrd"]["message"]
    assert "no-such-model.json" in rows["good.nrrd"]["message"]
    # the scene is left as it was
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0


# ----------------------------------------------------------------- end to end (real locate)


def trained_model(request) -> str:
    """A trained model: the lead's tiny test model, else the shipped default; or skip."""
    try:
        return str(request.getfixturevalue("tiny_model_json"))
    except pytest.FixtureLookupError:
        pass
    default = MODULE_DIR / "Resources" / "Models" / "default.json"
    if default.is_file():
        return str(default)
    pytest.skip("no trained model yet (neither the tiny_model_json fixture nor "
                "Resources/Models/default.json)")


def phantom_or_skip():
    try:
        from L3LocatorLib.phantoms import make_phantom
    except ImportError:
        pytest.skip("L3LocatorLib.phantoms (make_phantom) is not there yet")
    return make_phantom


def phantom_node(slicer, preset, seed, name):
    make_phantom = phantom_or_skip()
    volume, truth = make_phantom(seed, preset=preset)
    node = slicer.util.addVolumeFromArray(np.array(volume.array), volume.ijk_to_ras, name)
    return node, truth


def test_end_to_end_phantom_point_near_truth(slicer, mod, request):
    model = trained_model(request)
    node, truth = phantom_node(slicer, "abdomen", 3, "abdomen")
    assert truth.l3_in_fov
    before = np.array(slicer.util.arrayFromVolume(node))
    logic = mod.L3LocatorLogic()
    result = logic.locate(node, model=model)
    assert result.found, result.message
    position = point_world(logic.lastPointListNode)
    assert truth.l3_bottom_s_mm - 5.0 <= position[2] <= truth.l3_top_s_mm + 5.0
    assert np.linalg.norm(position - np.asarray(truth.l3_centre_ras)) < 30.0
    assert np.array_equal(before, slicer.util.arrayFromVolume(node))


def test_end_to_end_chest_phantom_no_point(slicer, mod, request):
    model = trained_model(request)
    node, truth = phantom_node(slicer, "chest", 5, "chest")
    assert not truth.l3_in_fov
    result = mod.L3LocatorLogic().locate(node, model=model)
    assert not result.found
    assert fiducial_nodes(slicer) == []


def test_end_to_end_headless_script_folder_with_bad_file(slicer, mod, request, tmp_path):
    from L3LocatorLib.volume import write_volume

    model = trained_model(request)
    make_phantom = phantom_or_skip()
    folder = tmp_path / "cohort"
    folder.mkdir()
    write_volume(make_phantom(3, preset="abdomen")[0], folder / "a_abdomen.nrrd")
    write_volume(make_phantom(5, preset="chest")[0], folder / "b_chest.nii.gz")
    (folder / "c_bad.nii.gz").write_bytes(b"\x1f\x8b broken")
    out = tmp_path / "results.jsonl"
    saved = tmp_path / "saved"
    status = load_script().main(["--input", str(folder), "--output", str(out), "--model", model,
                                 "--save-scene", str(saved), "--qa-dir", str(tmp_path / "qa")])
    rows = {Path(r["input"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"a_abdomen.nrrd", "b_chest.nii.gz", "c_bad.nii.gz"}
    assert rows["a_abdomen.nrrd"]["status"] == "ok"
    assert rows["b_chest.nii.gz"]["status"] == "not_found"
    assert rows["c_bad.nii.gz"]["status"] == "error"
    assert status == 1
    assert (saved / "a_abdomen.nrrd").is_file() and (saved / "a_abdomen_L3.mrk.json").is_file()
    # same columns as the l3locator command
    from L3LocatorLib.report import ROW_FIELDS

    assert all(set(r) == set(ROW_FIELDS) for r in rows.values())


def test_self_test_runs_in_the_standin(slicer, mod, request):
    """The in-Slicer self test (L3LocatorTest) runs here too, with the real pipeline."""
    trained_model(request)
    phantom_or_skip()
    if not (MODULE_DIR / "Resources" / "Models" / "default.json").is_file():
        pytest.skip("the self test uses the shipped default model, not there yet")
    mod.L3LocatorTest().runTest()


# ----------------------------------------------------------------- Slicer as it really runs
#
# The batch script runs in a process of its own under Testing/slicer_standin/run_slicer.py,
# which behaves like `Slicer --no-main-window --python-script`: Slicer's root log handler
# is in place, an exception escaping the script is printed and the application goes on,
# and the process ends only when the script calls slicer.util.exit. A script that does not
# would hang a cluster job: the timeout below turns that into a test failure.

HEADLESS_TIMEOUT_S = 240  # a hang detector, not a speed requirement (2 shared cores)


def run_headless(*script_args, standin=(), env=None):
    import os
    import subprocess

    command = [sys.executable, str(STANDIN / "run_slicer.py"), "--no-main-window",
               "--python-script", str(MODULE_DIR / "Scripts" / "locate_l3.py"), *standin,
               "--", *map(str, script_args)]
    try:
        # UTF-8 both ways whatever the machine's locale (messages and progress bars)
        return subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace",
                              timeout=HEADLESS_TIMEOUT_S,
                              env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})})
    except subprocess.TimeoutExpired as hung:
        pytest.fail(f"the headless Slicer never exited (the script did not call "
                    f"slicer.util.exit); stderr so far: {hung.stderr!r}")


def last_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def one_line_failure(proc, *phrases):
    """The process failed, said why in one line of its own, and showed no traceback."""
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    said = [line for line in proc.stderr.splitlines() if line.startswith("locate_l3.py: ")]
    assert len(said) == 1, proc.stderr
    for phrase in phrases:
        assert phrase in said[0], said[0]
    return said[0]


@pytest.fixture()
def one_ct(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    write_ct(folder / "good.nrrd", shape=(20, 32, 32))
    return folder


@pytest.mark.parametrize("version", ["5.8", "5.12"])
def test_headless_offline_install_exits_with_one_line(tmp_path, one_ct, version):
    """PaddlePaddle missing, --install-dependencies, no internet: pip fails
    (CalledProcessError in every Slicer); the batch ends with status 2 and says how to
    install offline. On 5.12 no modal progress dialog is opened for nobody to see."""
    proc = run_headless("--input", one_ct, "--output", tmp_path / "r.csv",
                        "--install-dependencies",
                        standin=("--version", version, "--pip-fails",
                                 "--hide-distribution", "paddlepaddle",
                                 "--hide-distribution", "paddlepaddle-gpu"))
    assert proc.returncode == 2
    line = one_line_failure(proc, "could not install", "Without internet access",
                            "--find-links")
    assert "returned non-zero exit status" not in line  # not pip's raw command line
    assert "modal progress dialog" not in proc.stderr
    assert not (tmp_path / "r.csv").exists()


def test_headless_unwritable_output_exits_with_one_line(tmp_path, one_ct):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the results folder should be")
    proc = run_headless("--input", one_ct, "--output", blocker / "r.csv")
    assert proc.returncode == 2  # as l3locator: the results file cannot be used
    one_line_failure(proc, str(blocker / "r.csv"))


def test_item8_headless_broken_slicer_package_is_reported_not_reinstalled(tmp_path, one_ct):
    """A Slicer whose SciPy cannot be imported: status 2 and one line naming SciPy and
    what to do (reinstall Slicer); pip is never run for Slicer's own packages."""
    proc = run_headless("--input", one_ct, "--output", tmp_path / "r.csv",
                        "--install-dependencies", standin=("--block-import", "scipy"))
    assert proc.returncode == 2, proc.stderr
    one_line_failure(proc, "SciPy", "reinstall 3D Slicer")
    assert "pip install" not in proc.stderr and "stand-in pip" not in proc.stderr
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize("verbose", [False, True])
def test_headless_verbose_controls_progress_lines(tmp_path, one_ct, verbose):
    """Slicer's root logger already has a DEBUG handler (basicConfig does nothing), so
    the script sets its own loggers' levels: progress lines only with --verbose. The
    batch itself ends with status 1 (the model does not exist: an error row)."""
    args = ["--input", one_ct, "--output", tmp_path / "r.csv",
            "--model", tmp_path / "no-such-model.json"] + (["--verbose"] if verbose else [])
    proc = run_headless(*args)
    assert proc.returncode == 1, proc.stderr
    assert ("Loading " in proc.stderr) == verbose, proc.stderr
    assert ("[INFO]" in proc.stderr) == verbose, proc.stderr  # no INFO without --verbose
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [r["status"] for r in rows] == ["error"]
    assert "no-such-model.json" in rows[0]["message"]


def test_headless_ends_even_when_slicers_exit_fails(tmp_path, one_ct):
    proc = run_headless("--input", one_ct, "--output", tmp_path / "r.csv",
                        "--model", tmp_path / "no-such-model.json",
                        standin=("--broken-exit",))
    assert proc.returncode == 1  # the batch's own status (one error row)
    one_line_failure(proc, "could not be closed normally")


def test_headless_failed_save_scene_is_an_error_row_and_the_batch_exits(tmp_path):
    """--save-scene into a place that cannot be written: the scan's row says so, the
    batch goes on and ends with status 1 (real pipeline and the shipped model)."""
    from L3LocatorLib.volume import write_volume

    if not (MODULE_DIR / "Resources" / "Models" / "default.json").is_file():
        pytest.skip("the shipped model is not there")
    make_phantom = phantom_or_skip()
    folder = tmp_path / "scans"
    folder.mkdir()
    write_volume(make_phantom(3, preset="abdomen", spacing=(3.0, 3.0, 3.0), matrix=128)[0],
                 folder / "abdomen.nrrd")
    blocker = tmp_path / "scene-file"
    blocker.write_text("not a folder")
    proc = run_headless("--input", folder, "--output", tmp_path / "r.jsonl",
                        "--save-scene", blocker)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    (row,) = map(json.loads, (tmp_path / "r.jsonl").read_text().splitlines())
    assert row["status"] == "error"
    assert "could not be saved" in row["message"] and str(blocker) in row["message"]


# ----------------------------------------------------------------- installs from the panel


@pytest.mark.parametrize("version", ["5.8", "5.12"])
def test_gui_offline_install_is_explained(slicer, mod, widget, missing_paddle, version):
    """pip fails (offline): ONE error dialog for one failure (item 4): ours on 5.6-5.10;
    on 5.12 Slicer's own "Package installation failed." (with pip's log), and what to do
    in the panel; never pip's command line."""
    import qt

    slicer.reset(version=version)
    widget = _fresh_widget(slicer, mod)
    slicer.util.pipFailure["returncode"] = 1
    slicer.util.confirmAnswers[:] = [True]
    widget.ui.inputSelector.setCurrentNode(bright_volume(slicer, np.eye(4)))
    widget.ui.locateButton.click()
    errors = [text for kind, text, _ in slicer.util.displayed if kind == "error"]
    assert len(errors) == 1, errors
    if version == "5.12":
        assert errors == ["Package installation failed."]
        ours = [widget.ui.statusLabel.text]
    else:
        ours = errors
    assert "L3 Locator could not install" in ours[0]
    assert "Without internet access" in ours[0] and "--find-links" in ours[0]
    assert "could not install" in widget.ui.statusLabel.text
    assert not any("returned non-zero exit status" in text for text in errors)
    assert qt.slotExceptions == [] and qt.QApplication.overrideCursors == []
    assert widget.ui.locateButton.enabled  # usable again after the failure
    assert fiducial_nodes(slicer) == []


def _fresh_widget(slicer, mod):
    import qt

    parent = slicer.qMRMLWidget()
    parent.setLayout(qt.QVBoxLayout())
    parent.setMRMLScene(slicer.mrmlScene)
    w = mod.L3LocatorWidget(parent)
    w.setup()
    w.parent.isEntered = True
    _WIDGETS.append(w)
    return w


def test_second_click_during_install_starts_no_second_pip(slicer, mod, missing_paddle,
                                                          fake_locate, monkeypatch):
    """Slicer 5.6-5.10 keep the event loop turning while pip runs (logProcessOutput), so
    the user can click Locate again: that click must not start a second installation."""
    slicer.reset(version="5.8")
    widget = _fresh_widget(slicer, mod)
    clicks = []

    def processEvents(*args):  # the user's second click arrives while pip runs
        if not clicks:
            clicks.append(widget.ui.locateButton.enabled)
            widget.ui.locateButton.click()

    monkeypatch.setattr(slicer.app, "processEvents", processEvents)
    slicer.util.confirmAnswers[:] = [True, True]
    widget.ui.inputSelector.setCurrentNode(bright_volume(slicer, np.eye(4)))
    widget.ui.locateButton.click()
    assert slicer.util.pipInstalls == [["paddlepaddle>=3.0"]]
    assert clicks == [False]  # the button was off while installing
    assert len(fake_locate) == 1 and widget.ui.locateButton.enabled


@pytest.mark.parametrize("version", ["5.8", "5.12"])
def test_no_wait_cursor_over_the_install_question(slicer, mod, missing_paddle, fake_locate,
                                                  monkeypatch, version):
    import qt

    slicer.reset(version=version)
    widget = _fresh_widget(slicer, mod)
    cursors = []
    confirm = slicer.util.confirmOkCancelDisplay

    def asking(*args, **kwargs):
        cursors.append(list(qt.QApplication.overrideCursors))
        return confirm(*args, **kwargs)

    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", asking)
    slicer.util.confirmAnswers[:] = [True]
    widget.ui.inputSelector.setCurrentNode(bright_volume(slicer, np.eye(4)))
    widget.ui.locateButton.click()
    assert cursors == [[]]
    assert len(fake_locate) == 1 and qt.QApplication.overrideCursors == []


# ----------------------------------------------------------------- the view shows the slice


def located(volume, slice_index, height, confidence=0.9):
    """A result on ``slice_index`` whose point is ``height`` voxels above its centre."""
    from L3LocatorLib.result import L3Result

    ijk = np.array([6.0, 5.0, slice_index + height])
    ras = volume.ijk_to_ras_points(ijk)
    return L3Result(status="ok", message="L3 found.", slice_index=slice_index, slice_axis=2,
                    l3_ijk=[6, 5, slice_index], l3_ras_mm=[float(v) for v in ras],
                    s_mm=float(ras[2]), confidence=confidence, model_name="fake",
                    model_version="1")


@pytest.mark.parametrize("case", ["axial", "oblique"])
def test_jump_shows_the_reported_slice_not_a_blend(slicer, mod, monkeypatch, case):
    """5 mm slices, the point 0.4 slice above the centre of slice 7: the red view goes
    through the centre of slice 7 (along the volume's own slice axis when oblique), and
    the CT is the background of every slice view."""
    import L3LocatorLib.locate

    matrix = np.diag([0.8, 0.8, 5.0, 1.0]) if case == "axial" else oblique_matrix(
        spacing=(0.8, 0.8, 5.0))
    node = bright_volume(slicer, matrix, shape=(14, 12, 12))
    volume = mod.L3LocatorLogic.volumeFromNode(node)
    result = located(volume, 7, 0.4)
    monkeypatch.setattr(L3LocatorLib.locate, "locate", lambda *a, **k: result)
    mod.L3LocatorLogic().locate(node)
    centre = volume.ijk_to_ras_points(np.array([6.0, 5.0, 7.0]))
    assert red_plane_distance(slicer, centre) == pytest.approx(0.0, abs=1e-6)
    normal, _ = red_plane(slicer)
    k_axis = matrix[:3, 2] / np.linalg.norm(matrix[:3, 2])
    assert abs(float(np.dot(normal, k_axis))) == pytest.approx(1.0, abs=1e-6)
    scene = slicer.mrmlScene
    composites = [scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
                  for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]
    assert len(composites) == 3
    assert all(c.GetBackgroundVolumeID() == node.GetID() for c in composites)
    # the point itself stays where the network put it
    (pointList,) = fiducial_nodes(slicer)
    assert np.allclose(point_world(pointList), result.l3_ras_mm)


def test_panel_shows_slice_confidence_review_and_qa_picture(slicer, mod, widget, monkeypatch):
    import L3LocatorLib.locate

    reason = "The scan ends 10 mm below this level, so it was counted from the ribs alone."
    inner = fake_locate_brightest([])

    def locate(*args, **kwargs):
        result = inner(*args, **kwargs)
        result.review = [reason]
        return result

    monkeypatch.setattr(L3LocatorLib.locate, "locate", locate)
    widget.ui.inputSelector.setCurrentNode(bright_volume(slicer, np.eye(4), bright_kji=(5, 6, 7)))
    widget.ui.locateButton.click()
    assert widget.ui.sliceValueLabel.text == "5"
    assert widget.ui.confidenceValueLabel.text == "0.91"
    assert widget.ui.reviewValueLabel.text == reason
    widget.ui.inputSelector.setCurrentNode(None)
    assert widget.ui.reviewValueLabel.text == "-"


def test_end_to_end_panel_shows_the_qa_picture(slicer, mod, widget):
    """Real pipeline, shipped model: the panel shows the QA picture of this result."""
    if not (MODULE_DIR / "Resources" / "Models" / "default.json").is_file():
        pytest.skip("the shipped model is not there")
    make_phantom = phantom_or_skip()
    volume, _ = make_phantom(3, preset="abdomen", spacing=(3.0, 3.0, 3.0), matrix=128)
    node = slicer.util.addVolumeFromArray(np.array(volume.array), volume.ijk_to_ras, "ab")
    widget.ui.inputSelector.setCurrentNode(node)
    widget.ui.locateButton.click()
    assert widget.ui.sliceValueLabel.text != "-", widget.ui.statusLabel.text
    shown = Path(widget.ui.qaImageLabel.toolTip)
    assert shown.suffix == ".png" and shown.is_file()
    assert widget.ui.qaImageLabel.text == ""  # the picture replaced the placeholder text


# ----------------------------------------------------------------- issue 25 (round 2)
#
# One section per numbered item of the issue; every test's name starts with its item.


def shipped_model_or_skip() -> str:
    default = MODULE_DIR / "Resources" / "Models" / "default.json"
    if not default.is_file():
        pytest.skip("the shipped model (Resources/Models/default.json) is not there")
    return str(default)


def small_phantom(seed, preset):
    """A phantom at 3 mm, 128 x 128 (fast to make, and still a CT the model reads)."""
    make_phantom = phantom_or_skip()
    return make_phantom(seed, preset=preset, spacing=(3.0, 3.0, 3.0), matrix=128)


def test_item1_headless_batch_without_tqdm_two_scans_two_rows(tmp_path):
    """No Slicer bundles tqdm: the script under the stand-in with tqdm blocked, two real
    scans (one with L3, one without): two rows, exit 0 (before: exit 3 at the first row)."""
    from L3LocatorLib.volume import write_volume

    model = shipped_model_or_skip()
    folder = tmp_path / "cohort"
    folder.mkdir()
    write_volume(small_phantom(3, "abdomen")[0], folder / "a_abdomen.nrrd")
    write_volume(small_phantom(5, "chest")[0], folder / "b_chest.nrrd")
    out = tmp_path / "results.csv"
    proc = run_headless("--input", folder, "--output", out, "--model", model,
                        standin=("--block-import", "tqdm"))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 and all(r["status"] in ("ok", "not_found") for r in rows), rows
    assert "2 scan(s)" in proc.stderr


def test_item1_the_ctest_command_passes_two_inputs_without_tqdm(tmp_path):
    """The ctest registered for real Slicer (Testing/Python/CMakeLists.txt) names two
    inputs; its command, run under the stand-in without tqdm, meets its own pass and
    fail expressions."""
    text = (MODULE_DIR / "Testing" / "Python" / "CMakeLists.txt").read_text()
    command = re.search(r"NAME py_L3LocatorHeadlessBatchEnds\s+COMMAND (.*?)\n\s*\)", text,
                        re.S).group(1).split()
    args = [a.replace("${CMAKE_CURRENT_BINARY_DIR}", str(tmp_path)) for a in
            command[command.index("--") + 1:]]
    inputs = args[args.index("--input") + 1:args.index("--output")]
    assert len(inputs) == 2
    proc = run_headless(*args, standin=("--block-import", "tqdm"))
    output = proc.stdout + proc.stderr

    def expression(name):
        raw = re.search(rf'{name} "(.*?)"\n', text).group(1)
        return raw.replace("\\\\", "\\")  # CMake's string escapes

    assert re.search(expression("PASS_REGULAR_EXPRESSION"), output), output
    assert not re.search(expression("FAIL_REGULAR_EXPRESSION"), output), output
    assert proc.returncode in (1, 2)


def write_dicom(folder, gap):
    """A DICOM series of a small CT-like volume (24 slices of 5 mm); ``gap``: the middle
    slice's file is deleted, as when an export lost one."""
    sys.path.insert(0, str(REPO / "Testing"))
    try:
        from geometry_helpers import write_dicom_series
    finally:
        sys.path.remove(str(REPO / "Testing"))
    from L3LocatorLib.volume import Volume

    data = np.full((24, 48, 48), -1000, dtype=np.int16)
    data[:, 12:36, 12:36] = 40
    data[:, 20:28, 22:26] = 700
    files = write_dicom_series(Volume.from_geometry(data, (4.0, 4.0, 5.0)), folder)
    if gap:
        files[12].unlink()
    return folder


def test_item2_gapped_dicom_series_gets_the_same_row_in_slicer_and_l3locator(slicer, mod,
                                                                              tmp_path):
    """The batch in Slicer reads DICOM with the command's reader and checks: a series with
    a missing slice is refused with the same status and message by both (before: Slicer's
    loadVolume read it silently with the first two slices' spacing)."""
    from L3LocatorLib import cli

    model = shipped_model_or_skip()
    series = write_dicom(tmp_path / "gapped", gap=True)
    slicer_csv, cli_csv = tmp_path / "slicer.csv", tmp_path / "cli.csv"
    assert load_script().main(["--input", str(series), "--output", str(slicer_csv),
                               "--model", model]) == 1
    assert cli.main(["locate", str(series), "--output", str(cli_csv), "--model", model]) == 1
    (in_slicer,) = csv.DictReader(slicer_csv.open())
    (in_cli,) = csv.DictReader(cli_csv.open())
    assert in_slicer["status"] == in_cli["status"] == "error"
    assert "missing" in in_slicer["message"] and in_slicer["message"] == in_cli["message"]
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0


def test_item2_dicom_in_the_scene_has_the_commands_geometry(slicer, mod, tmp_path, monkeypatch):
    """A complete series: the volume the Slicer batch searches is the command's Volume
    (same voxels, same IJK->RAS), added to the scene from the array."""
    import L3LocatorLib.locate
    from L3LocatorLib.inputs import find_scans, read_input

    series = write_dicom(tmp_path / "series", gap=False)
    (scan,) = find_scans([series])
    expected = read_input(scan)
    calls = []
    monkeypatch.setattr(L3LocatorLib.locate, "locate", fake_locate_brightest(calls))
    out = tmp_path / "r.csv"
    assert load_script().main(["--input", str(series), "--output", str(out)]) == 0
    (searched,) = [c["volume"] for c in calls]
    assert np.array_equal(searched.array, expected.array)
    assert np.allclose(searched.ijk_to_ras, expected.ijk_to_ras)


def regularization_transform(slicer, node, shift_from_k, shift_mm):
    """What the DICOM module's DICOMScalarVolumePlugin (AcquisitionModeling.
    gridTransformFromCorners) makes for a series with missing slices: a
    vtkMRMLGridTransformNode whose vtkOrientedGridTransform has one displacement per slice
    corner, on the volume's own grid; slices from ``shift_from_k`` on are moved by
    ``shift_mm`` along the slice normal."""
    import vtk

    columns, rows, slices = node.GetImageData().GetDimensions()
    grid = slicer.vtkMRMLGridTransformNode()
    grid.SetName(slicer.mrmlScene.GenerateUniqueName(node.GetName() + " acquisition transform"))
    slicer.mrmlScene.AddNode(grid)
    image = vtk.vtkImageData()
    image.SetOrigin(*node.GetOrigin())
    image.SetDimensions(2, 2, slices)
    spacing = node.GetSpacing()
    image.SetSpacing(spacing[0] * columns, spacing[1] * rows, spacing[2])
    image.AllocateScalars(vtk.VTK_DOUBLE, 3)
    transform = slicer.vtkOrientedGridTransform()
    direction = vtk.vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(direction)
    transform.SetGridDirectionMatrix(direction)
    transform.SetDisplacementGridData(image)
    grid.SetAndObserveTransformToParent(transform)
    node.SetAndObserveTransformNodeID(grid.GetID())
    displacements = slicer.util.arrayFromGridTransform(grid)
    normal = np.array([direction.GetElement(r, 2) for r in range(3)])
    displacements[:] = 0.0
    displacements[shift_from_k:] = shift_mm * normal
    slicer.util.arrayFromGridTransformModified(grid)
    return grid


def test_item3_volume_under_the_dicom_regularization_transform_is_located(slicer, mod,
                                                                          fake_locate):
    """A real grid transform node as the DICOM module makes it (two missing slices after
    slice 5): L3 is searched on a hardened copy, the point lands where the volume is shown
    (world), the slice is the volume's own (its DICOM slice), and the scene keeps only the
    answer (no copy left, the volume and its transform untouched)."""
    node = bright_volume(slicer, np.diag([0.8, 0.8, 2.0, 1.0]), shape=(12, 14, 16),
                         bright_kji=(8, 3, 11))
    grid = regularization_transform(slicer, node, shift_from_k=6, shift_mm=4.0)
    with pytest.raises(Exception, match="non-linear"):
        mod.L3LocatorLogic.volumeFromNode(node)
    before = np.array(slicer.util.arrayFromVolume(node))
    volumes = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    logic = mod.L3LocatorLogic()
    result = logic.locate(node)
    searched = fake_locate[-1]["volume"]
    assert searched.array.shape[0] > before.shape[0]  # the copy spans the real extent
    expected = world_of_voxel(node, (11, 3, 8))  # where the bright voxel is shown
    assert np.allclose(point_world(logic.lastPointListNode), expected, atol=1e-3)
    assert result.slice_index == 8 and result.l3_ijk == [11, 3, 8]
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == volumes
    assert np.array_equal(before, slicer.util.arrayFromVolume(node))
    assert node.GetParentTransformNode() is grid
    # the red view goes through the reported slice as shown
    assert red_plane_distance(slicer, expected) == pytest.approx(0.0, abs=1e-3)


def test_item4_pip_that_cannot_start_is_a_message_not_a_bug(tmp_path, one_ct):
    """Slicer's pip helpers raise RuntimeError("PythonSlicer executable not found") when
    pip cannot be started: the batch says so in one line, status 2 (before: exit 3, "a
    bug in L3 Locator")."""
    for version in ("5.8", "5.12"):
        proc = run_headless("--input", one_ct, "--output", tmp_path / f"r{version}.csv",
                            "--install-dependencies",
                            standin=("--version", version, "--pip-cannot-start",
                                     "--hide-distribution", "paddlepaddle",
                                     "--hide-distribution", "paddlepaddle-gpu"))
        assert proc.returncode == 2, proc.stderr
        line = one_line_failure(proc, "could not start pip", "PythonSlicer executable not found")
        assert "bug" not in line


def test_item4_panel_pip_that_cannot_start_is_not_called_declined(slicer, mod, widget,
                                                                  missing_paddle):
    slicer.util.pipFailure["pythonSlicerMissing"] = True
    slicer.util.confirmAnswers[:] = [True]
    widget.ui.inputSelector.setCurrentNode(bright_volume(slicer, np.eye(4)))
    widget.ui.locateButton.click()
    errors = [text for kind, text, _ in slicer.util.displayed if kind == "error"]
    assert len(errors) == 1 and "could not start pip" in errors[0], errors
    assert "cannot run without" not in errors[0]  # not "you declined"
    assert widget.ui.locateButton.enabled


def test_item4_panel_says_what_is_happening_while_pip_runs(slicer, mod, missing_paddle,
                                                           fake_locate, monkeypatch):
    """Slicer 5.6-5.10 show only a busy cursor during minutes of pip: the panel and the
    status bar say what is being installed and where pip's messages are."""
    slicer.reset(version="5.8")
    widget = _fresh_widget(slicer, mod)
    seen = []
    pipInstall = slicer.util.pip_install

    def watching(args, **kwargs):
        seen.append(widget.ui.statusLabel.text)
        return pipInstall(args, **kwargs)

    monkeypatch.setattr(slicer.util, "pip_install", watching)
    slicer.util.confirmAnswers[:] = [True]
    widget.ui.inputSelector.setCurrentNode(bright_volume(slicer, np.eye(4)))
    widget.ui.locateButton.click()
    assert len(seen) == 1 and "Installing paddlepaddle" in seen[0], seen
    assert "several minutes" in seen[0] and "Python console" in seen[0]
    assert any(kind == "status" and "Installing" in text
               for kind, text, _ in slicer.util.displayed)
    assert len(fake_locate) == 1


def test_item5_gpu_choice_says_a_crash_takes_the_unsaved_scene(mod):
    """PaddlePaddle runs in Slicer's process: the GPU choice says what a native crash
    costs (the start-up cost of a PythonSlicer subprocess was not measured here)."""
    root = ET.parse(MODULE_DIR / "Resources" / "UI" / "L3Locator.ui").getroot()
    combo = next(w for w in root.iter("widget") if w.get("name") == "deviceComboBox")
    tip = next(p.findtext("string") for p in combo.findall("property")
               if p.get("name") == "toolTip")
    assert "unsaved" in tip and "save the scene" in tip.lower()


def test_item6_saved_point_is_lps_while_the_results_are_ras(slicer, mod, tmp_path,
                                                            monkeypatch, capsys):
    """--save-scene writes the point's .mrk.json in LPS (Slicer's file convention), the
    results' l3_ras_mm is RAS: the same point, x and y negated; the help says so."""
    import L3LocatorLib.locate
    from L3LocatorLib.volume import Volume, write_volume

    monkeypatch.setattr(L3LocatorLib.locate, "locate", fake_locate_brightest([]))
    data = np.full((12, 14, 16), -1000, dtype=np.int16)
    data[7, 3, 11] = 1500
    folder = tmp_path / "in"
    folder.mkdir()
    write_volume(Volume(data, oblique_matrix()), folder / "ct.nrrd")
    out, saved = tmp_path / "r.csv", tmp_path / "saved"
    assert load_script().main(["--input", str(folder), "--output", str(out),
                               "--save-scene", str(saved)]) == 0
    (row,) = csv.DictReader(out.open())
    ras = np.array(json.loads(row["l3_ras_mm"]))
    markups = json.loads((saved / "ct_L3.mrk.json").read_text())["markups"][0]
    assert markups["coordinateSystem"] == "LPS"
    position = np.array(markups["controlPoints"][0]["position"])
    assert np.allclose(position, ras * [-1, -1, 1], atol=1e-3)
    assert load_script().run(["--help"]) == 0
    assert "LPS" in capsys.readouterr().out
    assert "LPS" in (REPO / "README.md").read_text()


def test_item7_views_return_to_the_volumes_planes_after_an_oblique_volume(slicer, mod,
                                                                          fake_locate):
    """Every located volume rotates the views to its own planes: after an oblique CT
    turned them, an axial CT brings the red view back to axial."""
    logic = mod.L3LocatorLogic()
    logic.locate(bright_volume(slicer, oblique_matrix(), name="oblique"))
    normal, _ = red_plane(slicer)
    assert abs(normal[2]) < 0.99  # turned with the oblique volume
    logic.locate(bright_volume(slicer, np.diag([0.8, 0.8, 2.0, 1.0]), name="axial"))
    normal, _ = red_plane(slicer)
    assert abs(normal[2]) == pytest.approx(1.0, abs=1e-9)


def test_item9_strings_are_translatable_and_help_links_the_documentation(slicer, mod,
                                                                         monkeypatch):
    seen = []

    def translate(context, text):
        seen.append((context, text))
        return text.upper() if context == "L3Locator" else text

    monkeypatch.setattr(slicer.app, "translate", translate)
    parent = slicer.ScriptedLoadableModule.ScriptedLoadableModule.standinParent(mod.__file__)
    mod.L3Locator(parent)
    assert parent.title == "L3 LOCATOR"
    assert ("qSlicerAbstractCoreModule", "Quantification") in seen
    assert "FINDS THE THIRD LUMBAR VERTEBRA" in parent.helpText
    # a translation that mangles {url} is refused, as in Slicer: the link survives
    assert f'<a href="{mod.DOCUMENTATION_URL}">documentation</a>' in parent.helpText
    top = (REPO / "CMakeLists.txt").read_text()
    assert f'set(EXTENSION_HOMEPAGE "{mod.DOCUMENTATION_URL}")' in top


def test_item9_result_is_kept_in_the_scene_as_a_table(slicer, mod, fake_locate):
    """The answer stays in the scene: one table per volume, the results file's columns,
    updated (not duplicated) by the next run."""
    from L3LocatorLib.report import ROW_FIELDS

    node = bright_volume(slicer, np.diag([0.8, 0.8, 2.0, 1.0]), bright_kji=(5, 6, 7))
    logic = mod.L3LocatorLogic()
    result = logic.locate(node)
    table = logic.lastTableNode
    columns = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    assert columns == list(ROW_FIELDS) and table.GetNumberOfRows() == 1
    cell = {name: table.GetCellText(0, c) for c, name in enumerate(columns)}
    assert cell["status"] == "ok" and cell["slice_index"] == str(result.slice_index)
    assert cell["input"] == node.GetName() and cell["model"] == "fake 1"
    logic.locate(node)
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 1
    assert logic.lastTableNode is table


def test_item9_loading_the_module_imports_no_library(tmp_path):
    """Slicer imports every module's file at start-up: ours must not pull in PaddlePaddle,
    SciPy, SimpleITK or the library (only when L3 is located)."""
    import subprocess

    code = (f"import sys; sys.path[:0] = [{str(STANDIN)!r}, {str(MODULE_DIR)!r}]\n"
            "import slicer, L3Locator\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('paddle', 'scipy', 'SimpleITK', 'PIL', 'tqdm') or m.startswith('L3LocatorLib.')"
            " and m != 'L3LocatorLib.errors')\n"
            "print(heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_item9_self_test_skips_without_paddle(slicer, mod, missing_paddle):
    import unittest

    test = mod.L3LocatorTest()
    test.test_GeometryRoundTrip()  # runs without PaddlePaddle
    with pytest.raises(unittest.SkipTest, match="PaddlePaddle"):
        test.test_PhantomWithL3()


def test_item9_model_path_reaches_the_logic_as_a_path(slicer, mod, widget, fake_locate,
                                                      tmp_path):
    model = tmp_path / "my model.json"
    widget.ui.inputSelector.setCurrentNode(bright_volume(slicer, np.eye(4)))
    widget.ui.modelPathLineEdit.currentPath = str(model)
    widget.ui.locateButton.click()
    assert fake_locate[-1]["model"] == str(model)  # the library gets the text of the path
    widget.ui.modelPathLineEdit.currentPath = ""
    widget.ui.locateButton.click()
    assert fake_locate[-1]["model"] is None  # empty: the shipped model


def test_item10_sample_data_makes_a_phantom_to_try(slicer, mod):
    """Registered with the Sample Data module once Slicer has started; its button makes the
    synthetic abdomen CT on the spot (no download), ready for Locate L3."""
    import SampleData

    parent = slicer.ScriptedLoadableModule.ScriptedLoadableModule.standinParent(mod.__file__)
    mod.L3Locator(parent)
    slicer.app.emitStartupCompleted()
    (source,) = slicer.modules.sampleDataSources["L3 Locator"]
    assert source.sampleName == mod.SAMPLE_NAME and Path(source.thumbnailFileName).is_file()
    node = SampleData.clickButton(mod.SAMPLE_NAME)
    assert node.GetName() == mod.SAMPLE_NAME
    volume = mod.L3LocatorLogic.volumeFromNode(node)
    assert volume.array.ndim == 3 and volume.array.min() <= -900 and volume.array.max() >= 700
    scene = slicer.mrmlScene
    red = [scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
           for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]
    assert all(c.GetBackgroundVolumeID() == node.GetID() for c in red)
