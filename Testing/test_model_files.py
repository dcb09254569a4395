"""Model files cannot run code, and every metadata field is checked with a clear message."""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from L3LocatorLib import network
from L3LocatorLib.errors import ModelError
from L3LocatorLib.network import default_model_path, load_model, read_metadata, sha256_file

paddle = pytest.importorskip("paddle")


class _Payload:
    """Unpickling this writes a marker file: proof that a loader ran the file's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


@pytest.fixture()
def shipped_copy(tmp_path) -> Path:
    """A copy of the shipped model (JSON + weights) in a folder of its own."""
    source = default_model_path()
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(source, folder / "model.json")
    meta = json.loads(source.read_text())
    shutil.copy(source.parent / meta["weights"], folder / meta["weights"])
    network.clear_model_cache()
    return folder / "model.json"


def _set(path: Path, **changes) -> None:
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def _point_at(path: Path, weights: Path) -> None:
    _set(path, weights=weights.name, sha256=sha256_file(weights))


def test_shipped_model_is_plain_arrays_and_loads():
    meta = read_metadata(default_model_path())
    assert meta.weights.endswith(".npz")
    weights = default_model_path().parent / meta.weights
    with zipfile.ZipFile(weights) as archive:  # every member a plain .npy array
        for name in archive.namelist():
            header = archive.read(name)[:128]
            assert header.startswith(b"\x93NUMPY") and b"'descr': '|O'" not in header
    assert sha256_file(weights) == meta.sha256
    network.clear_model_cache()
    assert load_model(None, device="cpu").levels[3] == "L3"


@pytest.mark.parametrize("kind", ["pdparams", "npz_with_object_array", "pickle_named_npz"])
def test_a_pickle_payload_in_the_weights_never_runs(shipped_copy, tmp_path, kind):
    marker = tmp_path / "marker.txt"
    if kind == "pdparams":  # what paddle.save writes: a pickle, hash made to match
        weights = shipped_copy.parent / "evil.pdparams"
        weights.write_bytes(pickle.dumps({"w": _Payload(marker)}))
    elif kind == "npz_with_object_array":
        weights = shipped_copy.parent / "evil.npz"
        buffer = io.BytesIO()
        np.savez(buffer, w=np.array([_Payload(marker)], dtype=object))
        weights.write_bytes(buffer.getvalue())
    else:
        weights = shipped_copy.parent / "evil.npz"
        weights.write_bytes(pickle.dumps(_Payload(marker)))
    _point_at(shipped_copy, weights)
    with pytest.raises(ModelError) as info:
        load_model(shipped_copy, device="cpu")
    assert not marker.exists()
    if kind == "pdparams":
        assert "pickle" in str(info.value) and "--trust-pickle" in str(info.value)
    # Nor through the command, in a fresh process.
    proc = subprocess.run(
        [sys.executable, "-m", "L3LocatorLib.cli", "locate", str(tmp_path / "none.nii.gz"),
         "--model", str(shipped_copy)], capture_output=True, encoding="utf-8", errors="replace",
        timeout=120)
    assert proc.returncode == 1 and not marker.exists()


def test_conversion_needs_the_explicit_opt_in(shipped_copy, tmp_path):
    """The one place a pickle is opened: only when the user says they trust it."""
    from training.export import convert_pickled_model

    marker = tmp_path / "marker.txt"
    weights = shipped_copy.parent / "old.pdparams"
    weights.write_bytes(pickle.dumps({"w": _Payload(marker)}))
    _point_at(shipped_copy, weights)
    with pytest.raises(ModelError, match="trust"):
        convert_pickled_model(shipped_copy, tmp_path / "out")
    assert not marker.exists()


def test_conversion_round_trip_keeps_the_outputs(tmp_path):
    from L3LocatorLib.model import build_model
    from training.export import convert_pickled_model, write_model

    shipped = read_metadata(default_model_path())
    net = build_model(shipped.model_config)
    net.eval()
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    folder = tmp_path / "old"
    npz_json = write_model(state, folder, "m", arch=shipped.arch, preprocess=shipped.preprocess,
                           views=shipped.views, levels=shipped.levels, threshold=0.5)
    paddle.save(net.state_dict(), str(folder / "m.pdparams"))  # an old-format model
    _point_at(npz_json, folder / "m.pdparams")
    converted = convert_pickled_model(npz_json, tmp_path / "new", trust_pickle=True)
    network.clear_model_cache()
    x = np.random.default_rng(1).random((1, 2, 64, 64), dtype=np.float32)
    with paddle.no_grad():
        expected = paddle.nn.functional.sigmoid(net.row_logits(paddle.to_tensor(x))).numpy()
    np.testing.assert_array_equal(load_model(converted, device="cpu").predict(x), expected)


@pytest.mark.parametrize("weights", ["/etc/passwd", "../model/x.npz", "sub/x.npz", "..",
                                     "C:\\\\x.npz", 123, None, ""])
def test_weights_must_be_a_plain_file_beside_the_json(shipped_copy, weights):
    _set(shipped_copy, weights=weights)
    with pytest.raises(ModelError, match='"weights"'):
        load_model(shipped_copy, device="cpu")


@pytest.mark.parametrize("field,value,words", [
    ("levels", None, "list of names"),
    ("levels", ["L3", "L3"], "repeat"),
    ("threshold", "abc", "must be a number"),
    ("threshold", math.nan, "between 0 and 1"),
    ("threshold", 1.5, "between 0 and 1"),
    ("threshold", True, "must be a number"),
    ("name", 7, "text"),
    ("sha256", "xyz", "hexadecimal"),
    ("training", [], "object"),
    ("views", "frontal", "list of names"),
    ("format_version", "1", "format version"),
])
def test_every_metadata_field_is_checked(shipped_copy, field, value, words):
    _set(shipped_copy, **{field: value})
    with pytest.raises(ModelError, match=words) as info:
        load_model(shipped_copy, device="cpu")
    assert str(shipped_copy) in str(info.value)


@pytest.mark.parametrize("section,field,value,words", [
    ("arch", "base_width", -8, "base_width must be above 0"),
    ("arch", "base_width", "8", "must be a finite int"),
    ("arch", "depth", 2.5, "must be a finite int"),
    ("arch", "context_dilations", [1, 0], "context_dilations"),
    ("preprocess", "pixel_mm", 0, "pixel_mm must be above 0"),
    ("preprocess", "width_mm", -512.0, "width_mm must be above 0"),
    ("preprocess", "hu_min", 2000.0, "hu_min must be below hu_max"),
    ("preprocess", "hu_max", math.inf, "finite float"),
    ("preprocess", "slab_mm", None, "finite float"),
])
def test_settings_with_wrong_types_or_ranges_are_refused(shipped_copy, section, field, value,
                                                         words):
    meta = json.loads(shipped_copy.read_text())
    meta[section][field] = value
    shipped_copy.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=words):
        read_metadata(shipped_copy)


def test_a_nan_threshold_cannot_report_l3_on_a_chest_scan(shipped_copy, phantom_files):
    """With a NaN threshold every comparison is False: the model is refused instead."""
    _set(shipped_copy, threshold=math.nan)
    chest, _ = phantom_files["chest"]
    proc = subprocess.run(
        [sys.executable, "-m", "L3LocatorLib.cli", "locate", str(chest), "--model",
         str(shipped_copy)], capture_output=True, encoding="utf-8", errors="replace", timeout=300,
        env={**os.environ})
    row = json.loads(proc.stdout.splitlines()[-1])
    assert row["status"] == "error" and "threshold" in row["message"]
