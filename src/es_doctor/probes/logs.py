"""The service's log files: tail, JSON lines, newest deployment/migration log."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from es_doctor.probes.result import FailureKind, Result, failed, short, success

TAIL_BLOCK = 64 * 1024
#: the most a tail reads from the end of a file, and the longest line it keeps
MAX_TAIL_BYTES = 8 * 1024 * 1024
MAX_LINE_BYTES = 64 * 1024


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
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        return LogLine(raw, None)
    return LogLine(raw, data if isinstance(data, dict) else None)


def tail_lines(path: Path, max_lines: int) -> Result[list[LogLine]]:
    """The last ``max_lines`` lines of a file, read from its end (cheap on big logs).

    Linear and bounded: blocks are read backwards until enough lines are seen or MAX_TAIL_BYTES are
    read (a huge line is cut there); a line longer than MAX_LINE_BYTES is cut to its end.
    """
    try:
        with path.open("rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return failed(FailureKind.ERROR, f"{path}: not a regular file")
            handle.seek(0, 2)
            position = handle.tell()
            blocks: list[bytes] = []
            newlines = read = 0
            while position > 0 and newlines <= max_lines and read < MAX_TAIL_BYTES:
                step = min(TAIL_BLOCK, position)
                position -= step
                handle.seek(position)
                block = handle.read(step)
                blocks.append(block)
                newlines += block.count(b"\n")
                read += len(block)
            data = b"".join(reversed(blocks))
            if position > 0 and b"\n" in data:  # the first line read is a piece of a longer one
                data = data[data.index(b"\n") + 1:]
    except FileNotFoundError:
        return failed(FailureKind.NOT_FOUND, f"no log file {path}")
    except OSError as exc:
        return failed(FailureKind.ERROR, f"{path}: {short(exc)}")
    lines = data.decode("utf-8", errors="replace").splitlines()[-max_lines:]
    return success([parse_line(line if len(line) <= MAX_LINE_BYTES else line[-MAX_LINE_BYTES:])
                    for line in lines if line.strip()])


def newest(directory: Path, pattern: str) -> Result[Path]:
    try:
        candidates = sorted(directory.glob(pattern), key=lambda p: p.stat().st_mtime)
    except OSError as exc:
        return failed(FailureKind.ERROR, f"{directory}: {short(exc)}")
    if not candidates:
        return failed(FailureKind.NOT_FOUND, f"no {pattern} in {directory}")
    return success(candidates[-1])
