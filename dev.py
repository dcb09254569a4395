#!/usr/bin/env python3
"""Set up a local virtual environment and run L3Locator's demo or test suite.

    python3 dev.py demo     # locate L3 on a built-in synthetic CT (no files needed)
    python3 dev.py test     # run the whole test suite
    python3 dev.py shell    # print how to activate the environment

The environment lives in ``.venv`` beside this file; it is created on first use
and re-installed only when ``pyproject.toml`` changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".l3locator-installed"


def _python() -> Path:
    scripts = "Scripts" if os.name == "nt" else "bin"
    return VENV / scripts / ("python.exe" if os.name == "nt" else "python")


def ensure_environment() -> Path:
    if sys.version_info < (3, 10):
        sys.exit(f"L3Locator's set-up needs Python 3.10 or newer (this is {sys.version}).")
    if not _python().exists():
        print(f"Creating a virtual environment in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not STAMP.exists() or STAMP.read_text().strip() != wanted:
        print("Installing L3Locator and its dependencies (about a minute) ...", flush=True)
        pip = [str(_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        subprocess.run(pip + ["--upgrade", "pip"], check=True)
        subprocess.run(pip + ["-e", f"{ROOT}[test]"], check=True)
        STAMP.write_text(wanted)
    return _python()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "shell"}:
        print(__doc__)
        return 2
    python = ensure_environment()
    command, rest = argv[0], argv[1:]
    if command == "demo":
        return subprocess.call([str(python), "-m", "L3LocatorLib.cli", "demo", *rest], cwd=ROOT)
    if command == "test":
        return subprocess.call([str(python), "-m", "pytest", *rest], cwd=ROOT)
    print(f"source {VENV / 'bin' / 'activate'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
