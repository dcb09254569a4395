"""Shared test set-up: helper modules on the path, phantom scans, and a tiny trained model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTING = Path(__file__).resolve().parent
REPO = TESTING.parent
SHARED_DATA = REPO.parent / "shared" / "data"

if str(TESTING) not in sys.path:
    sys.path.insert(0, str(TESTING))

#: Small, quick phantoms (2 mm voxels, 160x160 matrix) for training the tiny test model.
FAST_PHANTOMS = "spacing=[2,2,2]:matrix=160"


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


@pytest.fixture(scope="session")
def tiny_model_json(tmp_path_factory) -> Path:
    """The ``tiny`` preset trained here on 100 random phantoms (about a minute on 2 cores)
    and exported; validated on phantoms from another seed range."""
    from L3LocatorLib.projection import PreprocessConfig
    from training.sources import parse_sources
    from training.train import TrainConfig, train

    work = tmp_path_factory.mktemp("tiny_model")
    config = PreprocessConfig()
    train_samples = parse_sources(f"phantoms:100:1000:random:{FAST_PHANTOMS}", config, work)
    val_samples = parse_sources(f"phantoms:12:900000:random:{FAST_PHANTOMS}", config, work)
    run = TrainConfig(out=str(work / "run"), arch="tiny", epochs=6, steps_per_epoch=50,
                      batch_size=8, lr=3e-3, seed=0, name="tiny",
                      # 300 steps learn the plain task; the hardest augmentations are for
                      # the shipped model's longer training.
                      augmentation={"p_short_fov": 0.0, "p_warp": 0.0})
    return train(run, train_samples, val_samples, config, progress=False)
