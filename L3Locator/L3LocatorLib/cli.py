"""The ``l3locator`` command.

    l3locator locate INPUT [INPUT ...] [--model JSON] [--device auto|cpu|gpu]
                     [--views both|frontal|sagittal] [--output results.csv|results.jsonl]
                     [--qa-dir DIR] [--resume] [--workers N] [--max-gb GB]
                     [--series best|all] [--cluster local|tcp://HOST:PORT]
                     [--export-slices DIR [--neighbours N]] [--patient-ids]
    l3locator demo [--out DIR]
    l3locator phantom OUT.nii.gz [--seed N] [--preset NAME]

``locate`` prints one JSON object per scan per line on stdout (fields
``input`` (resolved path), ``series`` (DICOM series UID), ``status``
ok|not_found|error, ``slice_index``, ``l3_ijk``, ``l3_ras_mm``, ``confidence``,
``needs_review``, ``message``, ``review``, ``qa_png``, ...) and
a one-line summary on stderr at the end. ``needs_review`` is true when the level
should be checked by a person, for the reasons in ``review``. Every input named or
found gets a row, including those that cannot be read. Exit status: 0 when no scan
errored, 1 when any did, 2 on bad usage or a results file that cannot be used
(exists without --resume, not ours, locked by another batch, not writable, a disk that
fills up during the batch) or a Dask scheduler that cannot be reached, 3 when
interrupted (the finished rows are kept).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from . import __version__
from .batch import (
    DEVICE_CHOICES,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_STOPPED,
    EXIT_USAGE,
    add_batch_arguments,
    find_batch_scans,
    read_scan_volume,
    run_batch,
    usage_problem,
)
from .composition.cohort import add_composition_arguments, composition_fields, with_composition
from .errors import L3LocatorError
from .inputs import ScanInput
from .locate import locate
from .network import load_model
from .qa import save_qa_png
from .quiet import LOG_FORMAT, quiet_libraries
from .report import ROW_FIELDS
from .result import L3Result
from .results import OutputError, ResultsFile
from .volume import GB

log = logging.getLogger("l3locator")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="l3locator",
        description="Find the third lumbar vertebra (L3) in CT scans.",
    )
    parser.add_argument("--version", action="version", version=f"l3locator {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("locate", help="find L3 in CT files, DICOM folders, or folders of them")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="NIfTI/NRRD/MHA file, DICOM folder (every series in it), or a folder "
                        "to search")
    add_batch_arguments(p)
    add_composition_arguments(p)
    # Lazy: the cohort package ships with the command, not with the Slicer module.
    from .cohort.command import add_cohort_arguments

    add_cohort_arguments(p)

    d = sub.add_parser("demo", help="run the whole pipeline on a built-in synthetic CT")
    d.add_argument("--out", type=Path, default=Path("l3locator-demo"),
                   help="folder for the demo's pictures (default: ./l3locator-demo)")
    d.add_argument("--seed", type=int, default=3, help="which built-in phantom")
    d.add_argument("--model", help="model metadata JSON (default: the shipped model)")
    d.add_argument("--device", choices=DEVICE_CHOICES, default="auto")

    ph = sub.add_parser("phantom", help="write a synthetic CT with a labelled spine")
    ph.add_argument("output", type=Path, help="output image (.nii.gz, .nrrd, .mha)")
    ph.add_argument("--seed", type=int, default=0)
    ph.add_argument("--preset", default="abdomen_pelvis")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format=LOG_FORMAT)
    quiet_libraries()
    if args.command == "locate":
        from .cohort.command import cohort_usage_problem

        problem = usage_problem(args) or cohort_usage_problem(args)
        if problem:
            parser.error(problem)
        return run_locate(args)
    if args.command == "demo":
        return run_demo(args)
    return run_phantom(args)


# ------------------------------------------------------------------ locate


def run_locate(args: argparse.Namespace) -> int:
    """Every input found -> one row each, on stdout and in ``--output`` (``batch.run_batch``).

    The results file is opened, checked writable and locked before any scan is read.
    The cohort options (``--series``, ``--cluster``, ``--export-slices``) go through the
    same loop with the cohort's scans and row source (``cohort.command.run_cohort``).
    """
    from .cohort.command import cohort_requested, run_cohort

    if cohort_requested(args):
        code, line = run_cohort(args, on_row=_print_row)
        print(line, file=sys.stderr)
        return code
    scans = find_batch_scans(args.inputs)
    results: Optional[ResultsFile] = None
    if args.output is not None:
        try:
            results = ResultsFile(args.output, resume=args.resume,
                                  fields=ROW_FIELDS + composition_fields(args))
        except L3LocatorError as error:
            print(str(error), file=sys.stderr)
            return EXIT_USAGE
    try:
        if results is not None and all(scan.key in results.done for scan in scans):
            print(f"No scans to process: all {len(scans)} are done in {args.output}.",
                  file=sys.stderr)
            return EXIT_OK
        summary = run_batch(
            scans,
            with_composition(_locator(args), args),
            results=results,
            read_scan=read_scan_volume(args.max_gb * GB),
            workers=args.workers,
            memory_budget=args.max_gb * GB,
            qa_dir=args.qa_dir,
            on_row=_print_row,
        )
    except KeyboardInterrupt:
        where = f"are in {args.output}; add --resume to continue" if results else "were printed"
        print(f"Interrupted. The finished rows {where}.", file=sys.stderr)
        return EXIT_STOPPED
    except L3LocatorError as error:  # the results could not be written (a full disk)
        print(str(error), file=sys.stderr)
        return EXIT_USAGE
    finally:
        if results is not None:
            results.close()
    print(summary.line(), file=sys.stderr)
    return summary.exit_code


def _locator(args: argparse.Namespace) -> Callable[[ScanInput, Any], L3Result]:
    """The per-scan step: the model is loaded once; when it cannot be, every row says why."""
    model: Any = None
    model_error: Optional[L3LocatorError] = None
    try:
        model = load_model(args.model, device=args.device)
    except L3LocatorError as error:
        model_error = error

    def locate_scan(scan: ScanInput, volume: Any) -> L3Result:
        if model_error is not None:
            raise model_error
        return locate(volume, model=model, device=args.device, views=args.views)

    return locate_scan


def _print_row(row: dict[str, Any]) -> None:
    try:
        print(json.dumps(row), flush=True)
    except OSError as error:  # stdout on a full disk
        # Nothing more can reach it: point it at nothing so that exiting does not fail too.
        sys.stdout = open(os.devnull, "w")  # open until the process exits
        raise OutputError(f"The rows could not be printed ({error.strerror or error}). "
                          "Free some disk space, or write them with --output to a disk that "
                          "has room.") from None


# ------------------------------------------------------------------ demo and phantom


def run_demo(args: argparse.Namespace) -> int:
    """Locate L3 on a built-in phantom and print the answer next to the truth."""
    from .phantoms import make_phantom  # lazy: the phantom generator is large

    print("Making a synthetic abdomen-pelvis CT (a phantom with a known L3) ...")
    volume, truth = make_phantom(args.seed, preset="abdomen_pelvis")
    print(f"  {volume.array.shape[2]}x{volume.array.shape[1]}x{volume.array.shape[0]} voxels, "
          f"spacing {', '.join(f'{s:.2f}' for s in volume.spacing)} mm")
    try:
        result = locate(volume, model=args.model, device=args.device)
    except L3LocatorError as error:
        print(f"\nCould not run the model: {error}", file=sys.stderr)
        return EXIT_SOME_FAILED
    picture = save_qa_png(result, args.out / "demo_l3.png", title="built-in phantom")
    true_ras = truth.l3_landmark_ras
    true_k = int(round(volume.ras_to_ijk_points(true_ras)[2])) if true_ras is not None else None
    print("")
    print(f"{'':14}{'found':>16}{'truth':>16}")
    print(f"{'status':14}{result.status:>16}{'in view' if truth.l3_in_fov else 'absent':>16}")
    if result.found and true_ras is not None:
        print(f"{'slice (k)':14}{result.slice_index:>16}{true_k:>16}")
        print(f"{'S (mm)':14}{result.s_mm:>16.1f}{true_ras[2]:>16.1f}")
        body = "inside" if truth.l3_bottom_s_mm <= result.s_mm <= truth.l3_top_s_mm else "OUTSIDE"
        print(f"\nError {abs(result.s_mm - true_ras[2]):.1f} mm; the chosen slice is {body} "
              f"the L3 body ({truth.l3_bottom_s_mm:.0f} to {truth.l3_top_s_mm:.0f} mm).")
    in_memory = sum(v for k, v in result.timings_s.items() if k != "load_model")
    print(f"Confidence {result.confidence:.2f}; model {result.model_name} {result.model_version}; "
          f"{in_memory:.2f} s (plus {result.timings_s['load_model']:.2f} s to load the model).")
    for reason in result.review:
        print(f"Check: {reason}")
    print(f"QA picture: {picture}")
    return EXIT_OK


def run_phantom(args: argparse.Namespace) -> int:
    from .phantoms import PRESETS, write_phantom

    if args.preset not in PRESETS:
        print(f"Unknown preset {args.preset!r}; choose one of: {', '.join(PRESETS)}",
              file=sys.stderr)
        return EXIT_USAGE
    image, sidecar = write_phantom(args.output, seed=args.seed, preset=args.preset)
    print(f"Wrote {image} and its truth {sidecar}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
