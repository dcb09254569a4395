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
from L3LocatorLib.network import default_model_path
from L3LocatorLib.volume import Volume, write_volume

CONTRACT_FIELDS = {"input", "status", "slice_index", "l3_ijk", "l3_ras_mm", "confidence", "message"}


@pytest.fixture()
def model_json() -> Path:
    """The shipped model: the command's behaviour is tested with the model users get."""
    return default_model_path()


def run_cli(args: list[str], capsys) -> tuple[int, list[dict], str]:
    code = main(args)
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    return code, rows, captured.err


def test_locate_rows_follow_the_contract(phantom_files, model_json, tmp_path, capsys):
    with_l3, _ = phantom_files["with_l3"]
    code, rows, err = run_cli(
        ["locate", str(with_l3), "--model", str(model_json), "--qa-dir", str(tmp_path / "qa")],
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
    phantom_files, model_json, tmp_path, capsys
):
    bad = _write_bad_inputs(tmp_path / "bad")
    with_l3, _ = phantom_files["with_l3"]
    before = {p: p.read_bytes() for p in bad.values() if p.exists()}
    inputs = [str(p) for p in bad.values()] + [str(with_l3)]
    output = tmp_path / "results.csv"
    code, rows, _ = run_cli(
        ["locate", *inputs, "--model", str(model_json), "--output", str(output)], capsys
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


def test_missing_and_corrupt_weights(phantom_files, model_json, tmp_path, capsys):
    with_l3, _ = phantom_files["with_l3"]
    shipped = model_json
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    model_json = Path(shutil.copy(shipped, model_dir / shipped.name))
    meta = json.loads(model_json.read_text())
    shutil.copy(shipped.parent / meta["weights"], model_dir / meta["weights"])
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


def test_gpu_requested_without_one(phantom_files, model_json, capsys):
    if _paddle_sees_a_gpu():
        pytest.skip("this machine has a usable GPU")
    with_l3, _ = phantom_files["with_l3"]
    code, rows, _ = run_cli(
        ["locate", str(with_l3), "--model", str(model_json), "--device", "gpu"], capsys
    )
    assert code == 1 and rows[0]["status"] == "error"
    assert "GPU" in rows[0]["message"]


def test_paddle_not_installed(phantom_files, model_json, tmp_path):
    """A real import failure: a ``paddle`` package that cannot be imported shadows the real one."""
    fake = tmp_path / "fake_site" / "paddle"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named paddle (test)')\n")
    with_l3, _ = phantom_files["with_l3"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), *sys.path])}
    proc = subprocess.run(
        [sys.executable, "-m", "L3LocatorLib.cli", "locate", str(with_l3),
         "--model", str(model_json)],
        capture_output=True, encoding="utf-8", errors="replace", env=env, timeout=120,
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
    phantom_files, model_json, tmp_path
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
               "--model", str(model_json), "--output", str(output)]
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
    resumed = subprocess.run(command + ["--resume"], capture_output=True, encoding="utf-8",
                             errors="replace", timeout=300)
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


# ------------------------------------------------------------------ the Trust issue (13)


def _two_same_named(folder: Path, source: Path) -> list[Path]:
    copies = []
    for patient in ("p1", "p2"):
        (folder / patient).mkdir(parents=True)
        copies.append(Path(shutil.copy(source, folder / patient / "CT.nii.gz")))
    return copies


def test_same_named_scans_get_their_own_qa_picture_named_in_the_row(
    phantom_files, model_json, tmp_path, capsys, monkeypatch
):
    """Issue 13.6: p1/CT.nii.gz and p2/CT.nii.gz; and one scan named twice is one row."""
    with_l3, _ = phantom_files["with_l3"]
    p1, p2 = _two_same_named(tmp_path / "cohort", with_l3)
    monkeypatch.chdir(tmp_path)
    code, rows, err = run_cli(
        ["locate", "cohort/p1/CT.nii.gz", str(p1), str(p2), "--model", str(model_json),
         "--qa-dir", str(tmp_path / "qa")], capsys)
    assert code == 0, err
    assert [row["input"] for row in rows] == [str(p1.resolve()), str(p2.resolve())]
    pictures = [Path(row["qa_png"]) for row in rows]
    assert pictures[0] != pictures[1] and all(p.is_file() for p in pictures)
    assert len(list((tmp_path / "qa").iterdir())) == 2


def test_results_file_is_never_clobbered(phantom_files, model_json, tmp_path, capsys):
    """Issue 13.7: an existing file without --resume, another tool's CSV with --resume,
    a symbolic link and the file's permissions."""
    with_l3, _ = phantom_files["with_l3"]
    theirs = tmp_path / "theirs.csv"
    theirs.write_text("patient,weight_kg\nP1,70\n")
    for extra in ([], ["--resume"]):
        code, rows, err = run_cli(["locate", str(with_l3), "--model", str(model_json),
                                   "--output", str(theirs), *extra], capsys)
        assert code == 2 and rows == [] and str(theirs) in err
        assert theirs.read_text() == "patient,weight_kg\nP1,70\n"
    real = tmp_path / "store" / "results.csv"
    real.parent.mkdir()
    link = tmp_path / "results.csv"
    link.symlink_to(real)
    code, _, err = run_cli(["locate", str(with_l3), str(tmp_path / "missing.nii.gz"),
                            "--model", str(model_json), "--output", str(link)], capsys)
    assert code == 1, err
    os.chmod(real, 0o640)
    code, rows, err = run_cli(["locate", str(with_l3), "--model", str(model_json),
                               "--output", str(link)], capsys)
    assert code == 2 and "already exists" in err and rows == []
    code, rows, _ = run_cli(["locate", str(with_l3), str(tmp_path / "missing.nii.gz"),
                             "--model", str(model_json), "--output", str(link), "--resume"],
                            capsys)
    assert [row["input"] for row in rows] == [str(tmp_path / "missing.nii.gz")]  # retried
    assert link.is_symlink() and (real.stat().st_mode & 0o777) == 0o640
    with real.open() as stream:
        assert len(list(csv.DictReader(stream))) == 2


def test_a_second_batch_on_the_same_output_is_refused(phantom_files, model_json, tmp_path):
    """Issue 13.8: while one batch holds the results file, another is refused at once."""
    from L3LocatorLib.results import ResultsFile

    with_l3, _ = phantom_files["with_l3"]
    output = tmp_path / "results.jsonl"
    with ResultsFile(output):
        proc = subprocess.run(
            [sys.executable, "-m", "L3LocatorLib.cli", "locate", str(with_l3),
             "--model", str(model_json), "--output", str(output), "--resume"],
            capture_output=True, encoding="utf-8", errors="replace", timeout=120)
    assert proc.returncode == 2 and "another L3 Locator batch" in proc.stderr
    assert proc.stdout == ""


def test_resume_after_a_failed_run_retries_the_failures(phantom_files, model_json, tmp_path,
                                                       capsys):
    """Issue 13.9: a run with a wrong --model fails every scan; --resume redoes them all."""
    with_l3, _ = phantom_files["with_l3"]
    scans = _two_same_named(tmp_path / "cohort", with_l3)
    output = tmp_path / "results.csv"
    code, rows, _ = run_cli(["locate", str(tmp_path / "cohort"), "--model",
                             str(tmp_path / "wrong.json"), "--output", str(output)], capsys)
    assert code == 1 and [row["status"] for row in rows] == ["error", "error"]
    code, rows, err = run_cli(["locate", str(tmp_path / "cohort"), "--model", str(model_json),
                               "--output", str(output), "--resume"], capsys)
    assert code == 0, err
    assert [row["input"] for row in rows] == [str(p) for p in scans]
    with output.open() as stream:
        final = list(csv.DictReader(stream))
    assert sorted(r["input"] for r in final) == sorted(str(p) for p in scans)
    assert {r["status"] for r in final} <= {"ok", "not_found"}
    code, rows, err = run_cli(["locate", str(tmp_path / "cohort"), "--model", str(model_json),
                               "--output", str(output), "--resume"], capsys)
    assert code == 0 and rows == [] and "No scans to process" in err


def test_unusable_output_is_found_before_the_first_scan(phantom_files, model_json, tmp_path,
                                                        capsys):
    """Issue 13.10: an output that cannot be written, or a JSONL with a non-object line."""
    with_l3, _ = phantom_files["with_l3"]
    (tmp_path / "a_file").write_text("x")
    code, rows, err = run_cli(["locate", str(with_l3), "--model", str(model_json),
                               "--output", str(tmp_path / "a_file" / "results.csv")], capsys)
    assert code == 2 and rows == [] and "cannot be written" in err
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"input": "/x", "status": "ok"}\n[1, 2]\n')
    code, rows, err = run_cli(["locate", str(with_l3), "--model", str(model_json),
                               "--output", str(odd), "--resume"], capsys)
    assert code == 2 and rows == [] and "line 2 is not a results row" in err
    assert odd.read_text() == '{"input": "/x", "status": "ok"}\n[1, 2]\n'


def test_a_scan_over_the_memory_budget_is_refused_before_reading(phantom_files, model_json,
                                                                 capsys):
    """Issue 13.5: the header's promise is checked against --max-gb before any voxel."""
    with_l3, _ = phantom_files["with_l3"]
    code, rows, _ = run_cli(["locate", str(with_l3), "--model", str(model_json),
                             "--max-gb", "0.01"], capsys)
    assert code == 1 and rows[0]["status"] == "error"
    assert "GB of memory (the limit is 0.0 GB)" in rows[0]["message"]


def test_dicom_tree_one_row_per_input_each_error_explained(tmp_path, model_json, capsys):
    """Issue 13.3, end to end: UID-named DICOM files behind macOS ``._*`` files, an empty
    folder, an unreadable file and a missing path: five inputs, five rows."""
    from geometry_helpers import write_dicom_series

    from L3LocatorLib.phantoms import make_phantom

    volume, _ = make_phantom(3, preset="abdomen", spacing=(2.0, 2.0, 3.0), matrix=160)
    study = tmp_path / "export" / "patient1"
    for n, path in enumerate(write_dicom_series(volume, study)):
        path.rename(study / f"1.3.12.2.1107.5.1.4.{n}")
    for n in range(25):
        (study / f"._{n:03d}").write_bytes(b"\x00\x05\x16\x07" + bytes(300))
    (tmp_path / "export" / "patient2").mkdir()
    (tmp_path / "export" / "patient3").mkdir()
    unreadable = tmp_path / "export" / "patient3" / "IM0001"
    if os.geteuid() == 0:  # root reads anything: a link to a file that is gone instead
        unreadable.symlink_to(tmp_path / "gone")
    else:
        unreadable.write_bytes(bytes(200))
        unreadable.chmod(0)
    code, rows, err = run_cli(["locate", str(tmp_path / "export"), str(tmp_path / "nope"),
                               "--model", str(model_json)], capsys)
    assert code == 1
    assert len(rows) == 4 and "4 scan(s)" in err and "3 failed" in err
    by_status = {row["input"]: row for row in rows}
    dicom = by_status[str(study.resolve())]
    assert dicom["status"] in ("ok", "not_found") and dicom["series"]
    messages = sorted(row["message"] for row in rows if row["status"] == "error")
    assert any("empty" in m for m in messages)
    assert any("cannot be opened" in m and "IM0001" in m for m in messages)
    assert any("no such file" in m for m in messages)


def test_interrupted_batch_exits_3_and_keeps_its_rows(phantom_files, model_json, tmp_path):
    """Ctrl-C: exit status 3 (the shared list in ``batch``), finished rows kept, resumable."""
    from L3LocatorLib.batch import EXIT_STOPPED

    source, _ = phantom_files["with_l3"]
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    for n in range(8):
        shutil.copy(source, cohort / f"scan{n}.nii.gz")
    output = tmp_path / "results.jsonl"
    command = [sys.executable, "-m", "L3LocatorLib.cli", "locate", str(cohort),
               "--model", str(model_json), "--output", str(output)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            encoding="utf-8", errors="replace")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if output.exists() and output.read_text().count("\n") >= 1:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.05)
    _, err = proc.communicate(timeout=120)
    done = [json.loads(line)["input"] for line in output.read_text().splitlines()]
    if proc.returncode == 0:  # finished before the signal arrived
        assert len(done) == 8
        return
    assert proc.returncode == EXIT_STOPPED and "add --resume to continue" in err, err
    resumed = subprocess.run(command + ["--resume"], capture_output=True, encoding="utf-8",
                             errors="replace", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    final = [json.loads(line)["input"] for line in output.read_text().splitlines()]
    assert sorted(final) == sorted(str(p) for p in cohort.iterdir())


# ------------------------------------------------------------------ Trust, round 2 (issue 24)


def test_24_13_a_qa_picture_that_cannot_be_written_is_said_in_the_row(
    phantom_files, model_json, tmp_path, capsys
):
    """Issue 24.13 (the plain command): ``qa_png`` empty, the answer kept, and ``message``
    says why the picture is missing and what to do; no file is left behind."""
    with_l3, _ = phantom_files["with_l3"]
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, [row], err = run_cli(["locate", str(with_l3), "--model", str(model_json),
                                "--qa-dir", str(blocker / "qa")], capsys)
    assert code == 0 and row["status"] == "ok" and row["qa_png"] is None, err
    assert row["message"].startswith("L3 found")
    assert f"The QA picture could not be written in {blocker / 'qa'} (Not a directory)" \
        in row["message"] and "--qa-dir" in row["message"]
    assert sorted(os.listdir(tmp_path)) == ["a_file"]
