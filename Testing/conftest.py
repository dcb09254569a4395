"""Shared test set-up: make the helper modules in this folder importable."""

from __future__ import annotations

import sys
from pathlib import Path

TESTING = Path(__file__).resolve().parent
REPO = TESTING.parent
SHARED_DATA = REPO.parent / "shared" / "data"

if str(TESTING) not in sys.path:
    sys.path.insert(0, str(TESTING))
