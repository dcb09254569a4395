"""Run a script the way ``Slicer --no-main-window --python-script SCRIPT -- ARGS`` does,
against the stand-in ``slicer`` package, in a process of its own.

What it imitates (Base/QTCore/qSlicerCoreApplication.cxx, qSlicerCoreCommandOptions.cxx,
Base/Python/slicer/slicerqt.py):

- the root logger has a DEBUG-level handler before the script starts (Slicer's
  application log handler), so ``logging.basicConfig`` in the script does nothing;
- the script runs in ``__main__``'s namespace with ``__file__`` set; an exception that
  escapes it is printed as a traceback and the application goes on;
- ``--python-script`` leaves ``runPythonAndExit`` False: after the script the
  application keeps running its event loop, forever without a main window, unless the
  script called ``slicer.util.exit(status)`` (then the process ends with ``status``).
  Run it with a timeout: a script that forgets to exit hangs here as it hangs in Slicer.

Stand-in options (before ``--``): ``--version 5.8`` (which Slicer to imitate),
``--pip-fails`` (pip exits with status 1, as it does offline), ``--pip-cannot-start``
(Slicer finds no PythonSlicer to run pip with: ``RuntimeError``), ``--hide-distribution NAME``
(importlib.metadata does not find NAME: a Slicer where it was never installed),
``--block-import NAME`` (``import NAME`` fails: a broken installation), ``--broken-exit``
(``slicer.util.exit`` raises, as with an application object it does not expect).
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.metadata
import logging
import os
import sys
import time
import traceback

STANDIN = os.path.dirname(os.path.abspath(__file__))


def _hideDistributions(names):
    hidden = {name.lower().replace("_", "-") for name in names}
    realVersion = importlib.metadata.version
    realDistribution = importlib.metadata.distribution

    def check(name):
        if name.lower().replace("_", "-") in hidden:
            raise importlib.metadata.PackageNotFoundError(name)

    def version(name):
        check(name)
        return realVersion(name)

    def distribution(name):
        check(name)
        return realDistribution(name)

    importlib.metadata.version = version
    importlib.metadata.distribution = distribution


class _BlockImports(importlib.abc.MetaPathFinder):
    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            raise ImportError(f"No module named '{fullname}' (blocked by the stand-in)")
        return None


def _slicerLogging():
    """Slicer's slicerqt.py: the root logger at DEBUG with the application's handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("[%(levelname)s][Python] %(message)s"))
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--python-script", required=True)
    parser.add_argument("--no-main-window", action="store_true")
    parser.add_argument("--version", default="5.12")
    parser.add_argument("--pip-fails", action="store_true")
    parser.add_argument("--pip-cannot-start", action="store_true")
    parser.add_argument("--hide-distribution", action="append", default=[])
    parser.add_argument("--block-import", action="append", default=[])
    parser.add_argument("--broken-exit", action="store_true")
    argv = sys.argv[1:]
    rest = []
    if "--" in argv:
        cut = argv.index("--")
        argv, rest = argv[:cut], argv[cut + 1:]
    options = parser.parse_args(argv)

    _slicerLogging()
    if options.hide_distribution:
        _hideDistributions(options.hide_distribution)
    if options.block_import:
        sys.meta_path.insert(0, _BlockImports(options.block_import))
    sys.path.insert(0, STANDIN)
    import slicer

    slicer.reset(version=options.version)
    slicer.util.pipFailure["returncode"] = 1 if options.pip_fails else 0
    slicer.util.pipFailure["pythonSlicerMissing"] = options.pip_cannot_start
    slicer.app.commandOptions().pythonScript = options.python_script
    if options.broken_exit:
        def brokenExit(status=0):
            raise AttributeError("'qSlicerApplication' object has no attribute 'commandOptions'")

        slicer.util.exit = brokenExit

    script = os.path.abspath(options.python_script)
    sys.argv = [script, *rest]
    namespace = {"__name__": "__main__", "__file__": script, "__builtins__": __builtins__}
    pythonErrorOccurred = False
    try:
        with open(script, encoding="utf-8") as stream:
            code = compile(stream.read(), script, "exec")
        exec(code, namespace)
    except SystemExit as stop:  # sys.exit() in a script: PythonQt reports it, Slicer stays
        print(f"SystemExit: {stop.code}", file=sys.stderr)
        pythonErrorOccurred = True
    except BaseException:  # printed, as PythonQt does; the application goes on
        traceback.print_exc()
        pythonErrorOccurred = True
    sys.stdout.flush()
    sys.stderr.flush()

    # The event loop: it returns when slicer.util.exit (app.exit) was called.
    if slicer.app.exitCode is not None:
        os._exit(int(slicer.app.exitCode))
    if slicer.app.commandOptions().runPythonAndExit:
        os._exit(1 if pythonErrorOccurred else 0)
    while True:  # no main window to close: nothing else ends this process
        time.sleep(3600)


if __name__ == "__main__":
    main()
