"""es-doctor's own audited runs on a target over a window: what ``fix`` and ``emergency`` did there.

The uptime check reads them: scrapes lost while es-doctor's own runs restarted the service are named as
such (a cure's restart is not an outage to escalate).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

#: how much of the audit log's end is read (the window's runs are recent)
TAIL_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class OwnRun:
    run_id: str
    runbook: str
    started: float  #: epoch seconds
    ended: float | None  #: None: still running (or it died)

    def overlap(self, start: float, end: float) -> float:
        """Seconds of [start, end] this run covers."""
        return max(0.0, min(end, self.ended if self.ended is not None else end) - max(start, self.started))


def _epoch(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _tail(path: Path) -> bytes:
    """The last :data:`TAIL_BYTES` of a regular file (a FIFO or device is refused at once, never waited on)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return b""
        handle.seek(max(0, info.st_size - TAIL_BYTES))
        return handle.read(TAIL_BYTES)


def runs(audit_log: Path | None, target: str, since: float, until: float) -> list[OwnRun]:
    """The runs of ``target`` that acted (``fix.start``) and overlap [since, until], oldest first. An
    unreadable or missing log is no run (the check then judges the uptime as it is)."""
    if audit_log is None:
        return []
    try:
        data = _tail(audit_log)
    except OSError:
        return []
    started: dict[str, tuple[str, float]] = {}
    ended: dict[str, float] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # the first line of the tail may be cut
        if not isinstance(record, dict) or record.get("target") != target:
            continue
        when = _epoch(record.get("time"))
        run_id = str(record.get("run_id") or "")
        if when is None or not run_id:
            continue
        if record.get("event") == "fix.start":
            started[run_id] = (str(record.get("runbook") or "?"), when)
        elif record.get("event") == "fix.end":
            ended[run_id] = when
    out = [OwnRun(run_id, runbook, start, ended.get(run_id)) for run_id, (runbook, start) in started.items()]
    return sorted((r for r in out if r.overlap(since, until) > 0 or (r.ended is None and r.started <= until)),
                  key=lambda r: r.started)
