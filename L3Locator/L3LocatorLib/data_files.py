"""The detached data files an NRRD or MetaImage header names: only files beside the header.

A ``.nhdr``/``.nrrd`` header may put its voxels in other files with ``data file:`` (or
``datafile:``), a ``.mhd``/``.mha`` header with ``ElementDataFile =``: one file, ``LIST``
(the file names on the lines that follow) or a ``printf`` pattern with a number range
(``slice%03d.raw 1 120 1``). Both formats allow any path there, ``../../etc/passwd`` or
another patient's ``/data/p2/scan.raw`` included, and SimpleITK would read it as voxels.
L3 Locator reads only plain file names in the header's own folder (a symbolic link there
that leads out of it is refused too); ``detached_data_problem`` checks this from the
header's text, before SimpleITK opens anything.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

#: The header text read (bytes): headers are a few hundred bytes; a LIST of one file
#: per slice of a 3000-slice scan stays well inside.
MAX_HEADER_BYTES = 1 << 20
_NRRD_SUFFIXES = (".nrrd", ".nhdr")
_META_SUFFIXES = (".mha", ".mhd")
#: The one integer conversion a file name pattern may hold (``%d``, ``%03d``).
_INTEGER_CONVERSION = re.compile(r"%[-+ 0#]*[0-9]*d")


def detached_data_problem(header: Path) -> str:
    """Why the data files ``header`` names cannot be read, or "": a name with a folder in
    it, an absolute path, a link leading out of the header's folder, or a file name pattern
    that is not understood. "" as well for files without detached data (NIfTI, a .nrrd or
    .mha holding its own voxels)."""
    suffix = header.name.lower()
    if not suffix.endswith(_NRRD_SUFFIXES + _META_SUFFIXES):
        return ""
    try:
        with open(header, "rb") as stream:
            text = stream.read(MAX_HEADER_BYTES).decode("latin-1")
    except OSError:
        return ""  # the reader says why it cannot open the header
    nrrd = suffix.endswith(_NRRD_SUFFIXES)
    names = _nrrd_data_files(text) if nrrd else _meta_data_files(text)
    field = "data file" if nrrd else "ElementDataFile"
    for name in names:
        if name is None:
            return (f"{header}: its header names its voxel data with a file name pattern "
                    f"({field}) that L3 Locator does not read. Save the scan as a single "
                    ".nrrd, .mha or .nii.gz file.")
        if not _beside(header, name):
            return (f"{header}: its header says its voxels are in {name!r}, outside the "
                    "header's folder. L3 Locator reads only data files beside their header, "
                    "so that a header cannot make it read any file on this computer. Copy "
                    "the data file next to the header and name it there without a folder "
                    f"({field}), or save the scan as a single .nrrd, .mha or .nii.gz file.")
    return ""


def _beside(header: Path, name: str) -> bool:
    """A plain file name, in the header's folder once links are followed."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or ":" in name
            or os.path.isabs(name)):
        return False
    folder = header.parent
    return (folder / name).resolve().parent == folder.resolve()


def _nrrd_data_files(text: str) -> list[Optional[str]]:
    """The files a NRRD header's ``data file`` field names (None: a pattern not
    understood); [] when the voxels follow the header. The header ends at its first blank
    line; a LIST's names are the lines after the field."""
    lines = text.replace("\r\n", "\n").split("\n")
    for number, line in enumerate(lines):
        if not line.strip():
            return []
        if line.startswith("#") or ":=" in line:  # comments, key/value pairs
            continue
        key, _, value = line.partition(":")
        if key.strip().lower() in ("data file", "datafile"):
            return _named_files(value.strip(), lines[number + 1:])
    return []


def _meta_data_files(text: str) -> list[Optional[str]]:
    """The files a MetaImage header's ``ElementDataFile`` names (None: a pattern not
    understood); [] for ``LOCAL`` (the voxels follow the header)."""
    lines = text.replace("\r\n", "\n").split("\n")
    for number, line in enumerate(lines):
        key, _, value = line.partition("=")
        if key.strip().lower() == "elementdatafile":
            value = value.strip()
            if value.lower() == "local":
                return []
            return _named_files(value, lines[number + 1:])
    return []


def _named_files(value: str, following: list[str]) -> list[Optional[str]]:
    """The file names of a data file field's ``value``: one name, ``LIST [dim]`` (the
    non-blank ``following`` lines, up to a blank one), or a pattern ``FORMAT MIN MAX STEP
    [dim]`` (its first name; the folder part cannot change with the number)."""
    tokens = value.split()
    if tokens and tokens[0] == "LIST":
        names = []
        for line in following:
            if not line.strip():
                break
            names.append(line.strip())
        return names
    if len(tokens) in (4, 5) and all(_is_int(t) for t in tokens[1:]):
        pattern = tokens[0]
        if len(_INTEGER_CONVERSION.findall(pattern)) != 1 or pattern.count("%") != 1:
            return [None]
        return [pattern % int(tokens[1])]
    return [value]


def _is_int(token: str) -> bool:
    try:
        int(token)
    except ValueError:
        return False
    return True
