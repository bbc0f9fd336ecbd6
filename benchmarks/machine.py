"""The machine a benchmark ran on, in figures another machine can be compared with (#25): the
calibration loop's CPU time and the load average, printed beside every result."""

from __future__ import annotations

import os
import time

#: the issue's CI-class machine takes about 0.31 s; the goals hold on a machine taking >= 0.3 s
CALIBRATION_CODE = "sum(i*i for i in range(3_000_000))"


def calibration() -> float:
    """CPU seconds of :data:`CALIBRATION_CODE`, best of 3 (CPU, so other processes' load hardly moves it)."""
    best = float("inf")
    for _ in range(3):
        begin = time.process_time()
        sum(i * i for i in range(3_000_000))
        best = min(best, time.process_time() - begin)
    return best


def load() -> str:
    """The load average over 1, 5 and 15 minutes."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def describe() -> str:
    """One line: calibration, load average, CPUs."""
    return (f"machine: calibration {CALIBRATION_CODE} {calibration():.3f} s CPU (best of 3); "
            f"load average {load()}; {os.cpu_count()} CPUs")
