"""The ``l3locator`` command.

    l3locator locate INPUT [INPUT ...] [--model JSON] [--device auto|cpu|gpu]
                     [--output results.csv|results.jsonl] [--qa-dir DIR] [--resume] [--workers N]
    l3locator demo [--out DIR]
    l3locator phantom OUT.nii.gz [--seed N] [--preset NAME]

``locate`` prints one JSON object per input per line on stdout (fields
``input``, ``status`` ok|not_found|error, ``slice_index``, ``l3_ijk``,
``l3_ras_mm``, ``confidence``, ``needs_review``, ``message``, ``review``, ...) and
a one-line summary on stderr at the end. ``needs_review`` is true when the level
should be checked by a person, for the reasons in ``review``. Exit status: 0
when no input errored, 1 when any did, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional, Sequence

from . import __version__
from .errors import L3LocatorError
from .report import RowWriter, find_inputs, result_row, scan_stem

log = logging.getLogger("l3locator")

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


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
                   help="NIfTI/NRRD/MHA file, DICOM series folder, or a folder to search")
    p.add_argument("--model", help="model metadata JSON (default: the shipped model)")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument("--views", choices=("both", "frontal", "sagittal"), default="both",
                   help="which view answers (default: both, fused)")
    p.add_argument("--output", type=Path, help="results file, .csv or .jsonl, written as it goes")
    p.add_argument("--qa-dir", type=Path, help="write a QA picture (PNG) per scan here")
    p.add_argument("--resume", action="store_true",
                   help="skip inputs already in --output (continue an interrupted run)")
    p.add_argument("--workers", type=int, default=1,
                   help="scans read ahead in parallel while the model runs (default 1)")

    d = sub.add_parser("demo", help="run the whole pipeline on a built-in synthetic CT")
    d.add_argument("--out", type=Path, default=Path("l3locator-demo"),
                   help="folder for the demo's pictures (default: ./l3locator-demo)")
    d.add_argument("--seed", type=int, default=3, help="which built-in phantom")
    d.add_argument("--model", help="model metadata JSON (default: the shipped model)")
    d.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")

    ph = sub.add_parser("phantom", help="write a synthetic CT with a labelled spine")
    ph.add_argument("output", type=Path, help="output image (.nii.gz, .nrrd, .mha)")
    ph.add_argument("--seed", type=int, default=0)
    ph.add_argument("--preset", default="abdomen_pelvis")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command == "locate":
        if args.resume and args.output is None:
            parser.error("--resume needs --output (the results file to continue)")
        if args.output is not None and args.output.suffix.lower() not in (".csv", ".jsonl"):
            parser.error("--output must end in .csv or .jsonl")
        if args.workers < 1:
            parser.error("--workers must be 1 or more")
        return run_locate(args)
    if args.command == "demo":
        return run_demo(args)
    return run_phantom(args)


# ------------------------------------------------------------------ locate


def run_locate(args: argparse.Namespace) -> int:
    from .volume import read_volume

    inputs = find_inputs(args.inputs)
    writer = RowWriter(args.output, resume=args.resume) if args.output else None
    if writer is not None and args.resume:
        before = len(inputs)
        inputs = [p for p in inputs if str(p) not in writer.done]
        if before != len(inputs):
            log.warning("Resuming: %d of %d scans already done.", before - len(inputs), before)
    if not inputs:
        print("No scans to process.", file=sys.stderr)
        return EXIT_OK

    model: Any = None
    model_error: Optional[BaseException] = None
    try:
        from .network import load_model

        model = load_model(args.model, device=args.device)
    except L3LocatorError as error:
        model_error = error

    counts = {"ok": 0, "not_found": 0, "error": 0, "review": 0}
    progress = _progress(len(inputs))
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        pending: list[Future[Any]] = [pool.submit(read_volume, p) for p in inputs[: args.workers]]
        for index, path in enumerate(inputs):
            future = pending.pop(0)
            ahead = index + args.workers
            if ahead < len(inputs):
                pending.append(pool.submit(read_volume, inputs[ahead]))
            row = _locate_one(path, future, model, model_error, args)
            counts[row["status"]] += 1
            counts["review"] += bool(row.get("needs_review"))
            print(json.dumps(row), flush=True)
            if writer is not None:
                writer.write(row)
            progress.update(1)
    progress.close()
    print(f"{len(inputs)} scan(s): {counts['ok']} with L3 ({counts['review']} to check: see "
          f"'review'), {counts['not_found']} without, {counts['error']} failed (see 'message').",
          file=sys.stderr)
    return EXIT_SOME_FAILED if counts["error"] else EXIT_OK


def _locate_one(
    path: Path,
    future: Future[Any],
    model: Any,
    model_error: Optional[BaseException],
    args: argparse.Namespace,
) -> dict[str, Any]:
    from .locate import locate
    from .qa import save_qa_png

    start = time.perf_counter()
    try:
        volume = future.result()
        read_s = time.perf_counter() - start
        if model_error is not None:
            raise model_error
        result = locate(volume, model=model, device=args.device, views=args.views)
        result.timings_s = {"read": read_s, **result.timings_s}
    except Exception as error:  # one bad scan must not stop the batch
        if not isinstance(error, L3LocatorError):
            log.exception("Unexpected error on %s", path)
        return result_row(str(path), error=error)
    qa_png = ""
    if args.qa_dir is not None:
        try:
            target = args.qa_dir / f"{scan_stem(path)}_l3.png"
            qa_png = str(save_qa_png(result, target, title=path.name))
        except OSError as error:
            log.warning("Could not write the QA picture for %s: %s", path, error)
    return result_row(str(path), result, qa_png=qa_png)


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int) -> Any:
    """A progress bar on stderr for batches of more than one scan."""
    if total <= 1:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, unit="scan", file=sys.stderr, desc="Locating L3")


# ------------------------------------------------------------------ demo and phantom


def run_demo(args: argparse.Namespace) -> int:
    """Locate L3 on a built-in phantom and print the answer next to the truth."""
    from .locate import locate
    from .phantoms import make_phantom
    from .qa import save_qa_png

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
