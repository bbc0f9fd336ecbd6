"""The service's log files: tail, JSON lines, newest deployment/migration log."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

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


# --------------------------------------------------------------------------- `es-doctor logs`: big files
#: blocks read by the scans below (forward, backward, follow)
SCAN_BLOCK = 1024 * 1024
#: how much the binary search reads around a probe point to find one timestamped line
PROBE_WINDOW = 256 * 1024
#: a file whose sampled bytes hold more NULs or undecodable bytes than this share is not a log
BINARY_SHARE = 0.05
_TIMESTAMP = re.compile(rb'"timestamp"\s*:\s*"([^"\\]{10,40})"')


@dataclass(frozen=True)
class RawLine:
    """One line as read: at most MAX_LINE_BYTES (``cut`` when the line was longer), no newline."""

    data: bytes
    cut: bool = False

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace").rstrip("\r")


def iso_epoch(text: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 time (``Z`` or an offset; naive is UTC), else None."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def line_epoch(line: bytes) -> float | None:
    """The ``timestamp`` of a JSON log line, found without parsing the whole line."""
    match = _TIMESTAMP.search(line, 0, 512) or _TIMESTAMP.search(line)
    return iso_epoch(match.group(1).decode("ascii", errors="replace")) if match else None


def binary_reason(sample: bytes) -> str | None:
    """Why ``sample`` is not text (NUL bytes, undecodable bytes), or None."""
    if not sample:
        return None
    nul = sample.count(b"\0")
    if nul > len(sample) * BINARY_SHARE:
        return f"{nul} NUL bytes in {len(sample)}"
    bad = len(sample.decode("utf-8", errors="replace").encode("utf-8")) - len(sample)
    # each undecodable byte becomes U+FFFD (3 bytes): the growth counts them, twice each
    if bad > len(sample) * BINARY_SHARE * 2:
        return "bytes that are not UTF-8 text"
    return None


@dataclass
class LogFile:
    """An open log file: scans forward from a time, backward from the end, or follows it."""

    path: Path
    handle: BinaryIO
    size: int

    def close(self) -> None:
        self.handle.close()

    def _read(self, offset: int, length: int) -> bytes:
        self.handle.seek(offset)
        return self.handle.read(length)

    def _first_stamp_after(self, offset: int) -> tuple[int, float | None]:
        """The start of the first whole line at or after ``offset`` and the first timestamp from there on
        (within PROBE_WINDOW); a line that offset cuts is skipped."""
        start = offset
        data = self._read(offset, PROBE_WINDOW)
        if offset > 0:
            newline = data.find(b"\n")
            if newline < 0:
                return offset + len(data), None
            data, start = data[newline + 1:], offset + newline + 1
        for line in data.split(b"\n")[:-1] if len(data) == PROBE_WINDOW else data.split(b"\n"):
            stamp = line_epoch(line)
            if stamp is not None:
                return start, stamp
        return start, None

    def stamped(self) -> bool:
        """Whether the end of the file holds a line with a ``timestamp`` (what a window needs)."""
        return self.size == 0 or self._first_stamp_after(max(0, self.size - PROBE_WINDOW))[1] is not None

    def offset_since(self, since: float) -> int:
        """The offset of the first line stamped at or after ``since``: a binary search over the file's
        timestamps (lines are appended in time order; a few out of order only move the cut a little).
        Reads O(log size) windows, never the file."""
        lo, hi = 0, self.size
        while hi - lo > PROBE_WINDOW:
            mid = (lo + hi) // 2
            start, stamp = self._first_stamp_after(mid)
            if stamp is None or start >= hi:  # no timestamp around mid: look earlier
                hi = mid
            elif stamp < since:
                lo = start
            else:
                hi = mid
        # from lo, the first line stamped in the window (lines without a stamp before it are left out)
        position = lo
        for line, end in self._forward(lo):
            stamp = line_epoch(line.data)
            if stamp is not None and stamp >= since:
                return position
            position = end
        return self.size

    def _forward(self, offset: int) -> Iterator[tuple[RawLine, int]]:
        """Lines from ``offset`` (a line start) to the size seen at open, with the offset after each;
        blank lines are left out."""
        position, pending, cut = offset, b"", False
        while position < self.size:
            block = self._read(position, min(SCAN_BLOCK, self.size - position))
            if not block:
                break
            block_start, position, start = position, position + len(block), 0
            while (newline := block.find(b"\n", start)) >= 0:
                line = pending + block[start:newline] if pending else block[start:newline]
                if line.strip():
                    yield RawLine(line[:MAX_LINE_BYTES], cut or len(line) > MAX_LINE_BYTES), block_start + newline + 1
                pending, cut, start = b"", False, newline + 1
            pending += block[start:]
            if len(pending) > MAX_LINE_BYTES:
                pending, cut = pending[:MAX_LINE_BYTES], True
        if pending.strip():  # the last line has no newline yet (the writer is mid-line, or the file was cut)
            yield RawLine(pending, cut), self.size

    def lines_from(self, offset: int) -> Iterator[RawLine]:
        for line, _end in self._forward(offset):
            yield line

    def lines_backward(self) -> Iterator[RawLine]:
        """Lines from the newest to the oldest, read in blocks from the end; blank lines are left out.
        Memory: one block and one line (a line longer than MAX_LINE_BYTES keeps its start)."""
        position, pending, cut = self.size, b"", False
        while position > 0:
            step = min(SCAN_BLOCK, position)
            position -= step
            block = self._read(position, step)
            if b"\n" not in block:  # still inside one line: keep its earliest bytes
                pending = block + pending
                if len(pending) > MAX_LINE_BYTES:
                    pending, cut = pending[:MAX_LINE_BYTES], True
                continue
            parts = block.split(b"\n")
            last = parts[-1] + pending
            lines = [*parts[1:-1], last[:MAX_LINE_BYTES]]
            cuts = [len(p) > MAX_LINE_BYTES for p in parts[1:-1]] + [cut or len(last) > MAX_LINE_BYTES]
            for line, line_cut in zip(reversed(lines), reversed(cuts), strict=True):
                if line.strip():
                    yield RawLine(line[:MAX_LINE_BYTES], line_cut)
            pending, cut = parts[0][:MAX_LINE_BYTES], len(parts[0]) > MAX_LINE_BYTES
        if pending.strip():
            yield RawLine(pending, cut)


def open_log(path: Path) -> Result[LogFile]:
    """Open a log for scanning: a regular, readable file of text (a binary file is BAD_RESPONSE)."""
    try:  # O_NONBLOCK: a FIFO is refused below instead of waiting for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return failed(FailureKind.NOT_FOUND, f"no log file {path}")
    except OSError as exc:
        return failed(FailureKind.ERROR, f"cannot read {path}: {exc.strerror or short(exc)}")
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file (a FIFO, socket or device)"
        return failed(FailureKind.ERROR, f"{path} is {what}, not a log file")
    handle = os.fdopen(fd, "rb")
    try:
        head = handle.read(64 * 1024)
        handle.seek(max(0, info.st_size - 64 * 1024))
        tail = handle.read(64 * 1024)
    except OSError as exc:
        handle.close()
        return failed(FailureKind.ERROR, f"cannot read {path}: {exc.strerror or short(exc)}")
    for sample in (head, tail):
        reason = binary_reason(sample)
        if reason is not None:
            handle.close()
            return failed(FailureKind.BAD_RESPONSE, f"{path} is a binary file, not a log ({reason})")
    return success(LogFile(path, handle, info.st_size))


# --------------------------------------------------------------------------- following a file
class LogReadError(Exception):
    """A log could not be read while scanning or following it (the message names it and why)."""


@dataclass(frozen=True)
class Notice:
    """Something the follower tells the reader (rotation, truncation, a missing file), not a log line."""

    text: str


class LineSplitter:
    """Bytes in, whole lines out; a line longer than MAX_LINE_BYTES keeps its start (``cut``) and the
    rest is dropped up to its newline, so memory stays bounded whatever arrives."""

    def __init__(self) -> None:
        self.pending = b""
        self.cut = False

    def feed(self, data: bytes) -> list[RawLine]:
        out, start = [], 0
        while (newline := data.find(b"\n", start)) >= 0:
            line = self.pending + data[start:newline] if self.pending else data[start:newline]
            if line.strip():
                out.append(RawLine(line[:MAX_LINE_BYTES], self.cut or len(line) > MAX_LINE_BYTES))
            self.pending, self.cut, start = b"", False, newline + 1
        if len(self.pending) < MAX_LINE_BYTES:
            self.pending += data[start:start + MAX_LINE_BYTES - len(self.pending) + 1]
        if len(self.pending) > MAX_LINE_BYTES:
            self.pending, self.cut = self.pending[:MAX_LINE_BYTES], True
        return out

    def flush(self) -> list[RawLine]:
        line, cut = self.pending, self.cut
        self.pending, self.cut = b"", False
        return [RawLine(line, cut)] if line.strip() else []


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def follow_file(path: Path, start: int | None = None, poll_s: float = 0.25,
                sleep: Any = None) -> Iterator[RawLine | Notice]:
    """``tail -F``: the lines appended to ``path`` from ``start`` (None: its end), forever.

    Survives rotation: when ``path`` names another file (renamed away and created again), the old
    one is read to its end, then the new one from its start; when the file shrinks below what was
    read (copytruncate), reading starts again at its beginning. A missing file is waited for.
    """
    import time

    wait = sleep or time.sleep
    handle: BinaryIO | None = None
    identity: tuple[int, int] | None = None
    splitter = LineSplitter()
    first, said_missing = True, False
    try:
        while True:
            if handle is None:
                try:
                    handle = path.open("rb")
                    info = os.fstat(handle.fileno())
                except FileNotFoundError:
                    first = False  # a file that appears later is read from its start
                    if not said_missing:
                        yield Notice(f"waiting for {path} to appear")
                        said_missing = True
                    wait(poll_s)
                    continue
                except OSError as exc:
                    raise LogReadError(f"cannot read {path}: {exc.strerror or short(exc)}") from None
                if not stat.S_ISREG(info.st_mode):
                    handle.close()
                    raise LogReadError(f"{path}: not a regular file")
                identity, said_missing = _identity(info), False
                if first:
                    handle.seek(info.st_size if start is None else min(start, info.st_size))
                first = False
            block = handle.read(SCAN_BLOCK)
            if block:
                yield from splitter.feed(block)
                continue
            try:
                now: os.stat_result | None = path.stat()
            except OSError:
                now = None  # renamed away, not created again yet: the writer may still append to ours
            if now is not None and _identity(now) != identity:
                for _ in range(64):  # what the writer added before it reopened (bounded)
                    rest = handle.read(SCAN_BLOCK)
                    if not rest:
                        break
                    yield from splitter.feed(rest)
                yield from splitter.flush()
                handle.close()
                handle = None
                yield Notice(f"{path} was rotated: reading the new file")
                continue
            if now is not None and now.st_size < handle.tell():
                handle.seek(0)
                splitter = LineSplitter()
                yield Notice(f"{path} was truncated: reading it from its start")
                continue
            wait(poll_s)
    finally:
        if handle is not None:
            handle.close()
