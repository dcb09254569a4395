"""Synthetic CT from a multi-label segmentation (e.g. TotalSegmentator's maps), with truth.

One job: turn a label map into a plausible CT and derive the same
:class:`~phantom.Truth` as the procedural phantoms, so real anatomy can be a
training source.

* :func:`labelmap_to_ct` gives each structure a plausible HU (bone with a
  cortical shell over a cancellous core, muscle, fat, organs, lungs, gas,
  contrast in vessels, kidneys, bowel or bladder), a body outline with a
  subcutaneous fat layer (label maps have none), the CT table, partial-volume
  edges, slice-thickness blur, kernel-correlated noise, a field-of-view crop and
  flips of the storage axes.
* :func:`truth_from_labelmap` finds every vertebra's body (the anterior part of
  its mask), its centre, superior/inferior extent and the landmark level (37 %
  down from the top of the body, about the middle of the pedicles).
* :func:`labelmap_phantom` is the training entry point: random crop and
  augmentations per seed.

Class names follow TotalSegmentator (``vertebrae_L3``, ``rib_left_11``,
``sacrum``, ``hip_left``, ...). Vertebra names in the truth are those of the map
(TotalSegmentator counts up from the sacrum, the body-composition convention).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np
from scipy import ndimage

from ..volume import Volume, closest_axis
from .label_conventions import is_spine_only, totalseg_v1_vertebra_map
from .render import finish_ct
from .truth import Truth, VertebraTruth

log = logging.getLogger(__name__)

#: Landmark level as a fraction of the body height below its superior end plate.
LANDMARK_FRACTION = 0.37

_VERT = re.compile(r"^vertebrae_([CTLS])(\d+)$")


def _class_map(class_map: dict | None) -> dict[int, str]:
    if class_map is None:
        return totalseg_v1_vertebra_map()
    return {int(k): str(v) for k, v in class_map.items()}


def _hu_table(cmap: dict[int, str], rng: np.random.Generator, contrast: str,
              oral: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-label core HU and a bone flag (lookup tables indexed by label value)."""
    n = max(cmap) + 1 if cmap else 1
    hu = np.zeros(n + 1, dtype=np.float32)
    bone = np.zeros(n + 1, dtype=bool)
    art = {"none": 45, "arterial": rng.uniform(250, 420), "portal": rng.uniform(150, 220),
           "delayed": rng.uniform(110, 150)}[contrast]
    ven = {"none": 40, "arterial": rng.uniform(70, 120), "portal": rng.uniform(130, 190),
           "delayed": rng.uniform(100, 140)}[contrast]
    enh = {"none": 0.0, "arterial": 0.4, "portal": 1.0, "delayed": 0.6}[contrast]
    for label, name in cmap.items():
        v = 40.0
        if name.startswith("costal_cartilage"):
            v = rng.uniform(80, 200)  # cartilage, calcified in places: no cortical shell
        elif name.startswith(("vertebrae", "rib", "sacrum", "hip", "femur", "humerus", "scapula",
                              "clavicula", "face", "skull", "sternum", "coccyx", "carpal")):
            bone[label] = True
            v = rng.uniform(170, 300)
        elif name.startswith("calcification"):
            v = rng.uniform(350, 900)
        elif name.startswith(("subcutaneous_fat", "fat")):
            v = rng.uniform(-120, -80)
        elif name.startswith("lung"):
            v = rng.uniform(-880, -800)
        elif name in ("trachea",):
            v = -1000.0
        elif name.startswith(("aorta", "iliac_artery", "pulmonary_artery", "heart_ventricle_left",
                              "heart_atrium_left", "pulmonary_vein", "brachiocephalic_trunk",
                              "subclavian_artery", "common_carotid", "atrial_appendage")):
            v = art
        elif name.startswith(("inferior_vena_cava", "iliac_vena", "portal_vein",
                              "heart_atrium_right", "heart_ventricle_right",
                              "brachiocephalic_vein", "superior_vena_cava")):
            v = ven
        elif name == "heart":  # TotalSegmentator v2: one label, mostly blood pool
            v = 0.5 * (art + ven)
        elif name.startswith("heart_myocardium"):
            v = 40 + 60 * enh
        elif name.startswith("kidney"):
            v = 30 + rng.uniform(120, 200) * enh
        elif name.startswith("liver"):
            v = 55 + 50 * enh
        elif name.startswith("spleen"):
            v = 45 + 70 * enh
        elif name.startswith(("stomach", "small_bowel", "duodenum", "colon")):
            v = rng.choice([rng.uniform(180, 500), -1000.0, 15.0],
                           p=[0.6, 0.2, 0.2] if oral else [0.0, 0.4, 0.6])
        elif name.startswith("urinary_bladder"):
            v = rng.uniform(500, 1200) if contrast == "delayed" and rng.random() < 0.7 else 10.0
        elif name.startswith(("gallbladder",)):
            v = 10.0
        elif name.startswith(("gluteus", "autochthon", "iliopsoas", "esophagus", "arm_muscle",
                              "prostate")):
            v = rng.uniform(40, 60)
        elif name.startswith(("brain", "spinal_cord")):
            v = 35.0
        elif name.startswith("thyroid"):
            v = 90 + 60 * enh
        hu[label] = v
    return hu, bone


def _body_outline(labels: np.ndarray, spacing: np.ndarray, fat_mm: float) -> np.ndarray:
    """Per axial slice (array axis 0), an ellipse around all labels grown by ``fat_mm``."""
    nk, nj, ni = labels.shape
    body = np.zeros(labels.shape, dtype=bool)
    any_j = labels.any(axis=2)  # [k, j]
    any_i = labels.any(axis=1)  # [k, i]
    jj = np.arange(nj)[:, None]
    ii = np.arange(ni)[None, :]
    for k in range(nk):
        js = np.flatnonzero(any_j[k])
        is_ = np.flatnonzero(any_i[k])
        if js.size == 0:
            continue
        cj, ci = 0.5 * (js[0] + js[-1]), 0.5 * (is_[0] + is_[-1])
        rj = 0.5 * (js[-1] - js[0]) * 1.1 + fat_mm / spacing[1] + 2
        ri = 0.5 * (is_[-1] - is_[0]) * 1.05 + fat_mm / spacing[0] + 2
        body[k] = ((jj - cj) / rj) ** 2 + ((ii - ci) / ri) ** 2 <= 1.0
    return body


def truth_from_labelmap(labels: Volume, class_map: dict | None = None, seed: int = 0,
                        preset: str = "labelmap", fov_volume: Volume | None = None) -> Truth:
    """Vertebra centres, body extents and landmark levels (RAS mm) from a label map.

    The body of each vertebra is the anterior part of its mask (voxels anterior to
    the 45th percentile along the vertebra's own anterior axis); its superior and
    inferior extents are the 2nd and 98th percentiles of S, its landmark level
    ``LANDMARK_FRACTION`` of the height below the top. "S1" is the top 30 mm of the
    sacrum. ``fov_volume`` (a crop of the CT) decides ``in_fov``; default: the map.
    """
    cmap = _class_map(class_map)
    arr = np.asarray(labels.array)
    present = np.unique(arr)
    verts: list[VertebraTruth] = []
    fov = fov_volume or labels
    shape = np.array(fov.shape_ijk)

    def inside(p: np.ndarray) -> bool:
        ijk = fov.ras_to_ijk_points(p)
        return bool(np.all(ijk >= -0.5) & np.all(ijk <= shape - 0.5))

    def ras_of(mask_idx: tuple[np.ndarray, ...]) -> np.ndarray:
        k, j, i = mask_idx
        return labels.ijk_to_ras_points(np.stack([i, j, k], axis=1))

    order = {"C": 0, "T": 1, "L": 2, "S": 3}
    # S levels at least one voxel apart: finer bins alias on thick-slice grids (2 mm VerSe
    # or resampled maps), leaving every other bin empty and breaking the body's run
    s_step = max(1.5, float(np.max(np.abs(np.asarray(labels.ijk_to_ras)[2, :3]))))
    found = []
    # S1: TotalSegmentator v2's own S1 label when present, else the top of the sacrum
    names_present = {name for label, name in cmap.items() if label in present}
    s1_name = "vertebrae_S1" if "vertebrae_S1" in names_present else "sacrum"
    for label, name in cmap.items():
        m = _VERT.match(name)
        if label not in present:
            continue
        if name == s1_name:
            found.append((label, "S1", 3, 1))
        elif m and m.group(1) != "S":
            found.append((label, m.group(1) + m.group(2), order[m.group(1)], int(m.group(2))))
    # one bounding box pass for all labels, then each label inside its own box
    boxes = ndimage.find_objects(np.clip(arr, 0, None).astype(np.int32, copy=False)
                                 if arr.dtype.kind != "u" else arr)
    for label, vname, _, _ in sorted(found, key=lambda t: (t[2], t[3])):
        box = boxes[label - 1] if 0 < label <= len(boxes) else None
        if box is None:
            continue
        local = np.nonzero(arr[box] == label)
        if local[0].size < 20:
            continue
        idx = tuple(ix + sl.start for ix, sl in zip(local, box))
        pts = ras_of(idx)
        if vname == "S1":
            top = np.percentile(pts[:, 2], 99)
            pts = pts[pts[:, 2] > top - 30.0]
            kind = "sacral"
        else:
            kind = {"C": "cervical", "T": "thoracic", "L": "lumbar"}[vname[0]]
        centre, top_s, bottom_s = _body_extent(pts, step=s_step)
        if vname == "S1":  # the promontory lies below L5's inferior end plate
            l5 = next((v for v in verts if v.name == "L5"), None)
            if l5 is not None and top_s > l5.bottom_s_mm - 2.0:
                top_s = l5.bottom_s_mm - 2.0
                bottom_s = min(bottom_s, top_s - 15.0)
        lm = top_s - LANDMARK_FRACTION * (top_s - bottom_s)
        verts.append(VertebraTruth(vname, centre, lm, top_s, bottom_s, inside(centre), kind))
    l3 = next((v for v in verts if v.name == "L3"), None)
    l3_in = False
    lm_ras = None
    if l3 is not None:
        lm_ras = np.array([l3.centre_ras[0], l3.centre_ras[1], l3.landmark_s_mm])
        l3_in = inside(lm_ras)
    n_lumbar = sum(1 for v in verts if v.kind == "lumbar")
    n_ribs = len({n.split("_")[-1] for lab, n in cmap.items() if n.startswith("rib_")
                  and lab in present})
    return Truth(
        l3_in_fov=l3_in, l3_landmark_ras=lm_ras if l3_in else None,
        l3_centre_ras=l3.centre_ras if l3_in else None,
        l3_top_s_mm=l3.top_s_mm if l3_in else None,
        l3_bottom_s_mm=l3.bottom_s_mm if l3_in else None, vertebrae=verts,
        n_lumbar=n_lumbar or 5, n_rib_pairs=n_ribs or 12, lstv="none", preset=preset,
        seed=int(seed),
        extras={"source": labels.name, "l3_landmark_ras_always":
                None if lm_ras is None else [float(v) for v in lm_ras]},
    )


def _body_extent(pts: np.ndarray, step: float = 1.5) -> tuple[np.ndarray, float, float]:
    """Centre (RAS) and S extent of a vertebral body from its mask points (RAS, mm).

    The body is the anterior part of the mask (anterior to the median A); its S
    extent is the longest run of 1.5 mm levels whose anterior cross-section holds at
    least 35 % of the largest one (robust to stray voxels and processes).
    """
    a = pts[:, 1]
    front = pts[a >= np.median(a)]
    z = front[:, 2]
    lo = z.min()
    bins = np.floor((z - lo) / step).astype(int)
    counts = np.bincount(bins)
    good = counts >= 0.35 * counts.max()
    best, run, start, best_start = 0, 0, 0, 0
    for i, g in enumerate(good):
        if g:
            if run == 0:
                start = i
            run += 1
            if run > best:
                best, best_start = run, start
        else:
            run = 0
    b0, b1 = best_start, best_start + best
    sel = (bins >= b0) & (bins < b1)
    body = front[sel]
    # the body's own centre: the densest part of the anterior mask in those levels
    centre = np.median(body, axis=0)
    return centre, float(lo + b1 * step), float(lo + b0 * step)


def _crop_k(volume_arr: np.ndarray, matrix: np.ndarray, k0: int, k1: int):
    m = matrix.copy()
    m[:3, 3] = matrix[:3, :3] @ np.array([0, 0, k0]) + matrix[:3, 3]
    return volume_arr[k0:k1], m


def labelmap_to_ct(
    labels: Volume, class_map: dict | None = None, seed: int = 0, *,
    z_range_mm: tuple[float, float] | None = None, fov: str = "full",
    contrast: str | None = None, oral_contrast: bool | None = None,
    noise_hu: float | None = None, kernel: str | None = None,
    slice_thickness_mm: float | None = None, flip: bool | str = False, table: bool | None = None,
    degenerate: bool | None = None, bone_density: float = 1.0, wall_fraction: float = 1.0,
) -> tuple[Volume, Truth]:
    """A CT (int16 HU, same grid as ``labels`` unless cropped/flipped) and its truth.

    Args:
        labels: label map volume (integer labels, array ``[k, j, i]``).
        class_map: ``{label: name}`` (TotalSegmentator names); default TS v1 vertebrae.
        seed: all random choices come from ``np.random.default_rng(seed)``.
        z_range_mm: S range to keep, relative to the L3 landmark (mm), e.g. (-30, 400)
            keeps from 30 mm below L3's landmark upward.
        fov: "full", or "random" (a random crop like the phantom presets: whole map,
            above the pelvis, through L3, chest only, lumbar only).
        contrast: "none" | "arterial" | "portal" | "delayed" (default random).
        noise_hu, kernel, slice_thickness_mm: acquisition (defaults random).
        flip: True / "random" to flip storage axes at random (truth is RAS, unchanged).
        table: add the CT table (default random).
        degenerate: an older spine (default random, half the cases): mottled marrow with
            bone islands and discs narrowed or bridged by sclerosis and osteophytes, so
            the dark disc gaps of the sagittal MIP fade, as on real older patients.
        bone_density: factor on the bone's HU above water (cancellous core and cortical
            shell), like the phantoms' ``density``: 0.4-0.7 for osteoporotic bone, whose
            core (about 60-150 HU) barely shows in the HU window of the projections.
        wall_fraction: HU of the vertebral bodies' side walls, as a fraction of the way
            from the cancellous core to the cortex (1.0: a full cortical shell, as
            thin compact bone). Real walls are thinner than a voxel, so a sagittal or
            frontal MIP shows the bodies dim between bright endplates and posterior
            elements (about 0.1-0.5 on older patients); the endplates and the thin
            parts (pedicles, laminae, processes) keep their cortex.
    """

    rng = np.random.default_rng(seed)
    cmap = _class_map(class_map)
    lab = np.asarray(labels.array)
    if lab.dtype.kind not in "iu":
        lab = np.rint(lab).astype(np.int32)
    lab = np.clip(lab, 0, max(cmap) + 1 if cmap else 1)
    truth_full = truth_from_labelmap(labels, cmap, seed)
    contrast = contrast or str(rng.choice(["none", "arterial", "portal", "delayed"],
                                          p=[0.3, 0.2, 0.4, 0.1]))
    oral = bool(rng.random() < 0.3) if oral_contrast is None else bool(oral_contrast)
    kernel = kernel or str(rng.choice(["soft", "standard", "sharp"], p=[0.3, 0.5, 0.2]))
    noise = float(rng.uniform(6, 30)) if noise_hu is None else float(noise_hu)
    spacing = labels.spacing

    # --- field of view (crop along the array axis closest to S)
    s_axis = labels.slice_axis  # grid axis (i=0, j=1, k=2) along S
    l3 = truth_full.vertebra("L3")
    lm_s = l3.landmark_s_mm if l3 is not None else None
    z_range = z_range_mm
    if z_range is None and fov == "random" and lm_s is not None:
        z_range = _random_range(truth_full, rng)
    hu_lut, bone_lut = _hu_table(cmap, rng, contrast, oral)
    if bone_density != 1.0:
        hu_lut[bone_lut] *= np.float32(bone_density)
    arr_axis = 2 - s_axis
    n_s = lab.shape[arr_axis]
    keep = slice(0, n_s)
    if z_range is not None and lm_s is not None:
        s_of = labels.ijk_to_ras_points(
            np.array([[0, 0, 0]]) + np.eye(3)[s_axis][None] * np.arange(n_s)[:, None])[:, 2]
        lo, hi = lm_s + min(z_range), lm_s + max(z_range)
        sel = np.flatnonzero((s_of >= lo) & (s_of <= hi))
        if sel.size >= 4:
            keep = slice(int(sel[0]), int(sel[-1]) + 1)
    sl = [slice(None)] * 3
    sl[arr_axis] = keep
    lab = lab[tuple(sl)]
    matrix = np.array(labels.ijk_to_ras)
    shift = np.zeros(3)
    shift[s_axis] = keep.start
    matrix[:3, 3] = matrix[:3, :3] @ shift + matrix[:3, 3]

    # --- intensities
    fat_mm = float(np.clip(rng.normal(15, 8), 3, 45))
    body = _body_outline(lab, spacing, fat_mm)
    hu = np.where(body, np.float32(rng.uniform(-110, -80)), np.float32(-1000.0))
    # unlabelled tissue inside the body: a fat/muscle mix (smoothed random field)
    lowres = rng.normal(0, 1, size=tuple(max(2, s // 12) for s in lab.shape)).astype(np.float32)
    # zoomed to half size, then repeated: same texture at a quarter of the cost
    half = tuple((s + 1) // 2 for s in lab.shape)
    mix = ndimage.zoom(lowres, [a / b for a, b in zip(half, lowres.shape)], order=1)
    mix = mix.repeat(2, 0).repeat(2, 1).repeat(2, 2)[: lab.shape[0], : lab.shape[1],
                                                       : lab.shape[2]]
    hu = np.where(body & (mix > 0.3), np.float32(35.0), hu)
    labelled = lab > 0
    hu = np.where(labelled, hu_lut[lab], hu)
    bone = bone_lut[lab]
    if bone.any():
        inner = ndimage.binary_erosion(bone, iterations=1)
        shell = bone & ~inner
        cort = np.float32(rng.uniform(900, 1400) * bone_density)
        hu = np.where(shell, cort, hu)
        vert_labels = [k for k, n in cmap.items() if _VERT.match(n)]
        vert = np.isin(lab, vert_labels)
        if wall_fraction != 1.0:
            _thin_vertebral_walls(hu, vert, shell, lab, hu_lut, cort,
                                  wall_fraction, arr_axis, np.asarray(spacing)[::-1],
                                  np.random.default_rng([int(seed), 11]))
        if degenerate if degenerate is not None else rng.random() < 0.5:
            _degenerate_spine(hu, lab, vert_labels, vert, arr_axis, float(spacing[s_axis]),
                              rng)
    # partial volume: a little blur (sigma in voxels), stronger with a soft kernel
    sig = {"soft": 0.8, "standard": 0.6, "sharp": 0.4}[kernel]
    hu = ndimage.gaussian_filter(hu, sig)
    out = np.clip(hu, -1024, 3071).astype(np.int16)
    if table if table is not None else rng.random() < 0.8:
        _add_table(out, matrix, rng)
    sk = float(spacing[s_axis])
    th = slice_thickness_mm if slice_thickness_mm is not None else sk * float(
        rng.choice([1.0, 1.0, 1.5, 2.0, 3.0]))
    if arr_axis == 0:
        finish_ct(out, sk, th, noise, kernel, rng)
    else:
        finish_ct(out, sk, None, noise, kernel, rng)

    # --- storage flips
    if flip:
        for ax in range(3):
            if rng.random() < 0.5:
                n = out.shape[ax]
                out = np.flip(out, axis=ax)
                g = 2 - ax  # grid axis
                matrix[:3, 3] = matrix[:3, :3] @ (np.eye(3)[g] * (n - 1)) + matrix[:3, 3]
                matrix[:3, g] = -matrix[:3, g]
        out = np.ascontiguousarray(out)
    volume = Volume(out, matrix, name=f"labelmap_{labels.name}_{seed}")
    truth = truth_from_labelmap(labels, cmap, seed, preset="labelmap", fov_volume=volume)
    truth.extras.update({"contrast": contrast, "oral_contrast": oral, "kernel": kernel,
                         "noise_hu": noise, "slice_thickness_mm": float(th),
                         "z_range_mm": None if z_range is None else [float(v) for v in z_range]})
    return volume, truth


#: Bone deeper than this (mm) from the vertebra's surface is a vertebral body's core; the
#: shell within this distance of such bone is the body's wall, the rest thin compact bone.
_BODY_DEPTH_MM = 4.0


def _thin_vertebral_walls(hu: np.ndarray, vert: np.ndarray, shell: np.ndarray,
                          lab: np.ndarray, hu_lut: np.ndarray, cortex_hu: float, fraction: float,
                          arr_axis: int, spacing_kji: np.ndarray,
                          rng: np.random.Generator) -> None:
    """In place: the side walls of the vertebral bodies drawn at ``fraction`` of the way
    from their core HU (``hu_lut[lab]``) to ``cortex_hu``. ``hu``, ``vert`` (vertebra
    mask), ``shell`` (bone surface) and ``lab`` (label map) are ``[k, j, i]``;
    ``spacing_kji`` is mm per array axis. Endplates (the surface facing along the array
    axis closest to S, ``arr_axis``) get a fraction drawn between ``fraction`` and 1."""
    box = ndimage.find_objects(vert.astype(np.uint8))
    if not box or box[0] is None:
        return
    box = box[0]
    vert = vert[box]
    depth = ndimage.distance_transform_edt(vert, sampling=spacing_kji)
    deep = depth > _BODY_DEPTH_MM
    if not deep.any():
        return
    body = ndimage.distance_transform_edt(~deep, sampling=spacing_kji) <= _BODY_DEPTH_MM + 1.0
    line = np.zeros((3, 3, 3), dtype=bool)
    line[tuple(slice(None) if ax == arr_axis else 1 for ax in range(3))] = True
    inside_along_s = ndimage.binary_erosion(vert, structure=line, border_value=1)
    surface = shell[box] & vert & body
    wall = surface & inside_along_s
    endplate = surface & ~inside_along_s
    sub = hu[box]
    core = hu_lut[lab[box]]
    end_fraction = np.float32(rng.uniform(max(fraction, 0.5), 1.0))
    sub[wall] = core[wall] + np.float32(fraction) * (cortex_hu - core[wall])
    sub[endplate] = core[endplate] + end_fraction * (cortex_hu - core[endplate])


def _degenerate_spine(hu: np.ndarray, lab: np.ndarray, vert_labels: list[int],
                      bone: np.ndarray, arr_axis: int, s_spacing_mm: float,
                      rng: np.random.Generator) -> None:
    """In place: mottled vertebral marrow and narrowed or bridged discs (HU, ``[k, j, i]``;
    ``bone`` is the mask of the ``vert_labels`` vertebrae).

    Each vertebra's mask is grown along the array axis closest to S by 2-6 mm (per
    vertebra, some not at all) with sclerotic bone (250-650 HU) where there is no
    other structure, which narrows the disc gaps seen in a sagittal MIP; the marrow
    gets a smooth +/- 25 % modulation and a few bone islands (500-1000 HU).
    """
    boxes = ndimage.find_objects(lab.astype(np.int32, copy=False))
    grow_hu = np.float32(rng.uniform(250, 650))
    for value in vert_labels:
        if value > len(boxes) or boxes[value - 1] is None or rng.random() < 0.2:
            continue
        n = int(round(rng.uniform(2.0, 6.0) / max(s_spacing_mm, 0.5)))
        if n < 1:
            continue
        box = list(boxes[value - 1])
        box[arr_axis] = slice(max(0, box[arr_axis].start - n),
                              min(lab.shape[arr_axis], box[arr_axis].stop + n))
        box_t = tuple(box)
        mask = lab[box_t] == value
        structure = np.zeros((3, 3, 3), dtype=bool)
        index = [1, 1, 1]
        for offset in (0, 2):
            index[arr_axis] = offset
            structure[tuple(index)] = True
        structure[1, 1, 1] = True
        grown = ndimage.binary_dilation(mask, structure, iterations=n) & (lab[box_t] == 0)
        view = hu[box_t]
        view[grown] = grow_hu
    if bone.any():
        low = rng.normal(0, 1, size=tuple(max(2, s // 6) for s in lab.shape)).astype(np.float32)
        field = ndimage.zoom(low, [a / b for a, b in zip(lab.shape, low.shape)], order=1)
        field = field[tuple(slice(0, s) for s in lab.shape)]
        hu[bone] *= (1.0 + 0.25 * np.clip(field[bone], -2, 2) / 2).astype(np.float32)
        idx = np.flatnonzero(bone.ravel())
        spots = rng.choice(idx, size=min(idx.size, int(rng.integers(5, 40))), replace=False)
        hu.ravel()[spots] = np.float32(rng.uniform(500, 1000))


def _random_range(truth: Truth, rng: np.random.Generator) -> tuple[float, float]:
    """A random S range relative to the L3 landmark, like the phantom presets."""
    v = {t.name: t for t in truth.vertebrae}
    lm = v["L3"].landmark_s_mm

    def rel(name: str, default: float) -> float:
        return (v[name].landmark_s_mm - lm) if name in v else default

    big = 2000.0
    choice = rng.choice(["full", "above_pelvis", "through_l3_top", "through_l3_bottom",
                         "chest", "lumbar"], p=[0.25, 0.2, 0.15, 0.15, 0.1, 0.15])
    if choice == "full":
        return (-big, big)
    if choice == "above_pelvis":  # lower edge between L5 and L4: no pelvis below
        low, high = sorted((rel("L5", -75) + 5, rel("L4", -38)))
        return (rng.uniform(low, high), big)
    if choice == "through_l3_top":
        return (-big, rng.uniform(-30, 35))
    if choice == "through_l3_bottom":
        return (rng.uniform(-35, 30), big)
    if choice == "chest":
        return (rng.uniform(rel("L1", 75), rel("T12", 110)), big)
    return (rng.uniform(rel("L5", -75), rel("L4", -38)), rng.uniform(rel("L1", 75),
                                                                     rel("T12", 110)))


def _add_table(arr: np.ndarray, matrix: np.ndarray, rng: np.random.Generator) -> None:
    """A thin table shell posterior to the body (axis closest to A), in place."""
    a_axis = closest_axis(matrix, 1)
    arr_axis = 2 - a_axis
    body = arr > -500
    prof = body.any(axis=tuple(a for a in range(3) if a != arr_axis))
    idx = np.flatnonzero(prof)
    if idx.size == 0:
        return
    posterior_is_low = matrix[1, a_axis] > 0  # index grows anteriorly: posterior at low index
    edge = idx[0] if posterior_is_low else idx[-1]
    gap = int(rng.integers(2, 10))
    pos = edge - gap if posterior_is_low else edge + gap
    if not 0 <= pos < arr.shape[arr_axis]:
        return
    sl = [slice(None)] * 3
    sl[arr_axis] = pos
    view = arr[tuple(sl)]
    np.maximum(view, np.int16(rng.uniform(120, 400)), out=view)


def labelmap_phantom(labels: Volume, class_map: dict | None = None, seed: int = 0,
                     completion_mm: float = 2.0, **options: Any) -> tuple[Volume, Truth]:
    """Training entry point: a label-map CT with a random field of view and augmentations.

    A vertebra-only map (VerSe) is first completed into a whole trunk (synthetic ribs,
    pelvis, organs, body; :func:`~spine_completion.complete_spine_map`) on a grid of
    ``completion_mm`` voxels, different for every seed; its vertebrae, and so the
    truth, stay the real ones. ``options`` go to :func:`labelmap_to_ct`.
    """
    from .spine_completion import complete_spine_map

    options.setdefault("fov", "random")
    options.setdefault("flip", "random")
    cmap = _class_map(class_map)
    present = {int(v) for v in np.unique(np.asarray(labels.array))}
    if is_spine_only(cmap, present):
        verts = truth_from_labelmap(labels, cmap, seed).vertebrae
        labels, cmap = complete_spine_map(labels, cmap, verts,
                                          np.random.default_rng([int(seed), 7]),
                                          spacing_mm=float(completion_mm))
    return labelmap_to_ct(labels, cmap, seed, **options)
