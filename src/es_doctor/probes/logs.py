"""The service's log files: tail, JSON lines, newest deployment/migration log."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from es_doctor.probes.result import FailureKind, Result, failed, short, success

TAIL_BLOCK = 64 * 1024


@dataclass(frozen=True)
class LogLine:
    raw: str
    data: dict[str, Any] | None

    @property
    def level(self) -> str:
        if self.data is not None:
            return str(self.data.get("level", "")).upper()
        for word in ("FATAL", "ERROR", "WARN", "INFO", "DEBUG"):
            if word in self.raw:
                return word
        return ""

    def field(self, key: str) -> str:
        if self.data is None:
            return ""
        value = self.data.get(key)
        return "" if value is None else str(value)

    def contains(self, word: str) -> bool:
        return word in self.raw


def parse_line(raw: str) -> LogLine:
    try:
        data = json.loads(raw)
    except ValueError:
        return LogLine(raw, None)
    return LogLine(raw, data if isinstance(data, dict) else None)


def tail_lines(path: Path, max_lines: int) -> Result[list[LogLine]]:
    """The last ``max_lines`` lines of a file, read from its end (cheap on big logs)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            end = handle.tell()
            data = b""
            position = end
            while position > 0 and data.count(b"\n") <= max_lines:
                step = min(TAIL_BLOCK, position)
                position -= step
                handle.seek(position)
                data = handle.read(step) + data
    except FileNotFoundError:
        return failed(FailureKind.NOT_FOUND, f"no log file {path}")
    except OSError as exc:
        return failed(FailureKind.ERROR, f"{path}: {short(exc)}")
    lines = data.decode("utf-8", errors="replace").splitlines()[-max_lines:]
    return success([parse_line(line) for line in lines if line.strip()])


def newest(directory: Path, pattern: str) -> Result[Path]:
    try:
        candidates = sorted(directory.glob(pattern), key=lambda p: p.stat().st_mtime)
    except OSError as exc:
        return failed(FailureKind.ERROR, f"{directory}: {short(exc)}")
    if not candidates:
        return failed(FailureKind.NOT_FOUND, f"no {pattern} in {directory}")
    return success(candidates[-1])
