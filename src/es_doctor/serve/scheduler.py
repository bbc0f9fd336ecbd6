"""One schedule per target: a thread that runs the target's diagnosis every ``interval`` seconds.

Runs are jittered (each starts up to ``jitter_pct`` of the interval early or late) and the targets' first
runs are spread out (``STAGGER_S`` apart, within one interval) so that many targets do not all run at
once (memory, CPU, the server's latency). Runs never overlap themselves (a thread runs one at a time: a
run longer than the interval is followed at once by the next), and targets never wait for each other (a
slow or dead target only delays its own thread).
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

#: the first runs of the targets start this far apart (at most one interval in all)
STAGGER_S = 1.5

T = TypeVar("T")  # what a target is (a Target)
R = TypeVar("R")  # what a run returns (a Report)


@dataclass
class Timing:
    interval_s: float
    jitter_pct: float = 10.0

    @property
    def jitter_s(self) -> float:
        return self.interval_s * self.jitter_pct / 100.0


@dataclass
class LoopStats:
    runs: int = 0
    failures: int = 0
    running: bool = False


class _Loop(threading.Thread, Generic[T, R]):
    def __init__(self, name: str, item: T, timing: Timing, run: Callable[[str, T], R],
                 done: Callable[[str, R], None], rng: random.Random, first_delay_s: float = 0.0) -> None:
        super().__init__(name=f"serve:{name}", daemon=True)
        self.first_delay_s = first_delay_s
        self.target_name = name
        self.item = item
        self.timing = timing
        self._run = run
        self._done = done
        self._rng = rng
        self.stop_event = threading.Event()
        self.stats = LoopStats()

    def run(self) -> None:
        delay = self.first_delay_s + self._rng.uniform(0.0, min(self.timing.jitter_s, STAGGER_S))
        while not self.stop_event.wait(delay):
            started = time.monotonic()
            self.stats.running = True
            item, timing = self.item, self.timing  # a reload takes effect at the next run
            try:
                result = self._run(self.target_name, item)
            except Exception as exc:  # noqa: BLE001 - one target's bug must not stop its schedule
                self.stats.failures += 1
                print(f"es-doctor serve: target {self.target_name}: run failed: {type(exc).__name__}: {exc}",
                      file=sys.stderr)
            else:
                self.stats.runs += 1
                if not self.stop_event.is_set():
                    try:
                        self._done(self.target_name, result)
                    except Exception as exc:  # noqa: BLE001 - same: keep the schedule
                        print(f"es-doctor serve: target {self.target_name}: storing the result failed: "
                              f"{type(exc).__name__}: {exc}", file=sys.stderr)
            finally:
                self.stats.running = False
            jitter = timing.jitter_s
            due = started + timing.interval_s + self._rng.uniform(-jitter, jitter)
            delay = max(0.0, due - time.monotonic())


class Scheduler(Generic[T, R]):
    """Per-target loops; :meth:`set_targets` adds, updates and removes them (SIGHUP reload)."""

    def __init__(self, run: Callable[[str, T], R], done: Callable[[str, R], None], timing: Timing,
                 rng: random.Random | None = None) -> None:
        self._run = run
        self._done = done
        self.timing = timing
        self._rng = rng or random.Random()
        self._loops: dict[str, _Loop[T, R]] = {}
        self._lock = threading.Lock()

    def set_targets(self, items: dict[str, T], timing: Timing | None = None) -> None:
        with self._lock:
            if timing is not None:
                self.timing = timing
            for name in [n for n in self._loops if n not in items]:
                self._loops.pop(name).stop_event.set()
            new = [name for name in items if name not in self._loops]
            spread = min(self.timing.interval_s, STAGGER_S * len(new))
            for name, item in items.items():
                loop = self._loops.get(name)
                if loop is None:
                    offset = spread * new.index(name) / max(1, len(new))
                    loop = _Loop(name, item, self.timing, self._run, self._done, self._rng, offset)
                    self._loops[name] = loop
                    loop.start()
                else:
                    loop.item = item
                    loop.timing = self.timing

    def names(self) -> list[str]:
        with self._lock:
            return list(self._loops)

    def stats(self) -> dict[str, LoopStats]:
        with self._lock:
            return {name: loop.stats for name, loop in self._loops.items()}

    def stop(self, wait_s: float = 0.0) -> None:
        with self._lock:
            loops = list(self._loops.values())
            self._loops.clear()
        for loop in loops:
            loop.stop_event.set()
        deadline = time.monotonic() + wait_s
        for loop in loops:
            loop.join(max(0.0, deadline - time.monotonic()))
