"""Input discovery: what the user named becomes a list of scans, one results row each.

A named file is one scan. A named folder is searched recursively: every NIfTI/NRRD/MHA
file is a scan, and in every folder the DICOM files (recognised by their header, whatever
their names: ``1.2.840...`` UID names, ``IM0001``, ``.dcm``) are grouped by series, one
scan per series. Nothing the user named or that was found disappears silently: a missing
path, an empty folder, a file that cannot be opened, or a folder with DICOM files but no
readable image becomes a ``ScanInput`` with a ``problem``, reported as an error row.

macOS resource forks (``._*``), ``.DS_Store``, ``Thumbs.db`` and ``DICOMDIR`` index files
are not scans and are skipped.

Every scan is keyed by its resolved path (plus the DICOM series UID), so the same scan
named twice, or by a relative and an absolute path, is one row.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Union

from .dicom import (
    DicomHeader,
    group_series,
    is_dicom_file,
    is_ignored_name,
    read_dicom_header,
    series_bytes,
)
from .errors import InputError
from .volume import (
    MAX_SCAN_BYTES,
    VOLUME_SUFFIXES,
    Volume,
    file_bytes,
    is_volume_file,
    read_dicom,
    read_volume,
)

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class ScanInput:
    """One scan to locate L3 in: a volume file, or one DICOM series in a folder.

    Attributes:
        path: the resolved file or folder (absolute, symbolic links followed).
        series_uid: DICOM SeriesInstanceUID ("" for volume files).
        files: the DICOM files of the series (resolved), sorted by name; () for volume files.
        description: DICOM SeriesDescription, for messages and QA titles.
        problem: why this input cannot be read ("" when it can); reported as an error row.
    """

    path: Path
    series_uid: str = ""
    files: tuple[Path, ...] = field(default=(), repr=False)
    description: str = ""
    problem: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """What identifies this scan's row in a results file: (input, series)."""
        return (str(self.path), self.series_uid)

    @property
    def is_dicom(self) -> bool:
        return bool(self.files)

    @property
    def stem(self) -> str:
        """A short name for output files: the file name without its image suffix, or the
        DICOM folder's name (plus the series description when there is one)."""
        if self.is_dicom:
            return "_".join(filter(None, (self.path.name, _safe(self.description))))
        return scan_stem(self.path)

    @property
    def title(self) -> str:
        """A label for pictures and messages."""
        if self.is_dicom and self.description:
            return f"{self.path.name} ({self.description})"
        return self.path.name


def scan_stem(path: Path) -> str:
    """A scan's name without its image suffix (``ct.nii.gz`` -> ``ct``), for output files."""
    name = Path(path).name
    lower = name.lower()
    for suffix in VOLUME_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _safe(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-." else "_" for c in text.strip())
    return keep.strip("_")[:40]


def find_scans(paths: Iterable[Union[str, os.PathLike[str]]]) -> list[ScanInput]:
    """Expand the named paths into scans, in the order named (folders: sorted, depth first).

    Never raises for a bad path: it becomes a ``ScanInput`` with a ``problem``. The same
    scan reached twice (repeated, relative and absolute, through a link) appears once.
    """
    found: list[ScanInput] = []
    seen: set[tuple[str, str]] = set()

    def add(scan: ScanInput) -> None:
        if scan.key not in seen:
            seen.add(scan.key)
            found.append(scan)

    for given in paths:
        path = Path(given)
        resolved = _resolve(path)
        if not resolved.exists():
            if os.path.islink(path):
                problem = (f"{path}: is a link to {os.readlink(path)}, which does not exist. "
                           "Check the link or copy the scan itself.")
            else:
                problem = f"{path}: no such file or folder. Check the path and try again."
            add(ScanInput(path.absolute(), problem=problem))
        elif resolved.is_dir():
            inside = _search_folder(resolved)
            for scan in inside:
                add(scan)
            if not inside:
                add(ScanInput(resolved, problem=(
                    f"{path}: no CT found in this folder (no DICOM, NIfTI, NRRD or MHA files"
                    f"{_loop_note(resolved)}). Point to the folder that holds the scans.")))
        elif resolved.is_file():
            problem = _open_problem(resolved)
            if problem:
                add(ScanInput(resolved, problem=problem))
            elif not is_volume_file(resolved) and is_dicom_file(resolved):
                add(_series_of_file(resolved))
            else:
                add(ScanInput(resolved))
        else:
            add(ScanInput(resolved, problem=(
                f"{path}: is not a file or a folder (a device or pipe?). Name a CT file "
                "or a folder of scans.")))
    return found


def _loop_note(folder: Path) -> str:
    """Words for a folder in which a link leads back to a folder above it (a link loop:
    nothing else was found there), or ""."""
    for where, subfolders, names in os.walk(folder):  # links are not followed here
        for name in subfolders + names:
            link = os.path.join(where, name)
            if os.path.islink(link) and (os.path.realpath(where) + os.sep).startswith(
                    os.path.realpath(link) + os.sep):
                return (f"; the link {os.path.relpath(link, folder)} leads back to a folder "
                        "above it (a link loop)")
    return ""


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop
        return path.absolute()


def _open_problem(path: Path) -> str:
    """Why a file cannot be opened for reading, or ""."""
    try:
        with open(path, "rb") as stream:
            stream.read(1)
    except OSError as error:
        return (f"{path}: cannot be opened ({error.strerror or error}). Check that the file "
                "is complete and that you may read it.")
    return ""


def _search_folder(root: Path) -> list[ScanInput]:
    """Every scan below ``root``, plus a problem row for each unreadable file or folder and
    each empty folder."""
    scans: list[ScanInput] = []

    def on_error(error: OSError) -> None:
        where = Path(error.filename) if error.filename else root
        scans.append(ScanInput(_resolve(where), problem=(
            f"{where}: this folder cannot be read ({error.strerror or error}). Check that "
            "you may open it.")))

    visited = {os.path.realpath(root)}
    # Linked folders are followed (a cohort assembled from links is common); each real
    # folder is searched once, so link loops end.
    for folder, subfolders, names in os.walk(root, onerror=on_error, followlinks=True):
        real = [(name, os.path.realpath(os.path.join(folder, name))) for name in sorted(subfolders)]
        subfolders[:] = [name for name, target in real if target not in visited]
        visited.update(target for _, target in real)
        folder_path = Path(folder)
        names = sorted(n for n in names if not is_ignored_name(n))
        if not names and not subfolders:
            if real:  # it held only links to folders searched already
                continue
            scans.append(ScanInput(folder_path, problem=(
                f"{folder_path}: this folder is empty. If a scan belongs here, copy it "
                "again.")))
            continue
        dicom: list[Path] = []
        for name in names:
            path = folder_path / name
            problem = _open_problem(path) if os.path.isfile(path) else (
                "" if os.path.isdir(path) else f"{path}: cannot be opened (a broken link "
                "or not a regular file). Check the file or remove it.")
            if problem:  # keyed by its own name: a broken link resolves to nothing useful
                scans.append(ScanInput(path, problem=problem))
            elif is_volume_file(path):
                scans.append(ScanInput(_resolve(path)))
            elif is_dicom_file(path):
                dicom.append(_resolve(path))
        if dicom:
            scans.extend(dicom_series(folder_path, dicom))
    return scans


def dicom_series(folder: Path, files: Iterable[Path]) -> list[ScanInput]:
    """Group the DICOM files of one folder by series: one ``ScanInput`` per series, largest
    first; a folder whose DICOM files hold no readable image gets one problem input."""
    groups, skipped = group_series(files)
    resolved = _resolve(folder)
    if not groups:
        return [ScanInput(resolved, problem=(
            f"{folder}: holds {len(skipped)} DICOM file(s) but none is an image that can be "
            f"read (first: {skipped[0].name}). The files may be damaged, reports, or "
            "compressed in a way this reader does not support."))]
    if skipped:
        log.warning("%s: %d DICOM file(s) without a readable image were skipped (first: %s).",
                    folder, len(skipped), skipped[0].name)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    stacks = [(uid, headers) for uid, headers in ordered if not _is_localizer(headers)]
    if stacks and len(stacks) < len(ordered):  # a scout beside the CT is not a scan to locate
        log.warning("%s: %d localizer (scout) series beside the CT left out.", folder,
                    len(ordered) - len(stacks))
        ordered = stacks
    return [
        ScanInput(resolved, series_uid=uid, files=tuple(sorted(h.path for h in headers)),
                  description=headers[0].description)
        for uid, headers in ordered
    ]


def _is_localizer(headers: list[DicomHeader]) -> bool:
    """A scout: ImageType LOCALIZER, or a single image that is not a multi-frame CT."""
    return all(h.is_localizer for h in headers) or (len(headers) == 1
                                                    and headers[0].n_frames == 1)


def _series_of_file(path: Path) -> ScanInput:
    """A named DICOM file stands for its whole series (the other files in its folder)."""
    folder = path.parent
    candidates = [folder / n for n in sorted(os.listdir(folder)) if not is_ignored_name(n)]
    series = dicom_series(folder, [p for p in candidates if p.is_file() and is_dicom_file(p)])
    for scan in series:
        if path in scan.files:
            return scan
    return series[0] if series and series[0].problem else ScanInput(path, problem=(
        f"{path}: is a DICOM file without a readable image. Point to the CT series' "
        "folder instead."))


def read_input(scan: ScanInput, *, max_bytes: float = MAX_SCAN_BYTES) -> Volume:
    """Read one scan as a ``Volume`` (raises ``InputError``; see ``volume.read_volume``)."""
    if scan.problem:
        raise InputError(scan.problem)
    if not scan.is_dicom:
        return read_volume(scan.path, max_bytes=max_bytes)
    headers = []
    for path in scan.files:
        header = read_dicom_header(path)
        if header is None:
            if not path.exists():
                raise InputError(f"{path}: this file of the DICOM series is gone: it was "
                                 "moved or deleted after the scans were listed.")
            raise InputError(f"{path}: this file of the DICOM series cannot be read as a DICOM "
                             "image (damaged, or compressed in a way this reader does not "
                             "support). Copy the series again from its source.")
        headers.append(header)
    return read_dicom(headers, name=scan.title, max_bytes=max_bytes)


def scan_bytes(scan: ScanInput) -> int:
    """Memory (bytes) a scan will need once read, from its header(s) alone; 0 if unknown."""
    if scan.problem:
        return 0
    if scan.is_dicom:
        return series_bytes(scan.files)
    return file_bytes(scan.path)
