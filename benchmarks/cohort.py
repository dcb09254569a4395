"""Cohort throughput: scans per minute from files on disk to results rows.

    python benchmarks/cohort.py [--scans 20] [--shape 300,512,512] [--workers 2]
                                [--formats nifti,dicom] [--work DIR]

For the same N synthetic CTs, written once as .nii.gz files and as DICOM series (one
file per slice, UID names), each mode runs in a fresh Python process:

- ``read``: only read every scan (the read-bound limit), one process;
- ``read-dask``: only read, on a Dask LocalCluster of ``--workers`` processes (the
  read-bound limit of the parallel modes);
- ``serial``: read, then locate, one scan after the other;
- ``threads``: the reader runs one scan ahead in a thread while the model runs (the
  command's ``cohort.command.serial_rows``);
- ``dask``: one task per scan (read + locate) on a LocalCluster of ``--workers``
  processes.

Throughput excludes start-up (interpreter, cluster and model loading: reported apart).
CPU seconds per scan (user + system of the processes doing the work) and the load
average at the start say how much of the machine a mode had: on a machine shared with
other jobs the wall-clock ratios mean little, the CPU seconds still do.
Peak memory is each process's maximum resident set (MB): the driver for the one-process
modes, every worker for the Dask ones. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODES = ("read", "read-dask", "serial", "threads", "dask")


def make_data(work: Path, scans: int, shape_kji: tuple[int, int, int], formats: list[str]) -> None:
    """Write the scans (skipped when the folder already holds them)."""
    import numpy as np

    from L3LocatorLib.cohort.dicom_write import ct_image, new_uid, save_dataset
    from L3LocatorLib.phantoms import make_phantom
    from L3LocatorLib.volume import LPS_TO_RAS, write_volume

    for n in range(scans):
        nifti = work / "nifti" / f"ct{n:03d}.nii.gz"
        dicom = work / "dicom" / f"ct{n:03d}"
        todo_nifti = "nifti" in formats and not nifti.exists()
        todo_dicom = "dicom" in formats and not (dicom / "done").exists()
        if not (todo_nifti or todo_dicom):
            continue
        volume, _ = make_phantom(n, preset="abdomen_pelvis", matrix=(shape_kji[2], shape_kji[1]),
                                 n_slices=shape_kji[0], spacing=(0.8, 0.8, 1.25),
                                 orientation="axial_lps")
        if todo_nifti:
            nifti.parent.mkdir(parents=True, exist_ok=True)
            write_volume(volume, nifti)
        if todo_dicom:
            dicom.mkdir(parents=True, exist_ok=True)
            lps = LPS_TO_RAS @ volume.ijk_to_ras
            s = volume.spacing
            orientation = [*(lps[:3, 0] / s[0]), *(lps[:3, 1] / s[1])]
            series, study = new_uid(), {"StudyInstanceUID": new_uid(),
                                        "FrameOfReferenceUID": new_uid(), "PatientID": f"B{n}"}
            for k in range(volume.array.shape[0]):
                position = lps[:3, :3] @ np.array([0.0, 0.0, k]) + lps[:3, 3]
                ds = ct_image(volume.array[k], position, orientation, (s[1], s[0]), s[2],
                              series_uid=series, series_number=2, instance_number=k + 1,
                              series_description="Abdomen 1.25 B30f", kernel="B30f",
                              patient_study=study)
                save_dataset(ds, dicom / ds.SOPInstanceUID)
            (dicom / "done").touch()
        print(f"  wrote scan {n + 1}/{scans}", file=sys.stderr, flush=True)


def tasks_for(work: Path, fmt: str, scans: int) -> list:
    from L3LocatorLib.cohort.tasks import tasks_for_scans, tasks_for_tree
    from L3LocatorLib.inputs import find_scans

    if fmt == "nifti":
        return tasks_for_scans(find_scans(sorted((work / "nifti").glob("*.nii.gz"))[:scans]))
    roots = sorted(p for p in (work / "dicom").iterdir() if p.is_dir())[:scans]
    return tasks_for_tree(roots, series_mode="best")


def cpu_s() -> float:
    """CPU seconds (user + system, all threads) this process has used."""
    times = os.times()
    return times.user + times.system


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def read_only(task, options) -> dict:
    """A Dask task that only reads the scan (for the read-bound limit)."""
    from L3LocatorLib.cohort.tasks import read_task

    volume = read_task(task)
    return {"input": str(task.scan.path), "status": "ok", "voxels": int(volume.array.size)}


def import_readers(options) -> None:
    """Import what reading needs in a worker, outside the timing (like the model load)."""
    import SimpleITK  # noqa: F401

    import L3LocatorLib.inputs  # noqa: F401


def run_mode(mode: str, fmt: str, work: Path, scans: int, workers: int) -> dict:
    """One mode on one format, in this process: throughput and memory."""
    from L3LocatorLib.cohort.tasks import TaskOptions, cached_model, error_row, read_task, warm_up
    from L3LocatorLib.cohort.tasks import run_task as locate_task

    options = TaskOptions(device="cpu")
    start_up = time.perf_counter()
    scan_tasks = tasks_for(work, fmt, scans)
    header_s = time.perf_counter() - start_up
    out: dict = {"mode": mode, "format": fmt, "scans": len(scan_tasks),
                 "header_scan_s": round(header_s, 2)}
    if mode in ("read", "serial", "threads"):
        if mode != "read":
            cached_model(options)
        out["startup_s"] = round(time.perf_counter() - start_up, 2)
        start, cpu_start, load = time.perf_counter(), cpu_s(), os.getloadavg()[0]
        if mode == "read":
            for task in scan_tasks:
                read_task(task)
        elif mode == "serial":
            rows = [locate_task(task, options) for task in scan_tasks]
        else:  # the command's own read-ahead (``l3locator locate --series ...``)
            from L3LocatorLib.cohort.command import serial_rows

            rows = list(serial_rows(scan_tasks, options, read_ahead=1))
        seconds = time.perf_counter() - start
        cpu = cpu_s() - cpu_start
        out["peak_mb"] = {"driver": round(peak_mb())}
    else:
        from L3LocatorLib.cohort.dask_runner import (
            ClusterOptions,
            DaskSession,
            dask_rows,
            worker_peak_memory,
        )

        with DaskSession(ClusterOptions(workers=workers)) as session:
            fn = read_only if mode == "read-dask" else locate_task
            # Start-up outside the timing: the model (dask) or the readers' imports.
            session.client.run(warm_up if mode == "dask" else import_readers, options)
            out["startup_s"] = round(time.perf_counter() - start_up, 2)
            before = session.client.run(cpu_s)
            start, load = time.perf_counter(), os.getloadavg()[0]
            rows = list(dask_rows(session, scan_tasks, fn, options, error_row=error_row))
            seconds = time.perf_counter() - start
            after = session.client.run(cpu_s)
            cpu = sum(after[w] - before[w] for w in after if w in before)
            out["peak_mb"] = {f"worker{n}": round(v) for n, v in
                              enumerate(worker_peak_memory(session).values())}
            out["peak_mb"]["driver"] = round(peak_mb())
    if mode not in ("read",):
        statuses = [r["status"] for r in rows]
        out["statuses"] = {s: statuses.count(s) for s in sorted(set(statuses))}
    out["seconds"] = round(seconds, 2)
    out["cpu_s_per_scan"] = round(cpu / len(scan_tasks), 2)
    out["load_average"] = round(load, 1)
    out["scans_per_min"] = round(60.0 * len(scan_tasks) / seconds, 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--shape", default="300,512,512", help="slices,rows,columns")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--formats", default="nifti,dicom")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--work", type=Path, default=Path("/tmp/l3locator-cohort-bench"))
    parser.add_argument("--one", nargs=2, metavar=("MODE", "FORMAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = run_mode(args.one[0], args.one[1], args.work, args.scans, args.workers)
        print(json.dumps(result))
        return 0
    shape = tuple(int(v) for v in args.shape.split(","))
    formats = args.formats.split(",")
    make_data(args.work, args.scans, shape, formats)  # type: ignore[arg-type]
    results = []
    for fmt in formats:
        for mode in args.modes.split(","):
            command = [sys.executable, __file__, "--one", mode, fmt, "--scans", str(args.scans),
                       "--workers", str(args.workers), "--work", str(args.work)]
            run = subprocess.run(command, capture_output=True, text=True, check=False)
            if run.returncode != 0:
                print(run.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{mode} on {fmt} failed")
            result = json.loads(run.stdout.strip().splitlines()[-1])
            results.append(result)
            print(f"{fmt:6} {mode:10} {result['scans_per_min']:7.1f} scans/min "
                  f"({result['seconds']:.1f} s for {result['scans']}; start-up "
                  f"{result['startup_s']:.1f} s; {result['cpu_s_per_scan']:.2f} CPU-s/scan; load "
                  f"{result['load_average']}; peak MB {result['peak_mb']})", flush=True)
    for fmt in formats:
        limit = {r["mode"]: r["scans_per_min"] for r in results if r["format"] == fmt}
        for mode, ref in (("serial", "read"), ("threads", "read"), ("dask", "read-dask")):
            if mode in limit and ref in limit:
                print(f"{fmt:6} {mode:8} / {ref:9} = {limit[mode] / limit[ref]:.2f}")
    print(json.dumps({"shape_kji": shape, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
