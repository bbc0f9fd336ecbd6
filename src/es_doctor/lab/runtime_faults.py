"""Runtime faults: the JSON file ``{"faults": ["name", ...]}`` the lab programs poll.

The orchestrator writes the file (use :func:`write_faults_file`, atomic); the programs poll its
signature every 0.5 s (and read it at start) and change their real behaviour. One-shot faults
(:data:`es_doctor.lab.fault_table.ONE_SHOT_FAULTS`) fire on an absent → present transition seen while the program runs;
a fault already listed when the program starts counts as already fired (a restart cures it).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

POLL_INTERVAL_S = 0.5

ChangeCallback = Callable[[frozenset[str], frozenset[str]], None]


def read_faults_file(path: str | Path | None) -> frozenset[str]:
    """The fault names listed in ``path``; empty when the file is absent or unreadable."""
    if path is None:
        return frozenset()
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return frozenset()
    names = data.get("faults", []) if isinstance(data, dict) else []
    if not isinstance(names, list):
        return frozenset()
    return frozenset(str(n) for n in names if isinstance(n, str))


def write_faults_file(path: str | Path, names: Iterable[str]) -> None:
    """Write the faults file atomically (temp file + rename), so a poller never reads half of it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"faults": sorted(set(names))}) + "\n", encoding="utf-8")
    tmp.replace(target)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class FaultWatcher:
    """Polls a faults file and reports changes to ``on_change(added, removed)``."""

    def __init__(self, path: str | Path | None, on_change: ChangeCallback | None = None) -> None:
        self.path = Path(path) if path else None
        self._on_change = on_change
        self._lock = threading.Lock()
        self._active: frozenset[str] = read_faults_file(self.path)
        self._sig = _signature(self.path) if self.path else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def initial(self) -> frozenset[str]:
        """What the file listed at construction time (before any change)."""
        return self._active

    #: faults the running program is immune to (its configuration holds the guide's remedy)
    cured: frozenset[str] = frozenset()

    def active(self, name: str) -> bool:
        return name in self._active and name not in self.cured

    def names(self) -> list[str]:
        return sorted(self._active)

    def reload(self) -> frozenset[str]:
        """Re-read the file now; notify the callback of any change."""
        if self.path is None:
            return self._active
        with self._lock:
            self._sig = _signature(self.path)
            new = read_faults_file(self.path)
            added, removed = new - self._active, self._active - new
            self._active = new
        if (added or removed) and self._on_change is not None:
            with contextlib.suppress(Exception):
                self._on_change(frozenset(added), frozenset(removed))
        return new

    def _run(self) -> None:
        assert self.path is not None
        while not self._stop.wait(POLL_INTERVAL_S):
            if _signature(self.path) != self._sig:
                self.reload()

    def start(self) -> None:
        if self.path is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="fault-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
