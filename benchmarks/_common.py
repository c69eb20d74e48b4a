"""Shared helpers for the benchmarks: interleaved timing, medians, run conditions.

Timings on a shared machine are noisy, so every benchmark runs the reference and
goodfit alternately in the same process (ABBA order), and reports medians.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable


def median(values) -> float:
    return float(statistics.median(values))


def interleaved(contenders: dict[str, Callable[[int], object]], runs: int) -> dict[str, list[float]]:
    """Time each contender ``runs`` times, alternating the order every round.

    Each contender is called with the run number (e.g. a seed) and its wall time
    recorded; the results of the calls are discarded.
    """
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for run in range(runs):
        for name in names if run % 2 == 0 else reversed(names):
            start = time.perf_counter()
            contenders[name](run)
            times[name].append(time.perf_counter() - start)
    return times


def conditions(threads: int | None = None) -> str:
    """One line describing the machine and its load when the benchmark started."""
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"conditions: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
            f"load average {load:.1f} at start, torch {torch.__version__}, "
            f"torch threads {threads if threads is not None else torch.get_num_threads()}")


def fmt_times(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "] s"
