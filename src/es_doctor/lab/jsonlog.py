"""The Go service's log format: one JSON object per line (STACK.md "Logs")."""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import threading
from pathlib import Path
from typing import Any

from es_doctor.loglevels import LEVEL_RANK, level_rank
from es_doctor.units import utc_iso

MAIN_LOG = "email-sender.log"
ERROR_LOG = "email-sender-error.log"


def utc_now_iso(ts: float | None = None) -> str:
    return utc_iso(ts, ms=True)


def format_line(level: str, component: str, message: str, **fields: Any) -> str:
    record = {
        "timestamp": utc_now_iso(),
        "level": level,
        "component": component,
        "message": message,
        "error": fields.get("error"),
        "request_id": fields.get("request_id"),
        "user_id": fields.get("user_id"),
        "duration_ms": fields.get("duration_ms"),
    }
    record.update({k: v for k, v in fields.items() if k not in record})  # e.g. client_ip on SECURITY lines
    return json.dumps(record, separators=(",", ":"))


class JsonLogger:
    """Writes ``<dir>/email-sender.log`` (all levels ≥ the threshold) and ``email-sender-error.log``
    (ERROR and FATAL). Console copies go to stderr through a bounded queue so a reader that never
    drains the pipe cannot block the service (lines are dropped instead)."""

    def __init__(self, log_dir: Path, level: str = "info", console: bool = True) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.threshold = level_rank(level) or LEVEL_RANK["INFO"]
        self._lock = threading.Lock()
        self._main = (log_dir / MAIN_LOG).open("a", encoding="utf-8", buffering=1)
        self._err = (log_dir / ERROR_LOG).open("a", encoding="utf-8", buffering=1)
        self._console: queue.Queue[str] | None = None
        if console:
            self._console = queue.Queue(maxsize=2000)
            threading.Thread(target=self._drain, name="log-console", daemon=True).start()

    def _drain(self) -> None:
        assert self._console is not None
        while True:
            line = self._console.get()
            try:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                return

    def log(self, level: str, component: str, message: str, **fields: Any) -> None:
        rank = level_rank(level) or LEVEL_RANK["INFO"]
        if rank < self.threshold and rank < LEVEL_RANK["ERROR"]:
            return
        line = format_line(level, component, message, **fields)
        with self._lock:
            if self._main.closed:
                return
            self._main.write(line + "\n")
            if rank >= LEVEL_RANK["ERROR"]:
                self._err.write(line + "\n")
        if self._console is not None:
            with contextlib.suppress(queue.Full):
                self._console.put_nowait(line)

    def info(self, component: str, message: str, **fields: Any) -> None:
        self.log("INFO", component, message, **fields)

    def warn(self, component: str, message: str, **fields: Any) -> None:
        self.log("WARN", component, message, **fields)

    def error(self, component: str, message: str, **fields: Any) -> None:
        self.log("ERROR", component, message, **fields)

    def close(self) -> None:
        with self._lock:
            self._main.close()
            self._err.close()


def fatal(log_dir: Path | None, message: str, error: str | None = None) -> None:
    """A FATAL line to stderr (synchronously) and, when possible, to the log files."""
    line = format_line("FATAL", "main", message, error=error)
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    if log_dir is None:
        return
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        for name in (MAIN_LOG, ERROR_LOG):
            with (log_dir / name).open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
    except OSError:
        pass
