"""Stand-in for Slicer's ``Base/Python/slicer/i18n.py`` (Slicer 5.6 and later): the same
``translate(context, text)`` and ``tr(text)``, answering through ``slicer.app.translate``
(the stand-in's app has no translations loaded, like Slicer in English)."""

from __future__ import annotations

import inspect
import logging
import os
import re


def translate(context, text):
    try:
        from slicer import app
    except ImportError:
        return text
    return app.translate(context, text)


def _placeholders(text):
    return set(re.findall(r"(?<!\{)\{([^\{\}]+)\}(?!\})", text))


def tr(text):
    """Like Slicer's: the context is the calling file's name (without ``.py``); a
    translation whose ``{placeholders}`` differ from the source's is refused (the source
    text is returned), so ``.format`` cannot fail on a bad translation."""
    frame = inspect.currentframe().f_back
    filename = inspect.getsourcefile(frame) or inspect.getfile(frame)
    context = os.path.basename(filename).replace(".py", "")
    translated = translate(context, text)
    if _placeholders(text) != _placeholders(translated):
        logging.warning("In context '%s', translation of '%s' is incorrect: placeholders do "
                        "not match", context, text)
        return text
    return translated
