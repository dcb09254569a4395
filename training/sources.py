"""Training and evaluation data: every source yields the same ``Sample``.

A sample is one scan's frontal and restricted sagittal MIPs in HU at the
working pixel size of ``PreprocessConfig`` (the shared preprocessing of
``L3LocatorLib``), plus the rows of the vertebral levels it knows.

SOURCE strings (``parse_sources``), combined with ``+``:

``PATH.npz``
    The paper's data set (keys ``images_f``, ``images_s``, ``ydata``,
    ``names``, ``spacings``), or a sample cache written by ``save_samples``.
``FOLDER`` or ``FOLDER:CSV``
    CT files plus a CSV of L3 positions (see ``load_ct_folder``).
``phantoms:N[:SEED[:PRESET[:KEY=VALUE...]]]``
    N synthetic phantoms with seeds SEED..SEED+N-1 (default preset
    ``random``; options go to ``make_phantom``, e.g. ``spacing=[2,2,2]:matrix=200``
    for fast low-resolution phantoms), generated once with 2 processes and cached.
``labelmap:PATH[:N[:SEED[:convention=C][:completion_mm=MM][:spine_crop=P][:bone_density=F][:thin_walls=P]]]``
    N CTs synthesised from a multi-label segmentation (real anatomy) with
    random intensities and fields of view, cached likewise. PATH is one map or a
    folder of maps (seed ``SEED + i`` uses map ``i`` modulo their number, in name
    order). Labels are read by name: TotalSegmentator v1/v2 through the class map
    beside each file, VerSe numbers for files named ``*verse*`` or with
    ``convention=verse`` (see ``L3LocatorLib.phantoms.label_conventions``);
    vertebra-only maps get synthetic ribs, pelvis and soft tissue (on a grid of
    ``completion_mm`` voxels, default 2); ``bone_density`` scales the bone's HU
    (osteoporotic bone: 0.4-0.7, as the phantoms' ``density`` option);
    ``thin_walls=P`` draws a share P of the scans (chosen by seed) with the thin
    vertebral-body walls of real CT (``THIN_WALL_FRACTION``; see ``labelmap_to_ct``'s
    ``wall_fraction``), so the bodies look dim between bright endplates in the MIPs.

Both synthetic sources take ``spine_crop=P``: a share P of their scans (chosen by seed)
is cut in-plane to a spine-centred field of view 70-200 mm wide before projecting, like
the spine-targeted reconstructions a narrow-field-of-view study sends (``spine_crop``),
and ``thin_walls=P`` (for phantoms: their ``body_wall`` option, drawn per seed; phantoms
also take ``thin_ribs=P``, the ``rib_wall`` option, with the same draw).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from L3LocatorLib.model import LEVELS
from L3LocatorLib.projection import PreprocessConfig, Projections, project

log = logging.getLogger(__name__)


@dataclass
class Sample:
    """One scan, ready for augmentation and targets.

    Attributes:
        frontal_hu, sagittal_hu: float32 ``[H, W]`` MIPs in HU at ``pixel_mm``; rows
            superior -> inferior; pixels outside the scan hold ``hu_min - 1``.
        level_rows: level name -> landmark row (sub-pixel) for the levels known AND
            inside the image.
        known_levels: the levels this source can tell about (present or absent);
            channels of other levels are masked out of the loss.
        l3_row: L3 landmark row, None when L3 is not in the image.
        l3_top_row, l3_bottom_row: rows of L3's upper and lower extent (None if unknown).
        name: scan identifier (file name, phantom seed...).
        pixel_mm: row size in mm.
        source: the SOURCE string it came from.
    """

    frontal_hu: np.ndarray
    sagittal_hu: np.ndarray
    level_rows: dict[str, float]
    known_levels: tuple[str, ...]
    l3_row: Optional[float]
    l3_top_row: Optional[float] = None
    l3_bottom_row: Optional[float] = None
    name: str = ""
    pixel_mm: float = 2.0
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.frontal_hu.shape[0])

    @property
    def l3_present(self) -> bool:
        return self.l3_row is not None


# ------------------------------------------------------------ cache files


def save_samples(path: str | os.PathLike[str], samples: Sequence[Sample], info: dict) -> None:
    """Write samples to one .npz (images concatenated along rows + a JSON index)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    index = []
    for s in samples:
        index.append(
            {
                "name": s.name,
                "height": s.height,
                "level_rows": s.level_rows,
                "known_levels": list(s.known_levels),
                "l3_row": s.l3_row,
                "l3_top_row": s.l3_top_row,
                "l3_bottom_row": s.l3_bottom_row,
                "pixel_mm": s.pixel_mm,
                "source": s.source,
                "extra": s.extra,
            }
        )
    width = samples[0].frontal_hu.shape[1] if samples else 0
    frontal = (
        np.concatenate([s.frontal_hu for s in samples]) if samples else np.zeros((0, width))
    )
    sagittal = (
        np.concatenate([s.sagittal_hu for s in samples]) if samples else np.zeros((0, width))
    )
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(
        tmp,
        l3locator_samples=np.array(1),
        frontal=frontal.astype(np.float32),
        sagittal=sagittal.astype(np.float32),
        index=np.array(json.dumps({"samples": index, "info": info})),
    )
    os.replace(tmp, path)


def is_sample_cache(path: str | os.PathLike[str]) -> bool:
    with np.load(path, allow_pickle=False) as data:
        return "l3locator_samples" in data.files


def load_samples(path: str | os.PathLike[str]) -> tuple[list[Sample], dict]:
    """Read a cache written by ``save_samples``: (samples, info)."""
    with np.load(path, allow_pickle=False) as data:
        frontal = data["frontal"]
        sagittal = data["sagittal"]
        meta = json.loads(str(data["index"]))
    out = []
    start = 0
    for item in meta["samples"]:
        h = item["height"]
        out.append(
            Sample(
                frontal_hu=frontal[start : start + h],
                sagittal_hu=sagittal[start : start + h],
                level_rows={k: float(v) for k, v in item["level_rows"].items()},
                known_levels=tuple(item["known_levels"]),
                l3_row=item["l3_row"],
                l3_top_row=item["l3_top_row"],
                l3_bottom_row=item["l3_bottom_row"],
                name=item["name"],
                pixel_mm=item["pixel_mm"],
                source=item.get("source", ""),
                extra=item.get("extra", {}),
            )
        )
        start += h
    return out, meta.get("info", {})


def _config_key(config: PreprocessConfig) -> str:
    text = json.dumps(config.to_dict(), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


# ------------------------------------------------------------ the paper's npz


def resample_mip(
    image: np.ndarray,
    row_mm: float,
    col_mm: float,
    config: PreprocessConfig,
) -> np.ndarray:
    """A MIP ``[rows, cols]`` (HU, pixel ``row_mm`` x ``col_mm``) on the working grid.

    Output row ``r`` is input row ``r * pixel_mm / row_mm`` (every row kept);
    ``config.width_px`` columns centred on the image's centre column. The same
    resampling ``project`` uses (Gaussian low-pass before down-sampling, linear).
    """
    from L3LocatorLib.projection import resample_rows_cols

    h, w = image.shape
    pixel = config.pixel_mm
    n_rows = int(np.floor((h - 1) * row_mm / pixel + 1e-6)) + 1
    width = config.width_px
    col_start = (w - 1) / 2.0 - (width - 1) / 2.0 * pixel / col_mm
    return resample_rows_cols(
        np.asarray(image, dtype=np.float32), (row_mm, col_mm), pixel, n_rows, col_start, width,
        config.hu_min - 1.0,
    )


def _ragged(array: np.ndarray) -> list[np.ndarray]:
    if array.dtype == object:
        return [np.asarray(a) for a in array]
    return [a for a in array]


def load_paper_npz(
    path: str | os.PathLike[str],
    config: PreprocessConfig,
    seed_filter: bool = False,
    seed_preprocess: bool = False,
    progress: bool = False,
) -> list[Sample]:
    """Samples from the paper's ``l3_dataset.npz``.

    The L3 row of scan ``i`` is the mean over annotators of ``ydata[a][i]`` (rows of
    the stored MIP, whose rows are slices of spacing ``spacings[i][2]`` mm and whose
    columns are ``spacings[i][0]`` mm, the seed's zoom factors). Converted to our grid
    the row becomes ``row * spacings[i][2] / pixel_mm`` (sub-pixel, no truncation).

    ``seed_filter`` drops the scans the seed drops (L3 below row 512 at 1 mm); by
    default every scan is kept. ``seed_preprocess`` reproduces the seed's images
    exactly (1 mm, 512 x 512, per-image min-max, frontal column mask; use with
    ``seed_config()``): the 0..1 images are stored as HU that ``window`` maps back.
    """
    from tqdm import tqdm

    with np.load(path, allow_pickle=True) as data:
        images_f = _ragged(data["images_f"])
        images_s = _ragged(data["images_s"])
        ydata = data["ydata"]
        ydata = ydata.item() if ydata.dtype == object and ydata.shape == () else ydata
        names = [str(n) for n in data["names"]]
        spacings = np.asarray(data["spacings"], dtype=float)
    n = len(names)
    rows = np.zeros(n, dtype=float)
    for values in ydata.values():
        rows += np.asarray(values, dtype=float)
    rows /= max(len(ydata), 1)
    out: list[Sample] = []
    iterator: Iterable[int] = range(n)
    if progress:
        iterator = tqdm(iterator, desc=f"reading {Path(path).name}", unit="scan")
    for i in iterator:
        s = spacings[i]
        if seed_filter and int(rows[i] * s[2]) > 512:
            continue
        if seed_preprocess:
            from training.original_port import seed_preprocess as _seed

            seeded = _seed(images_f[i], images_s[i], rows[i], s)
            if seeded is None:
                continue
            span = config.hu_max - config.hu_min
            frontal = config.hu_min + seeded.frontal * span
            sagittal = config.hu_min + seeded.sagittal * span
            l3 = float(seeded.l3_row)
        else:
            frontal = resample_mip(images_f[i], s[2], s[0], config)
            sagittal = resample_mip(images_s[i], s[2], s[0], config)
            l3 = float(rows[i] * s[2] / config.pixel_mm)
        inside = 0.0 <= l3 <= frontal.shape[0] - 1
        out.append(
            Sample(
                frontal_hu=frontal.astype(np.float32),
                sagittal_hu=sagittal.astype(np.float32),
                level_rows={"L3": l3} if inside else {},
                known_levels=("L3",),
                l3_row=l3 if inside else None,
                name=names[i],
                pixel_mm=config.pixel_mm,
                source=str(path),
            )
        )
    log.info("%s: %d of %d scans", path, len(out), n)
    return out


def seed_config() -> PreprocessConfig:
    """Preprocessing settings matching the seed's images (1 mm pixels, 512 wide)."""
    return PreprocessConfig(pixel_mm=1.0, width_mm=512.0)


# ------------------------------------------------------------ from a Volume + truth


def sample_from_projections(
    projections: Projections,
    level_s_mm: dict[str, float],
    known_levels: Sequence[str],
    name: str,
    l3_extent_s_mm: Optional[tuple[float, float]] = None,
    source: str = "",
) -> Sample:
    """A sample from projections and landmark positions (RAS S, mm) of known levels."""
    geometry = projections.geometry
    h = projections.frontal_hu.shape[0]
    rows = {}
    for level, s_mm in level_s_mm.items():
        row = float(geometry.s_to_row(s_mm))
        if -0.5 <= row <= h - 0.5:
            rows[level] = row
    top = bottom = None
    if l3_extent_s_mm is not None and "L3" in rows:
        a, b = (float(geometry.s_to_row(v)) for v in l3_extent_s_mm)
        top, bottom = min(a, b), max(a, b)
    return Sample(
        frontal_hu=projections.frontal_hu.astype(np.float32),
        sagittal_hu=projections.sagittal_hu.astype(np.float32),
        level_rows=rows,
        known_levels=tuple(known_levels),
        l3_row=rows.get("L3"),
        l3_top_row=top,
        l3_bottom_row=bottom,
        name=name,
        pixel_mm=geometry.pixel_mm,
        source=source,
        extra={"top_s_mm": geometry.top_s_mm},
    )


def sample_from_truth(volume: Any, truth: Any, config: PreprocessConfig, name: str,
                      source: str = "") -> Sample:
    """Project a phantom (``Volume``, ``Truth`` from ``L3LocatorLib.phantoms``) into a sample."""
    projections = project(volume, config)
    level_s = {}
    extent = None
    for v in truth.vertebrae:
        if v.name in LEVELS and v.landmark_s_mm is not None:
            level_s[v.name] = float(v.landmark_s_mm)
            if v.name == "L3" and v.top_s_mm is not None and v.bottom_s_mm is not None:
                extent = (float(v.top_s_mm), float(v.bottom_s_mm))
    known = [v.name for v in truth.vertebrae if v.name in LEVELS]
    # A level the phantom does not list (e.g. no S1 model) stays unknown (masked).
    return sample_from_projections(projections, level_s, known, name, extent, source)


# ------------------------------------------------------------ phantoms


#: In-plane width range (mm) of the spine-centred crops of ``spine_crop``.
SPINE_CROP_MM = (70.0, 200.0)
#: Standard deviation (mm) of the crop centre's offset from the vertebral body centre.
SPINE_CROP_JITTER_MM = 12.0


def spine_crop(volume: Any, truth: Any, seed: int, share: float) -> Any:
    """``volume`` cut in-plane around the spine for a share ``share`` of seeds, else as is.

    The crop is a box 70-200 mm wide (each in-plane axis drawn separately) around the L3
    body centre (else the middle listed vertebra) moved by a random offset, keeping every
    slice: the superior-inferior extent, and so every level's row, is unchanged. The slice
    axis is the array axis closest to superior-inferior; the origin moves with the crop.
    """
    from L3LocatorLib.volume import Volume

    rng = np.random.default_rng([int(seed), 31])
    if share <= 0 or rng.random() >= share or not truth.vertebrae:
        return volume
    anchor = truth.vertebra("L3") or truth.vertebrae[len(truth.vertebrae) // 2]
    centre = np.asarray(anchor.centre_ras, float) + rng.normal(0.0, SPINE_CROP_JITTER_MM, 3)
    spacing = volume.spacing
    slice_axis = volume.slice_axis
    ijk = volume.ras_to_ijk_points(centre)
    start = [0, 0, 0]
    slices = [slice(None)] * 3
    for axis in range(3):
        if axis == slice_axis:
            continue
        size = volume.array.shape[2 - axis]
        half = rng.uniform(*SPINE_CROP_MM) / 2.0 / spacing[axis]
        lo = int(np.clip(round(ijk[axis] - half), 0, size - 1))
        hi = int(np.clip(round(ijk[axis] + half), lo + 1, size))
        start[axis] = lo
        slices[2 - axis] = slice(lo, hi)
    matrix = np.array(volume.ijk_to_ras)
    matrix[:3, 3] = volume.ijk_to_ras_points(np.asarray(start, float))
    return Volume(np.ascontiguousarray(volume.array[tuple(slices)]), matrix,
                  f"{volume.name} (spine crop)")


def _phantom_worker(args: tuple[int, str, dict, dict]) -> Optional[Sample]:
    seed, preset, options, config_dict = args
    from L3LocatorLib.phantoms import make_phantom

    config = PreprocessConfig(**config_dict)
    options = dict(options)
    share = float(options.pop("spine_crop", 0.0))
    # one draw per seed for both: the same older patients get thin bodies and thin ribs
    for name, option in (("thin_walls", "body_wall"), ("thin_ribs", "rib_wall")):
        if name in options:
            options[option] = wall_fraction(seed, float(options.pop(name)))
    try:
        volume, truth = make_phantom(seed, preset=preset, **options)
        volume = spine_crop(volume, truth, seed, share)
        return sample_from_truth(volume, truth, config, f"phantom-{preset}-{seed}", "phantoms")
    except Exception as error:  # noqa: BLE001 - one bad phantom must not stop the rest
        log.warning("phantom %s/%d failed: %s", preset, seed, error)
        return None


#: Range of the wall fraction (``labelmap_to_ct``'s ``wall_fraction``, the phantoms'
#: ``body_wall``) drawn for the ``thin_walls`` scans.
THIN_WALL_FRACTION = (0.1, 0.6)


def wall_fraction(seed: int, share: float) -> float:
    """The vertebral-body wall fraction of scan ``seed`` of a ``thin_walls=share`` source:
    one drawn from ``THIN_WALL_FRACTION`` for a share of seeds, else 1 (full cortex)."""
    rng = np.random.default_rng([int(seed), 37])
    if share <= 0 or rng.random() >= share:
        return 1.0
    return float(rng.uniform(*THIN_WALL_FRACTION))


def _labelmap_worker(args: tuple) -> Optional[Sample]:
    path, seed, config_dict = args[:3]
    convention = args[3] if len(args) > 3 else "auto"
    options = dict(args[4]) if len(args) > 4 else {}
    share = float(options.pop("spine_crop", 0.0))
    options["wall_fraction"] = wall_fraction(seed, float(options.pop("thin_walls", 0.0)))
    config = PreprocessConfig(**config_dict)
    try:
        volume, truth = _labelmap_case(path, seed, convention, **options)
        volume = spine_crop(volume, truth, seed, share)
        return sample_from_truth(volume, truth, config, f"labelmap-{_stem(path)}-{seed}",
                                 "labelmap")
    except Exception as error:  # noqa: BLE001
        log.warning("label-map CT %s/%d failed: %s", path, seed, error)
        return None


_LABELMAP_CACHE: dict[tuple[str, str], Any] = {}

LABELMAP_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def _stem(path: str | os.PathLike[str]) -> str:
    return Path(path).name.split(".")[0]


def labelmap_files(path: str | os.PathLike[str]) -> list[Path]:
    """The label maps of a labelmap source: the file itself, or a folder's maps by name."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.name.lower().endswith(LABELMAP_SUFFIXES))
        if not files:
            raise ValueError(f"{path}: no label maps ({', '.join(LABELMAP_SUFFIXES)}) in it")
        return files
    return [path]


def _labelmap_case(path: str, seed: int, convention: str = "auto",
                   **options: Any) -> tuple[Any, Any]:
    """One synthetic CT (with a random field of view) from a label map."""
    from L3LocatorLib.phantoms.label_conventions import resolve_class_map
    from L3LocatorLib.phantoms.labelmap_ct import labelmap_phantom

    key = (path, convention)
    if key not in _LABELMAP_CACHE:
        from L3LocatorLib.volume import read_volume

        _LABELMAP_CACHE[key] = (read_volume(path), resolve_class_map(path, convention))
    labels, class_map = _LABELMAP_CACHE[key]
    return labelmap_phantom(labels, class_map, seed, **options)


def _generate(
    worker: Callable[[Any], Optional[Sample]], jobs: list[Any], desc: str, processes: int = 2
) -> list[Sample]:
    """Run ``worker`` over ``jobs`` (in order) with a progress bar; failed jobs are skipped."""
    from tqdm import tqdm

    results: list[Optional[Sample]] = []
    if processes <= 1 or len(jobs) <= 1:
        for job in tqdm(jobs, desc=desc, unit="scan"):
            results.append(worker(job))
    else:
        context = multiprocessing.get_context("spawn" if os.name == "nt" else "fork")
        with context.Pool(processes) as pool:
            for sample in tqdm(pool.imap(worker, jobs, chunksize=1), total=len(jobs),
                               desc=desc, unit="scan"):
                results.append(sample)
    out = [s for s in results if s is not None]
    if len(out) < len(results):
        log.warning("%s: %d of %d cases failed and were skipped", desc,
                    len(results) - len(out), len(results))
    return out


def cached_generate(
    cache_file: Path,
    worker: Callable[[Any], Sample],
    jobs: list[Any],
    desc: str,
    info: dict,
    processes: int = 2,
) -> list[Sample]:
    """Generate samples with ``worker`` over ``jobs`` unless ``cache_file`` holds them."""
    if cache_file.is_file():
        samples, cached_info = load_samples(cache_file)
        if cached_info == info:
            log.info("Using cached %s (%d samples)", cache_file, len(samples))
            return samples
        log.info("Cache %s is stale; regenerating", cache_file)
    samples = _generate(worker, jobs, desc, processes)
    save_samples(cache_file, samples, info)
    return samples


# ------------------------------------------------------------ CT folder + CSV


def _row_value(row: dict[str, str], *names: str) -> Optional[str]:
    for n in names:
        value = row.get(n)
        if value is not None and value.strip() not in ("", "none", "None", "NA", "nan"):
            return value.strip()
    return None


def load_ct_folder(
    folder: str | os.PathLike[str],
    csv_path: str | os.PathLike[str] | None,
    config: PreprocessConfig,
    cache_dir: Path | None = None,
) -> list[Sample]:
    """Samples from CT files listed in a CSV.

    CSV columns (header required): ``file`` (path relative to ``folder``: a
    NIfTI/NRRD/MHA file or a DICOM folder), then one of

    - ``l3_s_mm``: the L3 landmark's RAS S in mm;
    - ``l3_slice``: the slice index along the volume's axis closest to
      superior-inferior (k for axial scans), 0-based;
    - ``l3_mask``: path of an L3 mask or segmentation (same grid as the CT;
      voxels equal to ``l3_label`` when given, else > 0): the landmark is the
      mask's centroid and the extent its 2nd-98th percentile in S;

    optional ``l3_top_s_mm``/``l3_bottom_s_mm`` (extent), and ``<LEVEL>_s_mm`` for other
    levels (T12..S1). An empty L3 cell means L3 is not in the scan (a negative).
    Projections are cached in ``cache_dir`` keyed by file and preprocessing.
    """
    from tqdm import tqdm

    from L3LocatorLib.volume import read_dicom_series, read_volume

    folder = Path(folder)
    if csv_path is None:
        found = sorted(folder.glob("*.csv"))
        if len(found) != 1:
            raise ValueError(f"{folder}: expected exactly one CSV of L3 positions, found "
                             f"{len(found)}; name it with FOLDER:CSV")
        csv_path = found[0]
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    out = []
    for row in tqdm(rows, desc=f"reading {folder.name}", unit="scan"):
        rel = _row_value(row, "file", "path", "name")
        if rel is None:
            continue
        path = folder / rel
        cache = None
        if cache_dir is not None:
            key = hashlib.sha1(f"{path.resolve()}|{_config_key(config)}|{sorted(row.items())}"
                               .encode()).hexdigest()[:16]
            cache = cache_dir / f"ct_{key}.npz"
            if cache.is_file():
                out.extend(load_samples(cache)[0])
                continue
        volume = read_dicom_series(path) if path.is_dir() else read_volume(path)
        projections = project(volume, config)
        geometry = projections.geometry
        level_s: dict[str, float] = {}
        extent = None
        s_mm = _row_value(row, "l3_s_mm")
        slice_index = _row_value(row, "l3_slice", "l3_k")
        mask = _row_value(row, "l3_mask")
        if s_mm is not None:
            level_s["L3"] = float(s_mm)
        elif slice_index is not None:
            axis = geometry.slice_axis
            centre = (np.asarray(volume.shape_ijk, dtype=float) - 1) / 2
            centre[axis] = float(slice_index)
            level_s["L3"] = float(volume.ijk_to_ras_points(centre[None])[0][2])
        elif mask is not None:
            labels = read_volume(folder / mask)
            label = _row_value(row, "l3_label")
            sel = labels.array == int(label) if label is not None else labels.array > 0
            k, j, i = np.nonzero(sel)
            if k.size:
                ras = labels.ijk_to_ras_points(np.stack([i, j, k], axis=1).astype(float))
                level_s["L3"] = float(ras[:, 2].mean())
                extent = (float(np.percentile(ras[:, 2], 98)), float(np.percentile(ras[:, 2], 2)))
        top = _row_value(row, "l3_top_s_mm")
        bottom = _row_value(row, "l3_bottom_s_mm")
        if top is not None and bottom is not None:
            extent = (float(top), float(bottom))
        for level in LEVELS:
            value = _row_value(row, f"{level}_s_mm", f"{level.lower()}_s_mm")
            if value is not None and level != "L3":
                level_s[level] = float(value)
        known = ["L3"] + [lv for lv in level_s if lv != "L3"]
        sample = sample_from_projections(projections, level_s, known, rel, extent, str(folder))
        if cache is not None:
            save_samples(cache, [sample], {"file": str(path)})
        out.append(sample)
    return out


# ------------------------------------------------------------ SOURCE strings


def default_cache_dir() -> Path:
    return Path(os.environ.get("L3LOCATOR_CACHE", Path.home() / ".cache" / "l3locator"))


def load_source(
    source: str,
    config: PreprocessConfig,
    cache_dir: Path | None = None,
    seed_filter: bool = False,
    seed_preprocess: bool = False,
    processes: int = 2,
) -> list[Sample]:
    """Samples of one SOURCE string (see the module docstring)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _config_key(config)
    if source.startswith("phantoms:"):
        parts = source.split(":")
        n = int(parts[1])
        seed = int(parts[2]) if len(parts) > 2 and parts[2] else 0
        preset_name = parts[3] if len(parts) > 3 and parts[3] else "random"
        options = _parse_options(parts[4:])
        jobs = [(seed + i, preset_name, options, config.to_dict()) for i in range(n)]
        info = {"source": "phantoms", "n": n, "seed": seed, "preset": preset_name,
                "options": options, "preprocess": config.to_dict(),
                "generator": _generator_version()}
        cache = cache_dir / f"phantoms_{preset_name}_{n}_{seed}_{_options_key(options)}_{key}.npz"
        return cached_generate(cache, _phantom_worker, jobs, f"phantoms {seed}..{seed + n - 1}",
                               info, processes)
    if source.startswith("labelmap:"):
        rest = source[len("labelmap:"):]
        parts = rest.split(":")
        path = parts[0]
        n = int(parts[1]) if len(parts) > 1 and parts[1] else 200
        seed = int(parts[2]) if len(parts) > 2 and parts[2] else 0
        options = _parse_options(parts[3:])
        convention = str(options.pop("convention", "auto"))
        extra = {k: float(options.pop(k)) for k in ("completion_mm", "spine_crop",
                                                    "bone_density", "thin_walls") if k in options}
        if options:
            raise ValueError(f"unknown label-map option(s) {sorted(options)} in {source!r}; "
                             "use convention=auto|totalseg|totalseg_v2|verse, completion_mm=MM, "
                             "spine_crop=P, bone_density=F, thin_walls=P")
        resolved = str(Path(path).resolve())
        files = [str(f.resolve()) for f in labelmap_files(path)]
        jobs = [(files[i % len(files)], seed + i, config.to_dict(), convention, extra)
                for i in range(n)]
        info = {"source": "labelmap", "path": resolved, "n": n, "seed": seed,
                "preprocess": config.to_dict(), "generator": _generator_version()}
        if convention != "auto":
            info["convention"] = convention
        if extra:
            info["options"] = extra
        if len(files) > 1:
            info["files"] = [Path(f).name for f in files]
        opt_key = f"_{_options_key(extra)}" if extra else ""  # older caches had no options
        cache = cache_dir / f"labelmap_{Path(path).stem}_{n}_{seed}{opt_key}_{key}.npz"
        return cached_generate(cache, _labelmap_worker, jobs, f"label-map CTs {seed}..",
                               info, processes)
    if source.endswith(".npz"):
        if is_sample_cache(source):
            return load_samples(source)[0]
        return load_paper_npz(source, config, seed_filter=seed_filter,
                              seed_preprocess=seed_preprocess, progress=True)
    folder, _, csv_name = source.partition(":")
    if Path(folder).is_dir():
        csv_path = Path(csv_name) if csv_name else None
        if csv_path is not None and not csv_path.is_absolute() and not csv_path.is_file():
            csv_path = Path(folder) / csv_path
        return load_ct_folder(folder, csv_path, config, cache_dir / "ct")
    raise ValueError(
        f"Unknown data source {source!r}: use a paper .npz, a folder of CTs with a CSV "
        "(FOLDER or FOLDER:CSV), phantoms:N[:SEED] or labelmap:PATH[:N[:SEED]] (a map or a "
        "folder of maps)."
    )


def _options_key(options: dict[str, Any]) -> str:
    """Six hex digits naming a source's options in its cache file name."""
    return hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:6]


def _parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` items (values parsed as JSON when possible: ``spacing=[2,2,2]``)."""
    out: dict[str, Any] = {}
    for item in items:
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"phantom option {item!r} is not key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _generator_version() -> str:
    from L3LocatorLib.phantoms import GENERATOR_VERSION

    return GENERATOR_VERSION


def parse_sources(
    spec: str,
    config: PreprocessConfig,
    cache_dir: Path | None = None,
    **options: Any,
) -> list[Sample]:
    """Samples of ``SOURCE[+SOURCE...]`` in order."""
    out: list[Sample] = []
    for part in spec.split("+"):
        part = part.strip()
        if not part:
            continue
        samples = load_source(part, config, cache_dir, **options)
        if not samples:
            raise ValueError(f"The data source {part!r} gave no usable scans; check its path "
                             "and the warnings above.")
        out.extend(samples)
    return out


def split_indices(
    n: int, folds: int, fold: int, mode: str = "contiguous", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices.

    ``contiguous`` reproduces the seed's K-fold: validation block ``fold`` (1-based)
    is ``[int((fold-1)/folds * n), int(fold/folds * n))``. ``random`` shuffles with
    ``seed`` first. ``folds <= 1`` gives every index to training and none to validation.
    """
    order = np.arange(n)
    if folds <= 1:
        return order, order[:0]
    if not 1 <= fold <= folds:
        raise ValueError(f"fold must be 1..{folds}, got {fold}")
    if mode == "random":
        order = np.random.default_rng(seed).permutation(n)
    elif mode != "contiguous":
        raise ValueError(f"unknown split {mode!r}")
    frac = 1.0 / folds  # the seed's arithmetic: int(0.2 * (k - 1) * n) for 5 folds
    start = int(frac * (fold - 1) * n)
    end = int(frac * fold * n)
    val = order[start:end]
    train = np.concatenate([order[:start], order[end:]])
    return train, val
