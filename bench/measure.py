"""What every bench section shares: progress lines, the machine, and interleaved paired timing."""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = {"model": "gpt-image-2", "prompt": "A futuristic skyline at dusk", "size": "1024x1024"}


def progress(message: str) -> None:
    """What the bench is doing now, on stderr (the figures go to stdout)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.machine()}, {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def spread(values: list[float], digits: int = 2) -> str:
    """median (min-max) of values"""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


@dataclass(frozen=True)
class PairedRun:
    """One run of interleaved pairs: the yardstick (a direct upstream call) and the path measured."""

    direct_ms: float  # medians
    path_ms: float
    overhead_ms: float  # median of the paired differences
    overhead_p90_ms: float

    @property
    def in_direct_calls(self) -> float:
        return self.overhead_ms / self.direct_ms


def paired_runs(direct: Callable[[], None], path: Callable[[], None], *, runs: int, pairs: int, warmup: int,
                label: str) -> list[PairedRun]:
    """`runs` runs of `pairs` pairs, each pair timing `direct` then `path` back to back, after
    `warmup` pairs: both see the same machine state, and the spread over runs shows the noise."""
    def timed(call: Callable[[], None]) -> float:
        started = time.perf_counter()
        call()
        return (time.perf_counter() - started) * 1000

    progress(f"{label}: warm-up, {warmup} pairs")
    for _ in range(warmup):
        direct(), path()
    results = []
    for run in range(runs):
        progress(f"{label}: run {run + 1}/{runs}, {pairs} pairs")
        samples = [(timed(direct), timed(path)) for _ in range(pairs)]
        paired = [p - d for d, p in samples]
        results.append(PairedRun(statistics.median(d for d, _ in samples), statistics.median(p for _, p in samples),
                                 statistics.median(paired), percentile(paired, 90)))
    return results
