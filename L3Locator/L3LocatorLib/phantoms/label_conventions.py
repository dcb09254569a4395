"""Label conventions of vertebra segmentations: every map to TotalSegmentator class names.

One job: give each label value of a segmentation its anatomical name
(``vertebrae_L3``, ``rib_left_11``, ``sacrum``, ...), whatever tool or data set
wrote it, so the rest of the code reads structures by NAME, never by number.

* TotalSegmentator v1 and v2 ship a class map (``{label: name}``); v1 numbers
  L5 = 18 ... C1 = 41, v2 numbers sacrum = 25, S1 = 26, L5 = 27 ... C1 = 50:
  the numbers differ, the names agree, so a class map is used as it is.
  A v2 map without its class map (the TotalSegmentator data set's vertebra masks)
  is read with ``convention="totalseg_v2"``.
* VerSe (Sekuboyina et al. 2021): 1-7 C1-C7, 8-19 T1-T12, 20-25 L1-L6,
  26 sacrum, 27 coccyx, 28 T13; vertebrae only (no ribs, organs or pelvis).

``resolve_class_map`` picks the convention: an explicit one, a class map, else a
file name containing "verse", else TotalSegmentator v1's vertebra numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

#: Conventions ``resolve_class_map`` knows.
CONVENTIONS = ("auto", "totalseg", "totalseg_v2", "verse")


def verse_class_map() -> dict[int, str]:
    """VerSe label values -> TotalSegmentator names (T13 and L6 keep their own names)."""
    names = {i + 1: f"vertebrae_C{i + 1}" for i in range(7)}
    names.update({8 + i: f"vertebrae_T{i + 1}" for i in range(12)})
    names.update({20 + i: f"vertebrae_L{i + 1}" for i in range(6)})
    names.update({26: "sacrum", 27: "coccyx", 28: "vertebrae_T13"})
    return names


def totalseg_v1_vertebra_map() -> dict[int, str]:
    """TotalSegmentator v1 vertebra labels (L5 = 18 up to C1 = 41, sacrum = 92)."""
    names = ["L5", "L4", "L3", "L2", "L1"] + [f"T{n}" for n in range(12, 0, -1)] + [
        f"C{n}" for n in range(7, 0, -1)]
    out = {18 + i: f"vertebrae_{n}" for i, n in enumerate(names)}
    out[92] = "sacrum"
    return out


def totalseg_v2_vertebra_map() -> dict[int, str]:
    """TotalSegmentator v2 vertebra labels (sacrum = 25, S1 = 26, L5 = 27 up to C1 = 50)."""
    names = ["S1", "L5", "L4", "L3", "L2", "L1"] + [f"T{n}" for n in range(12, 0, -1)] + [
        f"C{n}" for n in range(7, 0, -1)]
    out = {26 + i: f"vertebrae_{n}" for i, n in enumerate(names)}
    out[25] = "sacrum"
    return out


def read_class_map(path: str | Path) -> dict[int, str]:
    """A JSON ``{"label": "name"}`` file as ``{int: str}``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {int(k): str(v) for k, v in data.items()}


def find_class_map(path: str | Path) -> Optional[Path]:
    """The class map beside a label map: ``class_map_<a tail of the stem's _-parts>.json``,
    shortest tail first (``real_labelmap_ct327.nrrd`` -> ``class_map_ct327.json``,
    ``real_labelmap_s0327_gt_bones.nii.gz`` -> ``class_map_s0327_gt_bones.json``), else
    ``class_map.json`` in the same folder, else None."""
    path = Path(path)
    parts = path.name.split(".")[0].split("_")
    tails = ["_".join(parts[-n:]) for n in range(1, len(parts) + 1)]
    for candidate in [path.with_name(f"class_map_{tail}.json") for tail in tails] + [
            path.with_name("class_map.json")]:
        if candidate.is_file():
            return candidate
    return None


def resolve_class_map(path: str | Path, convention: str = "auto") -> dict[int, str]:
    """``{label: TotalSegmentator name}`` for the label map at ``path``.

    ``convention``: "verse" (VerSe numbers), "totalseg_v2" (v2 vertebra numbers),
    "totalseg" (the class map beside the file, else v1 vertebra numbers) or "auto" (a
    class map beside the file wins; else VerSe when the file name contains "verse"; else
    TotalSegmentator v1).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown label convention {convention!r}; use one of {CONVENTIONS}")
    if convention == "verse":
        return verse_class_map()
    if convention == "totalseg_v2":
        return totalseg_v2_vertebra_map()
    found = find_class_map(path)
    if found is not None:
        return read_class_map(found)
    if convention == "auto" and "verse" in Path(path).name.lower():
        return verse_class_map()
    return totalseg_v1_vertebra_map()


def is_spine_only(class_map: dict[int, str], present: set[int]) -> bool:
    """True when the labels present are vertebrae (and sacrum/coccyx) only: no rib,
    pelvis or organ, so ribs, pelvis and soft tissue must be synthesised."""
    names = [class_map.get(v, "") for v in present if v]
    return bool(names) and all(n.startswith(("vertebrae_", "sacrum", "coccyx")) for n in names)
