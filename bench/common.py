"""Shared bits of the benchmarks: a row schema, a median timer and peak-memory probes.

Every row compares *ours* against a baseline measured in the same process run, so the ratio holds
on a noisy machine. Units are "higher is better" (images/s, GFLOP/s, ...) unless a row's unit says
otherwise; ratio = ours / baseline.
"""

from __future__ import annotations

import gc
import os
import resource
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass
class Row:
    name: str
    ours: float | None
    baseline: float | None
    unit: str
    goal: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.baseline in (None, 0):
            return None
        return self.ours / self.baseline

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of fn() over `repeats` runs, after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """Resident memory of this process now, MiB (Linux /proc)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_growth_mib(fn: Callable[[], object], interval_s: float = 0.001) -> float:
    """Peak RSS growth during one call of fn, sampled by a thread (torch ops release the GIL): the
    call's own working memory, unlike the process-wide peak that earlier work may have set."""
    start, peak, done = current_rss_mib(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], current_rss_mib() - start)
            time.sleep(interval_s)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return peak[0]
