"""Keep other libraries' routine chatter off the user's terminal.

Every process of a batch (the command, and each Dask worker before it loads the model) calls
``quiet_libraries`` before PaddlePaddle is imported:

- PaddlePaddle warns on import that ccache is missing: a compiler cache for building C++
  extensions, which L3 Locator never does. The warning is ignored.
- PaddlePaddle's import gives the root logger, when it has no handler yet, a handler of its
  own at INFO, which then prints every library's INFO lines (Dask workers have no root
  handler). The root logger gets ours first, at WARNING, so PaddlePaddle leaves it alone.
"""

from __future__ import annotations

import logging
import warnings

#: The start of PaddlePaddle's import warning about ccache (a regular expression).
CCACHE_WARNING = "No ccache found"
#: How log lines look on the terminal.
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def quiet_libraries() -> None:
    """Ignore PaddlePaddle's ccache warning and, unless logging is already set up, log
    warnings and errors only. Safe to call more than once."""
    warnings.filterwarnings("ignore", message=CCACHE_WARNING, category=UserWarning)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
