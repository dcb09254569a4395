"""Item 11 of issue 24: a full disk (when the results file is opened, in the middle of a
batch, on stdout) and a Dask scheduler that never answers end in one clear line and exit
status 2, never a traceback, and leave no results file that nothing was written to."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from L3LocatorLib import cli, results
from L3LocatorLib.batch import EXIT_USAGE
from L3LocatorLib.results import read_rows

REPO = Path(__file__).resolve().parent.parent


class _FullDisk:
    """A results stream on a disk with ``room`` bytes left: the write that does not fit
    writes what fits, then raises ENOSPC (as ``write(2)`` does)."""

    def __init__(self, stream, room: int) -> None:
        self._stream, self._room = stream, room

    def write(self, text: str) -> int:
        if len(text) > self._room:
            self._stream.write(text[: self._room])
            self._stream.flush()
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(text)
        return self._stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _disk_with_room(monkeypatch, room: int) -> None:
    def full_open(path, *args, **kwargs):
        return _FullDisk(open(path, *args, **kwargs), room)

    monkeypatch.setattr(results, "open", full_open, raising=False)


def _inputs(tmp_path: Path, n: int) -> list[str]:
    """Inputs that are quick to answer: files that do not exist (one error row each)."""
    return [str(tmp_path / f"scan{i}.nii.gz") for i in range(n)]


def _one_clear_line(err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip() and "Locating L3" not in line
             and "ccache" not in line and "warnings.warn" not in line]
    assert len(lines) == 1, lines
    assert "Traceback" not in err and all(word in lines[0] for word in words), lines[0]


def test_item11_a_full_disk_when_the_results_file_is_opened(tmp_path, monkeypatch, capsys):
    _disk_with_room(monkeypatch, 0)
    out = tmp_path / "results.csv"
    code = cli.main(["locate", *_inputs(tmp_path, 2), "--output", str(out)])
    assert code == EXIT_USAGE
    _one_clear_line(capsys.readouterr().err, str(out), "No space left on device")
    assert not out.exists()  # no empty file left behind


@pytest.mark.parametrize("route", ["batch", "cohort"])
def test_item11_a_full_disk_in_the_middle_of_a_batch(tmp_path, monkeypatch, capsys, route):
    """The header and the first row fit, the second row is cut: exit 2 with one line, the
    first row kept, and --resume finishes the batch with one row per scan."""
    scans = _inputs(tmp_path, 3)
    out = tmp_path / "results.csv"
    extra = ["--export-slices", str(tmp_path / "slices")] if route == "cohort" else []
    _disk_with_room(monkeypatch, 10**9)
    assert cli.main(["locate", scans[0], "--output", str(tmp_path / "probe.csv"),
                     *extra]) == 1
    header_and_a_row = len((tmp_path / "probe.csv").read_text())
    capsys.readouterr()
    _disk_with_room(monkeypatch, header_and_a_row + 20)
    code = cli.main(["locate", *scans, "--output", str(out), *extra])
    assert code == EXIT_USAGE
    _one_clear_line(capsys.readouterr().err, "No space left on device", "--resume")
    assert [row["input"] for row in read_rows(out)] == [scans[0]]  # the cut row left out
    monkeypatch.undo()
    assert cli.main(["locate", *scans, "--output", str(out), "--resume", *extra]) == 1
    assert sorted(row["input"] for row in read_rows(out)) == scans


@pytest.mark.skipif(not os.access("/dev/full", os.W_OK), reason="no writable /dev/full here")
def test_item11_rows_printed_to_a_full_disk(tmp_path):
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "L3LocatorLib.cli", "locate", *_inputs(tmp_path, 2)],
            stdout=full, stderr=subprocess.PIPE, encoding="utf-8", errors="replace",
            timeout=300, cwd=REPO)
    assert proc.returncode == EXIT_USAGE
    _one_clear_line(proc.stderr, "could not be printed", "No space left on device")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_item11_an_unreachable_scheduler_leaves_no_results_file(tmp_path, capsys):
    pytest.importorskip("distributed")
    import dask

    address = f"tcp://127.0.0.1:{_closed_port()}"
    out = tmp_path / "results.csv"
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        code = cli.main(["locate", *_inputs(tmp_path, 1), "--cluster", address,
                         "--output", str(out)])
    assert code == EXIT_USAGE
    _one_clear_line(capsys.readouterr().err, address, "did not answer", "--cluster local")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no results file, no lock
