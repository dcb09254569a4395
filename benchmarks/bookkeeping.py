"""Batch bookkeeping cost per row: the results file and the batch loop, without any scan work.

    python benchmarks/bookkeeping.py [--rows 300,1000,3000]

For each batch size the loop (``batch.run_batch``) runs on that many inputs whose per-scan
step returns at once, writing every row to a results file (``results.ResultsFile``:
appended, flushed and synced per row), then the file is opened again with ``--resume``
semantics (every row parsed, nothing left to do). Linear bookkeeping means the time per
row stays flat as the batch grows: the printed ratio (largest batch / smallest, per row)
is about 1; a file rewritten after every row (the old writer) grows with the batch, so
its cost per row grows with the batch (timed for the smallest and largest sizes unless
``--skip-old``; on a slow disk the per-row sync hides part of the growth).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from L3LocatorLib.batch import run_batch
from L3LocatorLib.inputs import ScanInput
from L3LocatorLib.report import result_row
from L3LocatorLib.result import L3Result
from L3LocatorLib.results import ResultsFile


def _result(scan: ScanInput, data: object) -> L3Result:
    return L3Result(status="ok", message="L3 found.", slice_index=41, slice_axis=2,
                    l3_ijk=[10, 20, 41], l3_ras_mm=[1.5, -2.25, 100.1], s_mm=100.1,
                    confidence=0.93, model_name="default", model_version="1",
                    timings_s={"project": 0.1})


def time_batch(n_rows: int, folder: Path) -> dict[str, float]:
    """Seconds per row to run and record ``n_rows`` scans, and to resume the full file."""
    scans = [ScanInput(Path(f"/data/cohort/patient{n:05d}/CT.nii.gz")) for n in range(n_rows)]
    output = folder / f"results_{n_rows}.csv"
    start = time.perf_counter()
    with ResultsFile(output) as results:
        run_batch(scans, _result, results=results, progress=False)
    write_s = time.perf_counter() - start
    resume_s = float("inf")
    for _ in range(3):  # best of three: the whole file is parsed in a few ms
        start = time.perf_counter()
        with ResultsFile(output, resume=True) as results:
            summary = run_batch(scans, _result, results=results, progress=False)
        resume_s = min(resume_s, time.perf_counter() - start)
        assert summary.skipped == n_rows
    return {"rows": n_rows, "write_ms_per_row": 1e3 * write_s / n_rows,
            "resume_ms_per_row": 1e3 * resume_s / n_rows, "write_s": write_s}


def time_rewrite_every_row(n_rows: int, folder: Path) -> float:
    """Milliseconds per row of the old writer's strategy: the whole file rewritten (temporary
    file, fsync, rename) after every row."""
    import csv
    import io

    from L3LocatorLib.report import ROW_FIELDS

    rows: list[dict] = []
    path = folder / f"rewrite_{n_rows}.csv"
    start = time.perf_counter()
    for n in range(n_rows):
        rows.append(result_row(f"/data/p{n}/CT.nii.gz", _result(ScanInput(Path("x")), None)))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(ROW_FIELDS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: row.get(k) for k in ROW_FIELDS} for row in rows)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as stream:
            stream.write(out.getvalue())
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    return 1e3 * (time.perf_counter() - start) / n_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="300,1000,3000")
    parser.add_argument("--skip-old", action="store_true",
                        help="do not time the old whole-file rewrite (about a minute)")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.rows.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runs = [time_batch(n, folder) for n in sizes]
        old = {} if args.skip_old else {
            n: time_rewrite_every_row(n, folder) for n in sorted({sizes[0], sizes[-1]})}
    for run in runs:
        print(f"{run['rows']:>6} rows: {run['write_ms_per_row']:.3f} ms/row to run and record "
              f"({run['write_s']:.2f} s), {run['resume_ms_per_row']:.3f} ms/row to resume")
    for n, ms in old.items():
        print(f"{n:>6} rows, whole file rewritten per row (old writer): {ms:.3f} ms/row")
    small, large = runs[0], runs[-1]
    ratio = large["write_ms_per_row"] / small["write_ms_per_row"]
    resume_ratio = large["resume_ms_per_row"] / small["resume_ms_per_row"]
    print(f"per-row cost, {large['rows']} vs {small['rows']} rows: x{ratio:.2f} to record, "
          f"x{resume_ratio:.2f} to resume (1 = linear)")
    summary = {"runs": runs, "ratio_record": ratio, "ratio_resume": resume_ratio,
               "old_rewrite_ms_per_row": old}
    if len(old) >= 2:
        first, last = min(old), max(old)
        summary["ratio_old"] = old[last] / old[first]
        print(f"old writer per-row cost, {last} vs {first} rows: x{summary['ratio_old']:.2f}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
