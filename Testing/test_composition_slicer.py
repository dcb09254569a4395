"""Body composition in Slicer (issue 26): the Segmentation and Table nodes, the Segment
Editor's masking range, and Recompute after an edit, against the stand-in ``slicer``
package (real MRML segmentation, table and editor nodes from slicer-core)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

pytest.importorskip("slicer_core", reason="slicer-core (Slicer's MRML on PyPI) is not installed")

import test_slicer_module  # noqa: E402

from L3LocatorLib.phantoms.tissue import make_tissue_phantom  # noqa: E402

#: The stand-in slicer package, fresh for each test (the Slicer module's own fixture).
slicer = test_slicer_module.slicer
@pytest.fixture(scope="module")
def phantom():
    return make_tissue_phantom(4244, variant="typical", z_range_mm=(-10.0, 10.0),
                               spacing=(1.0, 1.0, 2.5), fov_mm=500.0, fov_shift_mm=0.0,
                               noise_hu=12.0)


def _table(node):
    table = node.GetTable()
    columns = [table.GetColumn(c).GetName() for c in range(table.GetNumberOfColumns())]
    return {table.GetValue(r, 0).ToString(): {columns[c]: table.GetValue(r, c).ToString()
                                              for c in range(len(columns))}
            for r in range(table.GetNumberOfRows())}


def test_segment_editor_edit_then_recompute_changes_table_exactly(slicer, phantom):
    """Erase part of the muscle segment (as a Segment Editor effect does:
    SetBinaryLabelmapToSegment) and Recompute: the muscle area drops by exactly the erased
    voxels' area and the mean HU becomes that of the voxels left; other tissues unchanged."""
    module = importlib.import_module("L3Locator")
    volume, truth, _ = phantom
    node = slicer.util.addVolumeFromArray(np.array(volume.array), volume.ijk_to_ras, "ct")
    k = int(np.round(volume.ras_to_ijk_points(truth.l3_landmark_ras)[2]))
    logic = module.L3LocatorCompositionLogic()
    segmentation, table, result = logic.measure(node, sliceIndex=k, slabHalfMm=0.0,
                                                heightM=1.7, sex="F")
    names = [segmentation.GetSegmentation().GetNthSegment(n).GetName()
             for n in range(segmentation.GetSegmentation().GetNumberOfSegments())]
    assert names == ["Skeletal muscle", "Intermuscular fat (IMAT)", "Visceral fat (VAT)",
                     "Subcutaneous fat (SAT)"]
    before = _table(table)
    assert float(before["Skeletal muscle"]["Area (cm2)"]) == pytest.approx(
        result.slice["muscle"].area_cm2, abs=0.01)

    arrays = logic.readSegments(segmentation, node)
    muscle = arrays["muscle"].copy()
    assert muscle.sum() * 1.0 / 100.0 == pytest.approx(result.slice["muscle"].area_cm2)
    # erase the muscle in the front half of the slice (a user's correction)
    edited = muscle.copy()
    front = np.zeros_like(edited, bool)
    front[k, :, :] = True
    front[k, : int(np.round(volume.ras_to_ijk_points(truth.l3_centre_ras)[1])), :] = False
    removed = int((edited.astype(bool) & front).sum())
    assert removed > 100
    edited[front] = 0
    segmentId = segmentation.GetSegmentation().GetSegmentIdBySegmentName("Skeletal muscle")
    image = module._orientedImage(edited, _ijkToRas(slicer, node))
    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        image, segmentation, segmentId, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)

    again = logic.recompute(node, segmentation, table)
    after = _table(table)
    pixel_cm2 = 1.0 / 100.0  # 1 x 1 mm pixels
    assert again.slice["muscle"].area_cm2 == pytest.approx(
        result.slice["muscle"].area_cm2 - removed * pixel_cm2, abs=1e-9)
    kept = volume.array[edited.astype(bool)]
    assert again.slice["muscle"].mean_hu == pytest.approx(float(kept.mean()), abs=1e-3)
    assert float(after["Skeletal muscle"]["Area (cm2)"]) == pytest.approx(
        again.slice["muscle"].area_cm2, abs=0.01)
    for name in ("Visceral fat (VAT)", "Subcutaneous fat (SAT)"):
        assert after[name]["Area (cm2)"] == before[name]["Area (cm2)"]
    assert float(after["SMI (cm2/m2)"]["Area (cm2)"]) == pytest.approx(
        again.slice["muscle"].area_cm2 / 1.7 ** 2, abs=0.01)
    assert "Prado" in after["prado2008_low_smi"]["Note"]


def test_segment_editor_masking_range_is_the_segments_hu_range(slicer, phantom):
    module = importlib.import_module("L3Locator")
    volume, truth, _ = phantom
    node = slicer.util.addVolumeFromArray(np.array(volume.array), volume.ijk_to_ras, "ct")
    k = int(np.round(volume.ras_to_ijk_points(truth.l3_landmark_ras)[2]))
    logic = module.L3LocatorCompositionLogic()
    segmentation, _, _ = logic.measure(node, sliceIndex=k, slabHalfMm=0.0)
    editor = slicer.vtkMRMLSegmentEditorNode()  # the Segment Editor module registers it in Slicer
    segmentations = segmentation.GetSegmentation()
    expected = {"Skeletal muscle": (-29.0, 150.0), "Visceral fat (VAT)": (-150.0, -50.0),
                "Subcutaneous fat (SAT)": (-190.0, -30.0)}
    for name, hu_range in expected.items():
        segment_id = segmentations.GetSegmentIdBySegmentName(name)
        assert logic.setMaskingRange(editor, segmentation, segment_id) == hu_range
        assert tuple(editor.GetSourceVolumeIntensityMaskRange()) == hu_range
        assert editor.GetSourceVolumeIntensityMask()


def _ijkToRas(slicer, node):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return matrix


def test_panel_measure_after_locate_then_recompute(slicer, phantom, monkeypatch):
    """The panel's Body composition step: after Locate (a fake answering with the phantom's
    L3), Measure makes the segmentation and table; Recompute keeps the segments as they
    are (no re-thresholding) and refills the table."""
    import qt

    import L3LocatorLib.locate
    from L3LocatorLib.result import L3Result

    module = importlib.import_module("L3Locator")
    slicer.registerModule("L3Locator", module.__file__)
    volume, truth, _ = phantom
    point = [float(v) for v in truth.l3_centre_ras]
    k = int(np.round(volume.ras_to_ijk_points(truth.l3_centre_ras)[2]))
    found = L3Result(status="ok", message="L3 found.", slice_index=k, slice_axis=2,
                     l3_ijk=[0, 0, k], l3_ras_mm=point, s_mm=point[2], confidence=0.9)
    monkeypatch.setattr(L3LocatorLib.locate, "locate", lambda *a, **kw: found)
    monkeypatch.setattr(module.L3LocatorLogic, "ensureDependencies", lambda *a, **kw: True)
    parent = slicer.qMRMLWidget()
    parent.setLayout(qt.QVBoxLayout())
    parent.setMRMLScene(slicer.mrmlScene)
    widget = module.L3LocatorWidget(parent)
    widget.setup()
    try:
        node = slicer.util.addVolumeFromArray(np.array(volume.array), volume.ijk_to_ras, "ct")
        widget.ui.inputSelector.setCurrentNode(node)
        widget.ui.locateButton.click()
        widget.compositionHeight.value = 1.7
        widget.compositionMeasureButton.click()
        assert qt.slotExceptions == []
        _, segmentation, table = widget._composition
        first = _table(table)
        assert "Muscle" in widget.compositionStatus.text
        widget.compositionRecomputeButton.click()
        assert qt.slotExceptions == []
        again = _table(table)
        for name in ("Skeletal muscle", "Visceral fat (VAT)", "Subcutaneous fat (SAT)"):
            assert again[name]["Area (cm2)"] == first[name]["Area (cm2)"]
        assert again["SMI (cm2/m2)"]["Area (cm2)"] == first["SMI (cm2/m2)"]["Area (cm2)"]
        # a slice the user chose instead of the located one
        widget.compositionSlice.value = k + 2
        widget.compositionMeasureButton.click()
        assert qt.slotExceptions == []
        moved = _table(widget._composition[2])
        s_moved = float(volume.ijk_to_ras_points([0, 0, k + 2])[2])
        assert moved["Preset"]["Note"] == f"S = {s_moved:.1f} mm"
    finally:
        widget.cleanup()


def test_26_headless_script_composition_columns_are_the_commands(phantom, tmp_path):
    """``locate_l3.py --composition --height-m`` under the stand-in Slicer writes the
    composition columns with the values ``l3locator locate --composition`` gives the same
    scan (the same code on the same volume), in the same column order."""
    from L3LocatorLib.cli import main
    from L3LocatorLib.composition.columns import COLUMNS
    from L3LocatorLib.results import read_rows
    from L3LocatorLib.volume import write_volume

    volume, truth, _ = phantom
    scans = tmp_path / "scans"
    scans.mkdir()
    write_volume(volume, scans / "p.nii.gz")
    k = int(np.round(volume.ras_to_ijk_points(truth.l3_landmark_ras)[2]))
    options = ["--composition", "--height-m", "1.7", "--slice", str(k), "--sex", "F"]
    in_slicer, command = tmp_path / "slicer.csv", tmp_path / "command.csv"
    proc = test_slicer_module.run_headless("--input", scans, "--output", in_slicer,
                                           "--device", "cpu", *options)
    assert proc.returncode in (0, 1), proc.stderr
    assert main(["locate", str(scans), "--output", str(command), "--device", "cpu",
                 *options]) in (0, 1)
    header = in_slicer.read_text().splitlines()[0].split(",")
    assert tuple(header[-len(COLUMNS):]) == COLUMNS
    (row,), (expected,) = read_rows(in_slicer), read_rows(command)
    assert row["height_source"] == "user" and float(row["smi_cm2_m2"]) > 0
    assert not row["comp_error"] and row["prado2008_low_smi"] in ("True", "False")
    assert {c: row[c] for c in COLUMNS} == {c: expected[c] for c in COLUMNS}
