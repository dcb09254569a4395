"""Shared pieces of the benchmarks: a 512x512x400 test CT and timing helpers."""

from __future__ import annotations

import statistics
import time
from typing import Callable

from L3LocatorLib.phantoms import make_phantom
from L3LocatorLib.volume import Volume


def benchmark_ct(shape_kji: tuple[int, int, int] = (400, 512, 512)) -> Volume:
    """A 512x512x400 int16 CT (0.8 x 0.8 x 1.25 mm, axial LPS): a phantom abdomen-pelvis."""
    volume, _ = make_phantom(
        0, preset="abdomen_pelvis", matrix=(shape_kji[2], shape_kji[1]),
        n_slices=shape_kji[0], spacing=(0.8, 0.8, 1.25),
    )
    return volume


def median_time(function: Callable[[], object], repeats: int = 5) -> tuple[float, object]:
    """Median wall time (s) of ``function()`` over ``repeats`` calls, and its last result."""
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result
