"""The ``l3locator`` command: its output contract, exit codes, bad inputs, resume."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from geometry_helpers import marker_volume

from L3LocatorLib.cli import main
from L3LocatorLib.volume import Volume, write_volume

CONTRACT_FIELDS = {"input", "status", "slice_index", "l3_ijk", "l3_ras_mm", "confidence", "message"}


def run_cli(args: list[str], capsys) -> tuple[int, list[dict], str]:
    code = main(args)
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    return code, rows, captured.err


def test_locate_rows_follow_the_contract(phantom_files, tiny_model_json, tmp_path, capsys):
    with_l3, _ = phantom_files["with_l3"]
    code, rows, err = run_cli(
        ["locate", str(with_l3), "--model", str(tiny_model_json), "--qa-dir", str(tmp_path / "qa")],
        capsys,
    )
    assert code == 0, err
    assert len(rows) == 1
    row = rows[0]
    assert CONTRACT_FIELDS <= set(row)
    assert row["input"] == str(with_l3)
    assert row["status"] in ("ok", "not_found")
    if row["status"] == "ok":
        assert len(row["l3_ijk"]) == 3 and len(row["l3_ras_mm"]) == 3
        assert row["slice_index"] == row["l3_ijk"][row["slice_axis"]]
        assert 0.0 <= row["confidence"] <= 1.0
    assert Path(row["qa_png"]).is_file()


BAD_INPUTS = {
    "missing": "no such file",
    "truncated": "could not be read",
    "two_d": "2-D image",
    "few_slices": "at least 30 mm",
    "narrow": "wide",
    "constant": "constant",
    "nan": "no valid numbers",
    "not_ct": "does not look like a CT",
}


def _write_bad_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    good = marker_volume((60, 60, 40), (2.0, 2.0, 2.5), np.diag([-1.0, -1.0, 1.0]), (30, 30, 20))
    paths = {"missing": folder / "missing.nii.gz"}
    full = write_volume(good, folder / "full.nii.gz")
    data = full.read_bytes()
    paths["truncated"] = folder / "truncated.nii.gz"
    paths["truncated"].write_bytes(data[: len(data) // 2])
    full.unlink()
    paths["two_d"] = folder / "two_d.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((64, 64), np.int16)), str(paths["two_d"]))
    shape = (8, 60, 60)
    geometry = dict(spacing=(2.0, 2.0, 2.5), direction=np.diag([-1.0, -1.0, 1.0]))
    rng = np.random.default_rng(0)
    volumes = {
        "few_slices": Volume.from_geometry(
            rng.integers(-1000, 1500, shape).astype(np.int16), **geometry),
        "narrow": Volume.from_geometry(
            rng.integers(-1000, 1500, (60, 10, 60)).astype(np.int16), **geometry),
        "constant": Volume.from_geometry(np.full((40, 60, 60), -1000, np.int16), **geometry),
        "nan": Volume.from_geometry(np.full((40, 60, 60), np.nan, np.float32), **geometry),
        "not_ct": Volume.from_geometry(
            rng.uniform(0, 1, (40, 60, 60)).astype(np.float32), **geometry),
    }
    for name, volume in volumes.items():
        paths[name] = write_volume(volume, folder / f"{name}.nrrd")
    return paths


def test_bad_inputs_get_an_error_row_and_the_batch_goes_on(
    phantom_files, tiny_model_json, tmp_path, capsys
):
    bad = _write_bad_inputs(tmp_path / "bad")
    with_l3, _ = phantom_files["with_l3"]
    before = {p: p.read_bytes() for p in bad.values() if p.exists()}
    inputs = [str(p) for p in bad.values()] + [str(with_l3)]
    output = tmp_path / "results.csv"
    code, rows, _ = run_cli(
        ["locate", *inputs, "--model", str(tiny_model_json), "--output", str(output)], capsys
    )
    assert code == 1
    by_input = {row["input"]: row for row in rows}
    assert set(by_input) == set(inputs)
    for name, path in bad.items():
        row = by_input[str(path)]
        assert row["status"] == "error", name
        assert BAD_INPUTS[name] in row["message"], (name, row["message"])
        assert "Traceback" not in row["message"]
    assert by_input[str(with_l3)]["status"] in ("ok", "not_found")
    with output.open() as stream:
        assert [r["input"] for r in csv.DictReader(stream)] == inputs
    # The user's files are never changed.
    assert all(p.read_bytes() == data for p, data in before.items())


def test_missing_and_corrupt_weights(phantom_files, tiny_model_json, tmp_path, capsys):
    with_l3, _ = phantom_files["with_l3"]
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_json.parent, model_dir)
    model_json = model_dir / tiny_model_json.name
    meta = json.loads(model_json.read_text())
    weights = model_dir / meta["weights"]
    weights.write_bytes(weights.read_bytes()[:-100])
    code, rows, _ = run_cli(["locate", str(with_l3), "--model", str(model_json)], capsys)
    assert code == 1 and rows[0]["status"] == "error"
    assert "does not match" in rows[0]["message"]
    weights.unlink()
    code, rows, _ = run_cli(["locate", str(with_l3), "--model", str(model_json)], capsys)
    assert code == 1 and "is missing" in rows[0]["message"]
    code, rows, _ = run_cli(["locate", str(with_l3), "--model", str(tmp_path / "no.json")], capsys)
    assert code == 1 and "not found" in rows[0]["message"]


def _paddle_sees_a_gpu() -> bool:
    import paddle

    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def test_gpu_requested_without_one(phantom_files, tiny_model_json, capsys):
    if _paddle_sees_a_gpu():
        pytest.skip("this machine has a usable GPU")
    with_l3, _ = phantom_files["with_l3"]
    code, rows, _ = run_cli(
        ["locate", str(with_l3), "--model", str(tiny_model_json), "--device", "gpu"], capsys
    )
    assert code == 1 and rows[0]["status"] == "error"
    assert "GPU" in rows[0]["message"]


def test_paddle_not_installed(phantom_files, tiny_model_json, tmp_path):
    """A real import failure: a ``paddle`` package that cannot be imported shadows the real one."""
    fake = tmp_path / "fake_site" / "paddle"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named paddle (test)')\n")
    with_l3, _ = phantom_files["with_l3"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), *sys.path])}
    proc = subprocess.run(
        [sys.executable, "-m", "L3LocatorLib.cli", "locate", str(with_l3),
         "--model", str(tiny_model_json)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    row = json.loads(proc.stdout.splitlines()[-1])
    assert row["status"] == "error" and "PaddlePaddle is not installed" in row["message"]
    assert "Traceback" not in proc.stderr
    assert "1 scan(s): 0 with L3 (0 to check" in proc.stderr and "1 failed" in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["locate"],
        ["locate", "x.nii.gz", "--device", "tpu"],
        ["locate", "x.nii.gz", "--resume"],
        ["locate", "x.nii.gz", "--output", "results.txt"],
        ["locate", "x.nii.gz", "--workers", "0"],
        ["frobnicate"],
    ],
)
def test_bad_usage_exits_2(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2


def test_resume_after_an_interrupted_batch_gives_each_input_once(
    phantom_files, tiny_model_json, tmp_path
):
    """Kill a batch after its first row, resume it, and find every input exactly once."""
    source, _ = phantom_files["with_l3"]
    inputs = []
    for n in range(6):
        copy = tmp_path / "cohort" / f"scan{n}{''.join(source.suffixes)}"
        copy.parent.mkdir(exist_ok=True)
        shutil.copy(source, copy)
        inputs.append(str(copy))
    output = tmp_path / "results.jsonl"
    command = [sys.executable, "-m", "L3LocatorLib.cli", "locate", str(tmp_path / "cohort"),
               "--model", str(tiny_model_json), "--output", str(output)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if output.exists() and output.read_text().count("\n") >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    done_before = [json.loads(line)["input"] for line in output.read_text().splitlines()]
    assert 1 <= len(done_before) <= len(inputs)
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    printed = [json.loads(line)["input"] for line in resumed.stdout.splitlines()]
    assert not set(printed) & set(done_before)
    final = [json.loads(line)["input"] for line in output.read_text().splitlines()]
    assert sorted(final) == sorted(inputs)


def test_phantom_command_writes_image_and_truth(tmp_path, capsys):
    out = tmp_path / "ph.nii.gz"
    code = main(["phantom", str(out), "--seed", "5", "--preset", "lumbar_only"])
    assert code == 0
    truth = json.loads((tmp_path / "ph.json").read_text())
    assert truth["seed"] == 5 and truth["preset"] == "lumbar_only"
    assert sitk.ReadImage(str(out)).GetDimension() == 3
    assert main(["phantom", str(out), "--preset", "nonsense"]) == 2
