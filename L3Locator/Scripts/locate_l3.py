"""Find L3 in a batch of CT scans inside 3D Slicer, without its window.

    Slicer --no-main-window --python-script L3Locator/Scripts/locate_l3.py -- \\
        --input DIR_OR_FILES [...] --output results.csv [--qa-dir DIR] [--save-scene DIR] \\
        [--model JSON] [--device auto|cpu|gpu] [--views both|frontal|sagittal] [--resume] \\
        [--install-dependencies] [--verbose]

Each scan (NIfTI, NRRD, MHA file or DICOM series folder) is loaded with Slicer's volume
reader, searched by the module's logic (``L3LocatorLogic.locate``), and written as one
row of the results file: the same rows as the ``l3locator`` command, made by the same
code (``L3LocatorLib.report``). A scan that cannot be read or searched gets an
``error`` row and the batch goes on. ``--save-scene DIR`` writes each volume with its
L3 point (``<name>.nrrd`` + ``<name>_L3.mrk.json``).

Slicer started with ``--python-script`` keeps running after the script unless the script
calls ``slicer.util.exit`` (without a main window, forever), so this script ALWAYS ends
through ``slicer.util.exit(status)``, whatever goes wrong, after one line on the error
stream saying what went wrong.

Exit status (as ``l3locator``): 0 when no scan errored, 1 when any did, 2 on bad usage
or missing Python packages, 3 when the batch had to stop (results file not writable,
an unexpected error outside a single scan).
"""

from __future__ import annotations

import argparse
import logging
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
    parser = argparse.ArgumentParser(
        prog="locate_l3.py",
        description="Find the third lumbar vertebra (L3) in CT scans, in 3D Slicer.")
    parser.add_argument("--input", nargs="+", required=True, metavar="PATH",
                        help="CT files, DICOM series folders, or folders to search")
    parser.add_argument("--output", type=Path, required=True,
                        help="results file, .csv or .jsonl, written as it goes")
    parser.add_argument("--qa-dir", type=Path, help="write a QA picture (PNG) per scan here")
    parser.add_argument("--save-scene", type=Path, metavar="DIR",
                        help="write each volume and its L3 point here")
    parser.add_argument("--model", help="model metadata JSON (default: the shipped model)")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    parser.add_argument("--views", choices=("both", "frontal", "sagittal"), default="both")
    parser.add_argument("--resume", action="store_true",
                        help="skip scans already in --output (continue an interrupted run)")
    parser.add_argument("--install-dependencies", action="store_true",
                        help="install missing Python packages (PaddlePaddle) without asking")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
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
    """Run the batch; returns the exit status. Raises ``BatchStopped`` (and, on bugs,
    anything else) when the batch cannot go on: ``run`` turns that into a status."""
    parser = _parser()
    try:
        args = parser.parse_args(_scriptArgs(argv))
    except SystemExit as stop:  # argparse: usage error (already printed) or --help
        return EXIT_USAGE if stop.code else EXIT_OK
    configureLogging(args.verbose)
    if args.output.suffix.lower() not in (".csv", ".jsonl"):
        raise BatchStopped(f"--output must end in .csv or .jsonl, not {args.output.name}.",
                           EXIT_USAGE)
    checkWritable(args.output)
    moduleDir = str(_moduleDir())
    if moduleDir not in sys.path:
        sys.path.insert(0, moduleDir)

    from L3Locator import L3LocatorLogic
    from L3LocatorLib.errors import L3LocatorError
    from L3LocatorLib.report import RowWriter, find_inputs

    logic = L3LocatorLogic()
    try:
        logic.ensureDependencies(interactive=False, install=args.install_dependencies)
    except L3LocatorError as error:
        raise BatchStopped(str(error), EXIT_USAGE) from None

    writer = RowWriter(args.output, resume=args.resume)
    inputs = [p for p in find_inputs(args.input) if str(p) not in writer.done]
    if not inputs:
        print("No scans to process.", file=sys.stderr)
        return EXIT_OK

    model, modelError = None, None
    try:
        from L3LocatorLib.network import load_model

        model = load_model(args.model, device=args.device)
    except L3LocatorError as error:  # reported in every row, as the command does
        modelError = error

    anyError = False
    for number, path in enumerate(inputs, start=1):
        log.info("[%d/%d] %s", number, len(inputs), path)
        row = locateOne(logic, path, model, modelError, args)
        anyError |= row["status"] == "error"
        try:
            writer.write(row)
        except OSError as error:
            raise BatchStopped(
                f"Could not write the results file {args.output}: {_osReason(error)}. "
                f"{number - 1} scan(s) were written before it failed; free some space or "
                "choose another place, then run again with --resume.") from None
        print(f"{path}: {row['status']} {row.get('message') or ''}".rstrip(), flush=True)
    return EXIT_SOME_FAILED if anyError else EXIT_OK


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


def checkWritable(output: Path) -> None:
    """Fail before any work when the results file cannot be written."""
    import tempfile

    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output.parent, prefix=".l3locator-", delete=True):
            pass
        if output.exists() and not output.is_file():
            raise IsADirectoryError(21, "it is a folder", str(output))
    except OSError as error:
        raise BatchStopped(
            f"Cannot write the results file {output}: {_osReason(error)}. Choose a folder "
            "you can write to.") from None


def locateOne(logic, path: Path, model, modelError, args) -> dict:
    """One scan -> one results row; the scene is left as it was found."""
    import slicer

    from L3LocatorLib.report import result_row, scan_stem

    before = {slicer.mrmlScene.GetNthNode(i).GetID()
              for i in range(slicer.mrmlScene.GetNumberOfNodes())}
    try:
        try:
            start = time.perf_counter()
            volumeNode = loadScan(path)
            readSeconds = time.perf_counter() - start
            if modelError is not None:
                raise modelError
            result = logic.locate(volumeNode, createPoint=args.save_scene is not None,
                                  model=model, device=args.device, views=args.views,
                                  jump=False)
            result.timings_s = {"read": readSeconds, **result.timings_s}
        except Exception as error:  # one bad scan must not stop the batch
            if not _isUserError(error):
                log.exception("Unexpected error on %s", path)
            return result_row(str(path), error=error)
        qaPng = ""
        stem = scan_stem(path)
        if args.qa_dir is not None:
            try:
                from L3LocatorLib.qa import save_qa_png

                qaPng = str(save_qa_png(result, args.qa_dir / f"{stem}_l3.png", title=path.name))
            except OSError as error:
                log.warning("Could not write the QA picture for %s: %s", path, error)
        row = result_row(str(path), result, qa_png=qaPng)
        if args.save_scene is not None:
            try:
                saveResult(volumeNode, logic.lastPointListNode, args.save_scene, stem)
            except OSError as error:  # the answer stands; the row says what is missing
                row["status"] = "error"
                row["message"] = " ".join(filter(None, (
                    row.get("message"),
                    f"The volume and its L3 point could not be saved in {args.save_scene}: "
                    f"{_osReason(error)}. Choose a folder you can write to.")))
        return row
    finally:
        for index in reversed(range(slicer.mrmlScene.GetNumberOfNodes())):
            node = slicer.mrmlScene.GetNthNode(index)
            if node is not None and node.GetID() not in before:
                slicer.mrmlScene.RemoveNode(node)


def loadScan(path: Path):
    """Load a CT with Slicer's volume reader: a file, or the largest DICOM series of a folder."""
    import slicer

    from L3LocatorLib.errors import InputError
    from L3LocatorLib.report import scan_stem

    if not path.exists():
        raise InputError(f"{path}: no such file or folder. Check the path and try again.")
    properties = {"name": scan_stem(path), "singleFile": False, "show": False}
    fileName = path
    if path.is_dir():
        from L3LocatorLib.volume import dicom_series

        series = dicom_series(path)
        if not series:
            raise InputError(f"{path}: no DICOM series found in this folder.")
        files = series[0][1]
        fileName = Path(files[0])
        properties["fileNames"] = files
    try:
        node = slicer.util.loadVolume(str(fileName), properties)
    except RuntimeError as error:
        raise InputError(
            f"{path}: could not be read as a CT image. The file may be damaged, still being "
            f"copied, or in a format Slicer does not read. ({_firstLine(error)})") from None
    if node is None:  # older Slicer returned None instead of raising
        raise InputError(f"{path}: could not be read as a CT image.")
    return node


def saveResult(volumeNode, pointListNode, folder: Path, stem: str) -> None:
    """Write the volume (NRRD) and its point list (.mrk.json); ``OSError`` when not written."""
    import slicer

    folder.mkdir(parents=True, exist_ok=True)
    targets = [(volumeNode, folder / f"{stem}.nrrd")]
    if pointListNode is not None:
        targets.append((pointListNode, folder / f"{stem}_L3.mrk.json"))
    for node, target in targets:
        if not slicer.util.saveNode(node, str(target)):
            raise OSError(5, "Slicer could not write the file", str(target))


def exitSlicer(status: int) -> None:
    """End the application with ``status``. Outside Slicer (plain Python) exit normally."""
    try:
        import slicer

        exitApplication = slicer.util.exit
    except (ImportError, AttributeError):
        sys.exit(status)
    sys.stdout.flush()
    sys.stderr.flush()
    exitApplication(status)


def _say(message: str) -> None:
    print(f"locate_l3.py: {message}", file=sys.stderr, flush=True)


def _isUserError(error: BaseException) -> bool:
    from L3LocatorLib.errors import L3LocatorError

    return isinstance(error, L3LocatorError)


def _osReason(error: OSError) -> str:
    return error.strerror or _firstLine(error)


def _firstLine(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


if __name__ == "__main__":
    exitSlicer(run())
