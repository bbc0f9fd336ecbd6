"""Background effects of runtime faults: the memory ballast and the slow-query log lines."""

from __future__ import annotations

import contextlib
import gc
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import psutil

from es_doctor.lab.jsonlog import JsonLogger

PAGE = 4096
SLOW_QUERIES = (
    "SELECT id, title FROM {t} WHERE status = $1 ORDER BY created_at",
    "UPDATE {t} SET status = $1 WHERE id = ANY($2)",
    "SELECT count(*) FROM {t}",
)


class Ballast:
    """Holds a touched ``bytearray`` so the process RSS sits at ``fraction`` of ``limit_bytes``."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.fraction = 0.0
        self._buf: bytearray | None = None
        self._lock = threading.Lock()

    def measure(self) -> int:
        """What an operator's tool reads: the container's charged memory (``docker stats``: usage minus
        page cache) when a cgroup enforces our limit, else this process's RSS."""
        charged = cgroup_charged_bytes(self.limit_bytes)
        return charged if charged is not None else resident_bytes()

    @property
    def size(self) -> int:
        return len(self._buf) if self._buf is not None else 0

    def set_fraction(self, fraction: float) -> None:
        with self._lock:
            self.fraction = fraction
        self.adjust()

    def adjust(self) -> None:
        """Re-size the ballast toward the target (called on change and periodically)."""
        with self._lock:
            if self.fraction <= 0:
                if self._buf is not None:
                    self._buf = None
                    gc.collect()
                return
            target = int(self.limit_bytes * self.fraction)
            base = max(0, self.measure() - self.size)
            want = max(0, min(target - base, target))
            if abs(want - self.size) < self.limit_bytes * 0.01:
                return
            self._buf = None
            buf = bytearray(want)
            buf[::PAGE] = b"\x01" * len(range(0, want, PAGE))
            self._buf = buf


def resident_bytes() -> int:
    """This process's RSS, from ``/proc/self``: inside a container that chroots into the host's root,
    ``/proc/<getpid()>`` is another process (the container's pid namespace), ``/proc/self`` is not."""
    try:
        fields = Path("/proc/self/statm").read_text(encoding="ascii").split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return int(psutil.Process().memory_info().rss)


def _memory_cgroup_dir() -> tuple[Path, int] | None:
    """This process's memory cgroup directory and its version (1 or 2), if sysfs shows it."""
    try:
        lines = Path("/proc/self/cgroup").read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    for line in lines:
        _hid, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/"), 1
    for line in lines:
        if line.startswith("0::"):
            return Path("/sys/fs/cgroup") / line[3:].lstrip("/"), 2
    return None


def cgroup_charged_bytes(limit_bytes: int) -> int | None:
    """Memory charged to our cgroup minus page cache (as ``docker stats`` computes it), but only when
    that cgroup's limit is ``limit_bytes`` (the container's); None otherwise."""
    found = _memory_cgroup_dir()
    if found is None:
        return None
    directory, version = found
    names = (("memory.limit_in_bytes", "memory.usage_in_bytes", "cache") if version == 1
             else ("memory.max", "memory.current", "inactive_file"))
    try:
        limit = (directory / names[0]).read_text(encoding="ascii").strip()
        if not limit.isdigit() or abs(int(limit) - limit_bytes) > limit_bytes * 0.05:
            return None
        usage = int((directory / names[1]).read_text(encoding="ascii"))
        stat = dict(line.split() for line in (directory / "memory.stat").read_text(encoding="ascii").splitlines()
                    if line.count(" ") == 1)
        return max(0, usage - int(stat.get(names[2], 0)))
    except (OSError, ValueError):
        return None


def slow_log_tick(journal: JsonLogger, rng: random.Random) -> None:
    """One tick of the ``slow-logs`` fault: a SLOW query WARN, sometimes a timeout ERROR."""
    ms = rng.randint(1050, 4800)
    table = rng.choice(["tasks", "email_queue", "templates", "audit_log"])
    query = rng.choice(SLOW_QUERIES).replace("{t}", table)
    journal.warn("database", f"SLOW query: {query} took {ms}ms",
                 duration_ms=ms, request_id=f"req-{rng.randrange(16**8):08x}")
    if rng.random() < 0.4:
        journal.error("database", f"query timeout on {table}",
                      error="context deadline exceeded (timeout after 5s)",
                      duration_ms=5000, request_id=f"req-{rng.randrange(16**8):08x}")


def run_periodic(stop: threading.Event, interval: float, fn: Callable[[], None], name: str) -> threading.Thread:
    """Call ``fn`` every ``interval`` seconds until ``stop`` is set (exceptions do not kill the loop)."""

    def loop() -> None:
        while not stop.wait(interval):
            with contextlib.suppress(Exception):  # a lab loop must keep running
                fn()

    t = threading.Thread(target=loop, name=name, daemon=True)
    t.start()
    return t
