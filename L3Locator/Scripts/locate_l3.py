"""Find L3 in a batch of CT scans inside 3D Slicer, without its window.

    Slicer --no-main-window --python-script L3Locator/Scripts/locate_l3.py -- \\
        --input DIR_OR_FILES [...] --output results.csv [--qa-dir DIR] [--save-scene DIR] \\
        [--model JSON] [--device auto|cpu|gpu] [--views both|frontal|sagittal] [--resume] \\
        [--max-gb GB] [--install-dependencies] [--verbose] \\
        [--composition [--height-m M] [--sex M|F] [--weight-kg KG] [--slice K] \\
         [--preset NAME] [--slab-mm MM] [--masks-dir DIR]]

The batch loop is ``L3LocatorLib.batch.run_batch``, the one ``l3locator locate`` uses: the
same input discovery (DICOM series found by content), the same reader and checks (a DICOM
series with missing or duplicated slices is refused, uneven spacing and gantry tilt are
resampled, as by ``l3locator``), the same results file (appended row by row, never
overwritten, ``--resume`` to continue), the same rows and QA pictures. What is Slicer's
here: each scan, once read, is added to the scene from its voxel array and searched by the
module's logic (``L3LocatorLogic.locate``); ``--save-scene DIR`` writes each volume with its
L3 point (``<name>.nrrd`` + ``<name>_L3.mrk.json``; the point file is in LPS, Slicer's file
convention, while ``l3_ras_mm`` in the results is RAS: the same point with its first two
coordinates negated); ``--install-dependencies`` installs PaddlePaddle with Slicer's pip,
without dialogs. ``--composition`` (and its options) measures muscle and fat on the L3
slice with the command's own code (``composition.cohort.with_composition``) on the volume
as read, so the rows carry the same columns and values as ``l3locator locate
--composition``. A progress bar is drawn only where tqdm is installed (Slicer has none):
each finished scan prints its own line.

Slicer started with ``--python-script`` keeps running after the script unless the script
calls ``slicer.util.exit`` (without a main window, forever), so this script ALWAYS ends
through ``slicer.util.exit(status)``, whatever goes wrong, after one line on the error
stream (``locate_l3.py: ...``) saying what went wrong.

Exit status (as ``l3locator``): 0 when no scan errored, 1 when any did, 2 on bad usage,
a results file that cannot be written, or Python packages missing (or not installable);
3 when the batch stopped on an unexpected error (a bug) or was interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3
#: Loggers whose level --verbose sets (Slicer's root logger already has a DEBUG handler,
#: so ``logging.basicConfig`` does nothing there: the levels are set on ours instead).
LOGGER_NAMES = ("l3locator", "L3Locator", "L3LocatorLib")
log = logging.getLogger("l3locator.slicer")


class BatchStopped(Exception):
    """The batch cannot go on; the message says why and what to do; ``status`` is the
    exit status."""

    def __init__(self, message: str, status: int = EXIT_STOPPED) -> None:
        super().__init__(message)
        self.status = status


def _moduleDir() -> Path:
    # ``__file__`` is set by Slicer's executeFile and by Python's import
    return Path(__file__).resolve().parent.parent


def _parser() -> argparse.ArgumentParser:
    from L3LocatorLib.batch import add_batch_arguments
    from L3LocatorLib.composition.cohort import add_composition_arguments

    parser = argparse.ArgumentParser(
        prog="locate_l3.py",
        description="Find the third lumbar vertebra (L3) in CT scans, in 3D Slicer.")
    parser.add_argument("--input", nargs="+", required=True, metavar="PATH",
                        help="CT files, DICOM series folders, or folders to search")
    # --model --device --views --output --qa-dir --resume --max-gb, as l3locator locate
    # (no --workers: volumes are loaded into the scene on Slicer's main thread)
    add_batch_arguments(parser, read_ahead=False)
    parser.add_argument("--save-scene", type=Path, metavar="DIR",
                        help="write each volume (NRRD) and its L3 point (.mrk.json) here; "
                             "the point file is in LPS (Slicer's file convention), the "
                             "results' l3_ras_mm in RAS: x and y change sign")
    parser.add_argument("--install-dependencies", action="store_true",
                        help="install missing Python packages (PaddlePaddle) without asking")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    add_composition_arguments(parser)  # --composition --height-m ..., as l3locator locate
    return parser


def _scriptArgs(argv: Optional[Sequence[str]]) -> list[str]:
    """Slicer passes what follows the script path; drop the ``--`` separator."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--":
        args = args[1:]
    return args


def configureLogging(verbose: bool) -> None:
    """INFO (progress) from our loggers with ``--verbose``, else warnings and errors only.

    Inside Slicer the root logger already has Slicer's handler (at DEBUG), so the level
    must be set on our own loggers; in plain Python (tests) a handler is added.
    """
    level = logging.INFO if verbose else logging.WARNING
    for name in LOGGER_NAMES:
        logging.getLogger(name).setLevel(level)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the batch (``L3LocatorLib.batch.run_batch``, the loop ``l3locator locate`` uses);
    returns the exit status. Raises ``BatchStopped`` (and, on bugs, anything else) when the
    batch cannot go on: ``run`` turns that into a status and one line."""
    scriptArgs = _scriptArgs(argv)
    configureLogging("--verbose" in scriptArgs or "-v" in scriptArgs)  # before any import
    moduleDir = str(_moduleDir())
    if moduleDir not in sys.path:
        sys.path.insert(0, moduleDir)
    from L3Locator import L3LocatorLogic
    from L3LocatorLib.errors import L3LocatorError

    try:  # before the library's imports: a Slicer without SciPy gets a message, not a trace
        L3LocatorLogic.checkBundledPackages()
    except L3LocatorError as error:
        raise BatchStopped(str(error), EXIT_USAGE) from None
    parser = _parser()
    try:
        args = parser.parse_args(scriptArgs)
    except SystemExit as stop:  # argparse: usage error (already printed) or --help
        return EXIT_USAGE if stop.code else EXIT_OK
    configureLogging(args.verbose)

    from L3LocatorLib.batch import find_batch_scans, run_batch, usage_problem
    from L3LocatorLib.composition.cohort import composition_fields, with_composition
    from L3LocatorLib.report import ROW_FIELDS
    from L3LocatorLib.results import ResultsFile

    problem = usage_problem(args) or ("" if args.output is not None else
                                      "--output is required (the results file to write)")
    if problem:
        raise BatchStopped(problem + ".", EXIT_USAGE)
    logic = L3LocatorLogic()
    try:
        logic.ensureDependencies(interactive=False, install=args.install_dependencies)
    except L3LocatorError as error:
        raise BatchStopped(str(error), EXIT_USAGE) from None
    try:  # opened, checked writable and locked before any scan is read
        results = ResultsFile(args.output, resume=args.resume,
                              fields=ROW_FIELDS + composition_fields(args))
    except L3LocatorError as error:
        raise BatchStopped(str(error), EXIT_USAGE) from None
    with results:
        scans = find_batch_scans(args.input)
        if all(scan.key in results.done for scan in scans):
            print(f"No scans to process: all {len(scans)} are done in {args.output}.",
                  file=sys.stderr)
            return EXIT_OK
        locator = SceneLocator(logic, args)
        summary = run_batch(scans, locator.readAndLocate(with_composition(locator, args)),
                            results=results, qa_dir=args.qa_dir, on_row=_printRow)
    print(summary.line(), file=sys.stderr)
    return summary.exit_code


def run(argv: Optional[Sequence[str]] = None) -> int:
    """``main`` that never raises: whatever goes wrong becomes an exit status and one
    line on the error stream saying what went wrong (details with --verbose)."""
    try:
        return main(argv)
    except BatchStopped as stop:
        _say(str(stop))
        return stop.status
    except KeyboardInterrupt:
        _say("Interrupted. Run again with --resume to continue where it stopped.")
        return EXIT_STOPPED
    except SystemExit as stop:  # a library calling sys.exit must not take Slicer down
        code = stop.code if isinstance(stop.code, int) else EXIT_STOPPED
        _say(f"Stopped (exit status {code}).")
        return code or EXIT_STOPPED
    except BaseException as error:  # a bug: one line for the user, the trace for the log
        log.debug("Unexpected error", exc_info=True)
        _say(f"Unexpected internal error; the batch stopped ({type(error).__name__}: "
             f"{_firstLine(error)}). This is a bug in L3 Locator; please report it. "
             "Run again with --verbose for details.")
        return EXIT_STOPPED


class SceneLocator:
    """The per-scan step of the batch inside Slicer: ``readAndLocate`` reads the scan with
    the command's reader (``inputs.read_input``: its checks and its geometry); the locator
    adds it to the scene, locates with the module's logic, optionally saves the volume and
    its point, and leaves the scene as it was found. The model is loaded once; when it
    cannot be, every row says why (as ``l3locator`` does)."""

    def __init__(self, logic, args) -> None:
        from L3LocatorLib.errors import L3LocatorError
        from L3LocatorLib.network import load_model

        self.logic = logic
        self.args = args
        self.model = None
        self.modelError: Optional[Exception] = None
        try:
            self.model = load_model(args.model, device=args.device)
        except L3LocatorError as error:
            self.modelError = error

    def readAndLocate(self, step):
        """The batch's step: read the scan (a scan needing more than ``--max-gb`` GB is
        refused before reading; ``InputError`` with the command's message), then
        ``step(scan, volume)``: this locator, or it followed by the composition
        measurement on the same volume (``composition.cohort.with_composition``)."""
        from L3LocatorLib.inputs import read_input
        from L3LocatorLib.volume import GB

        def readThenLocate(scan, data=None):
            log.info("Loading %s", scan.path)
            start = time.perf_counter()
            volume = read_input(scan, max_bytes=self.args.max_gb * GB)
            readSeconds = time.perf_counter() - start
            result = step(scan, volume)
            result.timings_s = {"read": readSeconds, **result.timings_s}
            return result

        return readThenLocate

    def __call__(self, scan, volume):
        import slicer

        from L3Locator import temporaryNodes

        with temporaryNodes():
            volumeNode = slicer.util.addVolumeFromArray(volume.array, volume.ijk_to_ras,
                                                        scan.stem)
            if self.modelError is not None:
                raise self.modelError
            result = self.logic.locate(volumeNode, createPoint=self.args.save_scene is not None,
                                       model=self.model, device=self.args.device,
                                       views=self.args.views, jump=False,
                                       createTable=False)  # the row goes to the results file
            if self.args.save_scene is not None:
                saveResult(volumeNode, self.logic.lastPointListNode, self.args.save_scene,
                           scan.stem, result)
            return result


def saveResult(volumeNode, pointListNode, folder: Path, stem: str, result) -> None:
    """Write the volume (NRRD) and its point list (.mrk.json). When that fails the scan's
    row is an error whose message still gives the answer."""
    import slicer

    from L3LocatorLib.results import OutputError

    try:
        folder.mkdir(parents=True, exist_ok=True)
        targets = [(volumeNode, folder / f"{stem}.nrrd")]
        if pointListNode is not None:
            targets.append((pointListNode, folder / f"{stem}_L3.mrk.json"))
        for node, target in targets:
            if not slicer.util.saveNode(node, str(target)):
                raise OSError(5, "Slicer could not write the file", str(target))
    except OSError as error:
        answer = (f"L3 found at slice {result.slice_index} (S = {result.s_mm:.1f} mm), but"
                  if result.found else "L3 not found, and")
        raise OutputError(
            f"{answer} the volume and its L3 point could not be saved in {folder}: "
            f"{_osReason(error)}. Choose a folder you can write to.") from None


def _printRow(row: dict) -> None:
    print(f"{row['input']}: {row['status']} {row.get('message') or ''}".rstrip(), flush=True)


def exitSlicer(status: int) -> None:
    """End the application with ``status``. Outside Slicer (plain Python) exit normally.
    Should Slicer's own exit fail, the process ends anyway: a batch must never hang."""
    try:
        import slicer

        exitApplication = slicer.util.exit
    except (ImportError, AttributeError):
        sys.exit(status)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        exitApplication(status)
    except Exception as error:  # noqa: BLE001 - whatever it is, the process must end
        _say(f"Slicer could not be closed normally ({type(error).__name__}); ending it.")
        os._exit(status)


def _say(message: str) -> None:
    """One line on the error stream (a cluster log keeps it whole)."""
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    print(f"locate_l3.py: {text}", file=sys.stderr, flush=True)


def _osReason(error: OSError) -> str:
    return error.strerror or _firstLine(error)


def _firstLine(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


if __name__ == "__main__":
    exitSlicer(run())
