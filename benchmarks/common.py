"""Shared pieces of the benchmarks: a 512x512x400 test CT and timing helpers."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np

from L3LocatorLib.volume import Volume


def benchmark_ct(shape_kji: tuple[int, int, int] = (400, 512, 512)) -> Volume:
    """A 512x512x400 int16 CT (0.8 x 0.8 x 1.25 mm, axial LPS) with a body and a spine.

    Uses the phantom generator when it is available, else a simple torso, so the
    benchmark runs on any checkout.
    """
    try:
        from L3LocatorLib.phantoms import make_phantom

        volume, _ = make_phantom(
            0, preset="abdomen_pelvis", matrix=(shape_kji[2], shape_kji[1]),
            n_slices=shape_kji[0], spacing=(0.8, 0.8, 1.25),
        )
        return volume
    except ImportError:
        pass
    nk, nj, ni = shape_kji
    y, x = np.mgrid[-nj // 2 : nj // 2, -ni // 2 : ni // 2] * 0.8
    body = np.where((x / 170) ** 2 + (y / 120) ** 2 < 1, 40, -1000).astype(np.int16)
    body[((x / 20) ** 2 + ((y - 60) / 20) ** 2) < 1] = 600
    rng = np.random.default_rng(0)
    array = np.repeat(body[None], nk, axis=0)
    array += rng.normal(0, 15, array.shape).astype(np.int16)
    return Volume.from_geometry(array, (0.8, 0.8, 1.25), np.diag([-1.0, -1.0, 1.0]), (200, 200, 0))


def median_time(function: Callable[[], object], repeats: int = 5) -> tuple[float, object]:
    """Median wall time (s) of ``function()`` over ``repeats`` calls, and its last result."""
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result
