"""Model files cannot run code, and every metadata field is checked with a clear message."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from L3LocatorLib import model_files, network
from L3LocatorLib.errors import ModelError
from L3LocatorLib.model import ModelConfig
from L3LocatorLib.model_files import (
    SETTING_RANGES,
    default_model_path,
    read_metadata,
    read_weights,
    sha256_file,
)
from L3LocatorLib.network import load_model
from L3LocatorLib.preprocess import PreprocessConfig

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
    from L3LocatorLib.network import build_model
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
    ("arch", "base_width", -8, "base_width is -8, outside 1 to 256"),
    ("arch", "base_width", "8", "must be a finite int"),
    ("arch", "depth", 2.5, "must be a finite int"),
    ("arch", "context_dilations", [1, 0], "context_dilations"),
    ("preprocess", "pixel_mm", 0, "pixel_mm is 0, outside"),
    ("preprocess", "width_mm", -512.0, "width_mm is -512"),
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


# ------------------------------------------------------------ item 9 (issue 24)


def _npy_header(shape: tuple, dtype: str = "<f4") -> bytes:
    """A version 1.0 .npy header (magic, length, dict) for an array of ``shape``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _replace_member(shipped_copy: Path, member: str, data: bytes,
                    compress: int = zipfile.ZIP_STORED) -> Path:
    """The model's weights with one member's bytes replaced (the hash made to match, as an
    attacker who writes both files would)."""
    weights = shipped_copy.parent / json.loads(shipped_copy.read_text())["weights"]
    with zipfile.ZipFile(weights) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members[member] = data
    with zipfile.ZipFile(weights, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload, compress_type=compress)
    _point_at(shipped_copy, weights)
    return weights


def _first_member(shipped_copy: Path) -> str:
    weights = shipped_copy.parent / json.loads(shipped_copy.read_text())["weights"]
    with zipfile.ZipFile(weights) as archive:
        return archive.namelist()[0]


def _deflate_bomb(shipped_copy: Path, n_bytes: int) -> Path:
    """Replace the first member by a valid .npy of ``n_bytes`` of zeros, deflated (about
    1000:1): the weights file stays small, its first array is huge."""
    member = _first_member(shipped_copy)
    weights = shipped_copy.parent / json.loads(shipped_copy.read_text())["weights"]
    with zipfile.ZipFile(weights) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(weights, "w", compression=zipfile.ZIP_DEFLATED,
                         compresslevel=9) as archive:
        info = zipfile.ZipInfo(member)
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as stream:
            stream.write(_npy_header((n_bytes // 4,)))
            block = bytes(1 << 24)
            for start in range(0, n_bytes, len(block)):
                stream.write(block[: n_bytes - start])
        for name, payload in members.items():
            if name != member:
                archive.writestr(name, payload)
    _point_at(shipped_copy, weights)
    return weights


def test_item9_a_member_claiming_32_gib_is_refused_before_it_is_read(shipped_copy,
                                                                   phantom_files):
    member = _first_member(shipped_copy)
    _replace_member(shipped_copy, member, _npy_header((8 * 2**30,)) + bytes(64))
    with pytest.raises(ModelError, match="damaged or was tampered with") as info:
        load_model(shipped_copy, device="cpu")
    assert member[:-4] in str(info.value) and str(32 * 2**30) in str(info.value)
    # The command gives the scan its row (it used to end in a MemoryError traceback).
    proc, row = _locate_with(shipped_copy, phantom_files["chest"][0])
    assert proc.returncode == 1 and row["status"] == "error" and member[:-4] in row["message"]
    assert "Traceback" not in proc.stderr


def test_item9_a_member_whose_size_disagrees_with_its_header_is_refused(shipped_copy):
    """The right header with more data behind it (a bomb hidden after a real array)."""
    member = _first_member(shipped_copy)
    weights = shipped_copy.parent / json.loads(shipped_copy.read_text())["weights"]
    with zipfile.ZipFile(weights) as archive:
        good = archive.read(member)
    _replace_member(shipped_copy, member, good + bytes(1 << 20), zipfile.ZIP_DEFLATED)
    with pytest.raises(ModelError, match="holds .* bytes"):
        load_model(shipped_copy, device="cpu")


def test_item9_a_member_of_another_dtype_is_refused(shipped_copy):
    member = _first_member(shipped_copy)
    weights = shipped_copy.parent / json.loads(shipped_copy.read_text())["weights"]
    with zipfile.ZipFile(weights) as archive:
        array = np.load(io.BytesIO(archive.read(member)))
    buffer = io.BytesIO()
    np.save(buffer, array.astype(np.float64))
    _replace_member(shipped_copy, member, buffer.getvalue())
    with pytest.raises(ModelError, match="float64"):
        load_model(shipped_copy, device="cpu")


def test_item9_a_deflate_bomb_is_refused_without_inflating_it(shipped_copy):
    """256 MB of zeros in a 260 kB member: refused from the headers; the loading process
    never grows by the bomb's size (measured in a fresh process)."""
    bomb = 256 * 2**20
    weights = _deflate_bomb(shipped_copy, bomb)
    assert weights.stat().st_size < bomb / 100
    code = (
        "import resource, sys\n"
        "from L3LocatorLib.errors import ModelError\n"
        "from L3LocatorLib.network import load_model\n"
        "try:\n"
        f"    load_model({str(shipped_copy)!r}, device='cpu')\n"
        "except ModelError as error:\n"
        "    print('refused:', error)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    baseline = (
        "import resource\n"
        "from L3LocatorLib.network import load_model\n"
        "load_model(None, device='cpu')\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    runs = [subprocess.run([sys.executable, "-c", text], capture_output=True, text=True,
                           timeout=300) for text in (code, baseline)]
    assert all(run.returncode == 0 for run in runs), runs[0].stderr[-2000:]
    assert "refused:" in runs[0].stdout and "do not fit" in runs[0].stdout
    peak_kb, baseline_kb = (int(run.stdout.split()[-1]) for run in runs)
    assert peak_kb - baseline_kb < bomb / 1024 / 4, (peak_kb, baseline_kb)


def _numeric_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name != "version"
            and isinstance(getattr(cls, f.name), (int, float, tuple))]


def test_item9_every_numeric_setting_has_its_range_in_one_table():
    assert sorted(SETTING_RANGES["arch"]) == sorted(_numeric_fields(ModelConfig))
    assert sorted(SETTING_RANGES["preprocess"]) == sorted(_numeric_fields(PreprocessConfig))
    shipped = json.loads(default_model_path().read_text())
    for section, limits in SETTING_RANGES.items():  # the shipped model is well inside
        for name, (low, high) in limits.items():
            values = shipped[section][name]
            assert all(low <= v <= high for v in (values if isinstance(values, list)
                                                  else [values])), name


def _absurd_settings() -> list[tuple[str, str, object]]:
    """The issue's values, then one below and one far above each range."""
    cases = [("preprocess", "slab_mm", 1e-9), ("preprocess", "hu_max", 1e308),
             ("preprocess", "pixel_mm", 0.001), ("arch", "context_dilations", [1, 10**6])]
    for section, limits in SETTING_RANGES.items():
        for name, (low, high) in limits.items():
            for value in (low - 1, high * 10 + 1):
                cases.append((section, name, [value] if name == "context_dilations" else value))
    return cases


@pytest.mark.parametrize("section,name,value", _absurd_settings())
def test_item9_absurd_settings_are_refused_as_model_errors(shipped_copy, section, name, value):
    meta = json.loads(shipped_copy.read_text())
    meta[section][name] = value
    shipped_copy.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=f"{name} is .*, outside") as info:
        read_metadata(shipped_copy)
    assert str(shipped_copy) in str(info.value) and "re-export" in str(info.value)


@pytest.mark.parametrize("arch,words", [
    ({"base_width": 256, "depth": 6, "max_width": 0}, "widest layer has 16384 channels"),
    ({"context_dilations": [1] * 9}, "9 context dilations"),
])
def test_item9_an_architecture_too_large_to_build_is_refused(shipped_copy, arch, words):
    meta = json.loads(shipped_copy.read_text())
    meta["arch"].update(arch)
    shipped_copy.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=words):
        read_metadata(shipped_copy)


def _locate_with(model_json, scan):
    """``l3locator locate scan --model model_json`` in a subprocess: (the process, its row)."""
    proc = subprocess.run(
        [sys.executable, "-m", "L3LocatorLib.cli", "locate", str(scan), "--model",
         str(model_json)], capture_output=True, encoding="utf-8", errors="replace",
        timeout=300)
    return proc, json.loads(proc.stdout.splitlines()[-1])


def test_item9_an_absurd_setting_is_a_model_error_row_not_not_found(shipped_copy, phantom_files):
    """A 1e-9 mm slab used to answer every scan not_found; now every row says the model
    is at fault."""
    meta = json.loads(shipped_copy.read_text())
    meta["preprocess"]["slab_mm"] = 1e-9
    shipped_copy.write_text(json.dumps(meta))
    proc, row = _locate_with(shipped_copy, phantom_files["with_l3"][0])
    assert proc.returncode == 1 and row["status"] == "error"
    assert "slab_mm is 1e-09" in row["message"] and "model" in row["message"]


def test_item9_a_weights_link_that_leaves_the_models_folder_is_refused(shipped_copy, tmp_path):
    weights = shipped_copy.parent / json.loads(shipped_copy.read_text())["weights"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    weights.rename(elsewhere / weights.name)
    weights.symlink_to(elsewhere / weights.name)
    with pytest.raises(ModelError, match="outside the model's own folder"):
        load_model(shipped_copy, device="cpu")
    # A link to a file in the same folder is the model's own file: accepted.
    weights.unlink()
    (elsewhere / weights.name).rename(shipped_copy.parent / "real.npz")
    weights.symlink_to("real.npz")
    assert load_model(shipped_copy, device="cpu").levels[3] == "L3"


def test_item9_the_total_is_capped(shipped_copy):
    """Without an architecture to compare with (``--init`` in training), the sum of the
    members' headers is still capped before anything is inflated."""
    weights = shipped_copy.parent / json.loads(shipped_copy.read_text())["weights"]
    assert len(read_weights(weights)) == 127
    _deflate_bomb(shipped_copy, 600 * 2**20)
    with pytest.raises(ModelError, match="would take 60[01] MB, more than any L3Locator model"):
        read_weights(weights)


def test_item9_model_py_no_longer_imports_the_networks():
    """``model`` (the configuration) is imported by ``networks``; it must not import the
    network classes (or the loading stage) back."""
    import ast

    tree = ast.parse(Path(model_files.__file__).with_name("model.py").read_text())
    imported = {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.level == 1}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and node.level == 1 and node.module is None for alias in node.names}
    assert not imported & {"networks", "network", "model_files"}, imported


def test_item9_the_shipped_weights_read_exactly_as_numpy_reads_them():
    weights = default_model_path().parent / read_metadata(default_model_path()).weights
    ours = read_weights(weights)
    with np.load(weights, allow_pickle=False) as reference:
        assert sorted(ours) == sorted(reference.files)
        for name in reference.files:
            np.testing.assert_array_equal(ours[name], reference[name], strict=True)


def _odd_weights(kind: str, shipped_copy: Path) -> None:
    """The model's weights with one odd member (hash made to match)."""
    weights = shipped_copy.parent / json.loads(shipped_copy.read_text())["weights"]
    with zipfile.ZipFile(weights) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    first_info, first_data = members[0]
    if kind == "not_npy":
        members.append((zipfile.ZipInfo("readme.txt"), b"hello"))
    elif kind == "repeated":
        members.append((zipfile.ZipInfo(first_info.filename), first_data))
    elif kind == "npy_version_3":
        members[0] = (first_info, b"\x93NUMPY\x03\x00" + first_data[8:])
    elif kind == "big_endian":
        array = np.load(io.BytesIO(first_data))
        buffer = io.BytesIO()
        np.save(buffer, array.astype(">f4"))
        members[0] = (first_info, buffer.getvalue())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the repeated name
        with zipfile.ZipFile(weights, "w") as archive:
            for info, data in members:
                archive.writestr(info, data)
    if kind == "encrypted":  # the first member's "encrypted" flag, in both its headers
        data = bytearray(weights.read_bytes())
        for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            data[data.index(signature) + flags_at] |= 0x1
        weights.write_bytes(bytes(data))
    _point_at(shipped_copy, weights)


@pytest.mark.parametrize("kind,words", [
    ("encrypted", "encrypted"),
    ("not_npy", "'readme.txt' is not a .npy array"),
    ("repeated", "is repeated"),
    ("npy_version_3", "version"),
    ("big_endian", ">f4"),
])
def test_item9_odd_members_are_refused_with_a_model_error(shipped_copy, kind, words):
    _odd_weights(kind, shipped_copy)
    with pytest.raises(ModelError, match=words):
        load_model(shipped_copy, device="cpu")
