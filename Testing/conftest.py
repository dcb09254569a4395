"""Shared test set-up: helper modules on the path and phantom scans.

Tests of model behaviour use the shipped model (``network.default_model_path()``): its
answers are fixed by its weights, the same on every machine. Tests of training assert what
training guarantees (``test_training.py``), not what a briefly trained model predicts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTING = Path(__file__).resolve().parent
REPO = TESTING.parent
SHARED_DATA = REPO.parent / "shared" / "data"

if str(TESTING) not in sys.path:
    sys.path.insert(0, str(TESTING))


@pytest.fixture(scope="session")
def phantom_files(tmp_path_factory) -> dict:
    """Two phantom CT files, written as a user would have them: name -> (path, truth).

    ``with_l3``: abdomen-pelvis, 1.5 mm in-plane, 2.5 mm slices (axial LPS).
    ``chest``: a chest-only scan that does not contain L3.
    """
    from L3LocatorLib.phantoms import make_phantom
    from L3LocatorLib.volume import write_volume

    folder = tmp_path_factory.mktemp("phantom_files")
    out = {}
    for key, seed, preset in (("with_l3", 3, "abdomen_pelvis"), ("chest", 5, "chest")):
        volume, truth = make_phantom(seed, preset=preset, spacing=(1.5, 1.5, 2.5), matrix=256)
        out[key] = (write_volume(volume, folder / f"{key}.nii.gz"), truth)
    return out
