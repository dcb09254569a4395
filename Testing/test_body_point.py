"""The 3-D point lies in the vertebral body: phantoms of several kinds, real CT, and the
midline fallback that says so when no body can be outlined; the result reports it."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import REPO, SHARED_DATA

from L3LocatorLib.body_point import find_canal, vertebral_body_point
from L3LocatorLib.locate import locate
from L3LocatorLib.network import default_model_path
from L3LocatorLib.phantoms import make_phantom
from L3LocatorLib.projection import PreprocessConfig, project
from L3LocatorLib.volume import Volume

sys.path.insert(0, str(REPO / "benchmarks"))
from body_centres import (  # noqa: E402
    GOAL_MM,
    narrow,
    point_errors,
    real_body_centres,
    thin_bone,
)

LUMBAR = ("L1", "L2", "L3", "L4")


def _centres(truth) -> dict[str, np.ndarray]:
    return {v.name: np.asarray(v.centre_ras) for v in truth.vertebrae
            if v.name in LUMBAR and v.in_fov}


@pytest.mark.parametrize("options", [
    dict(spacing=(3, 3, 3), contrast="arterial", calcification=1.0),
    dict(spacing=(1.5, 1.5, 5), matrix=200, contrast="portal"),
    dict(spacing=(4, 4, 5), orientation="random", tilt_deg=8),
    dict(spacing=(3, 3, 3), metal=("hip", "spine")),
], ids=["3mm-contrast-aorta", "5mm-slices", "4x4x5-oblique", "metal"])
def test_point_in_the_body_of_every_lumbar_vertebra(options):
    volume, truth = make_phantom(101, preset="abdomen_pelvis", **options)
    rows = point_errors(volume, _centres(truth))
    assert len(rows) == 4
    for row in rows:
        assert row["within_goal"], row
    assert sum(row["in_body"] for row in rows) >= 3, rows


def test_point_in_the_body_of_a_spine_crop():
    volume, truth = make_phantom(102, preset="abdomen_pelvis", spacing=(3, 3, 3),
                                 contrast="arterial")
    centres = _centres(truth)
    rows = point_errors(narrow(volume, centres["L3"], 120.0), centres)
    assert rows and all(row["within_goal"] and row["in_body"] for row in rows), rows


def test_canal_is_the_hole_behind_the_body_not_the_body_interior():
    # Axial bone mask, 1 mm pixels, row 0 anterior: a body ring (cancellous interior below
    # the bone threshold) in front of a smaller ring, the vertebral arch around the canal.
    a, r = np.mgrid[0:120, 0:100]
    body = ((a - 40) / 16.0) ** 2 + ((r - 50) / 20.0) ** 2
    arch = ((a - 70) / 10.0) ** 2 + ((r - 50) / 10.0) ** 2
    bone = ((body <= 1) & (body >= 0.7)) | ((arch <= 1.7) & (arch >= 1.0)) | (
        (a >= 55) & (a <= 58) & (np.abs(r - 50) < 12))
    canal = find_canal(bone, (r[0] - 50).astype(float))
    assert canal is not None
    front, col = canal
    assert 58 <= front <= 62 and abs(col - 50) <= 1


def test_without_a_canal_the_point_falls_back_to_the_midline_and_says_so():
    # A solid bone column in a soft-tissue body: no vertebral arch anywhere.
    spacing = 3.0
    k, j, i = np.mgrid[0:80, 0:110, 0:110].astype(np.float32) * spacing
    y, x = j - 165.0, i - 165.0
    array = np.where((x / 150) ** 2 + (y / 110) ** 2 < 1, 40.0, -1000.0)
    array[(x ** 2 + (y - 50.0) ** 2) < 18.0 ** 2] = 500.0
    volume = Volume.from_geometry(array.astype(np.int16), (spacing,) * 3,
                                  np.diag([-1.0, -1.0, 1.0]), (0.0, 0.0, 0.0))
    projections = project(volume, PreprocessConfig())
    point = vertebral_body_point(volume, projections, projections.geometry.n_rows / 2)
    assert not point.in_body
    assert "midline" in point.note and "check" in point.note
    column = volume.ijk_to_ras_points(np.array([165.0 / spacing, 215.0 / spacing, 40.0]))
    assert abs(point.ras[0] - column[0]) < 6.0


@pytest.mark.skipif(not (SHARED_DATA / "truth.json").exists(),
                    reason=f"shared real CT not present ({SHARED_DATA})")
def test_point_in_the_body_on_real_ct():
    """ct328 (bone only, 1.5 mm) T11-L4 and the contrast chest CT (0.7 x 2.5 mm) T11-L2."""
    scans = real_body_centres(SHARED_DATA)
    assert scans
    for key, (volume, centres) in scans.items():
        rows = point_errors(volume, centres)
        assert len(rows) >= 4, key
        for row in rows:
            assert row["in_body"] and row["within_goal"], (key, row)
            assert abs(row["d_r_mm"]) <= GOAL_MM[0] and abs(row["d_a_mm"]) <= GOAL_MM[1]


@pytest.mark.skipif(not (SHARED_DATA / "truth.json").exists(),
                    reason=f"shared real CT not present ({SHARED_DATA})")
def test_point_in_the_body_of_thin_osteoporotic_bone():
    """Bone 150 HU less dense (marrow and cortex, as in older patients): the arch and the
    body's shell break up at the usual bone threshold; the second, lower one finds them.
    At the usual threshold alone the points on ct328 lay up to 28 mm behind the body."""
    volume, centres = real_body_centres(SHARED_DATA)["ct328"]
    rows = point_errors(thin_bone(volume), centres)
    assert len(rows) >= 4
    for row in rows:
        assert row["in_body"] and row["within_goal"], row


@pytest.mark.skipif(not default_model_path().exists(), reason="no shipped default model")
def test_result_says_where_the_point_is_and_what_was_counted():
    volume, truth = make_phantom(103, preset="abdomen_pelvis", spacing=(3, 3, 3),
                                 n_lumbar=5, n_rib_pairs=12, lstv="none")
    result = locate(volume)
    assert result.found and result.point_in_body is True and result.point_note is None
    centre = truth.l3_centre_ras
    assert abs(result.l3_ras_mm[0] - centre[0]) <= GOAL_MM[0]
    assert abs(result.l3_ras_mm[1] - centre[1]) <= GOAL_MM[1]
    assert result.counted.startswith("Counted") and result.lumbar_counted == 5
    data = result.to_dict()
    assert data["point_in_body"] is True and data["counted"] == result.counted
    assert data["variants"] == result.variants == []
