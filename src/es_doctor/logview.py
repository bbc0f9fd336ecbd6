"""``es-doctor logs``: the service's JSON log lines, filtered, grouped into patterns, or followed.

The guide's ``jq 'select(.level == "ERROR")'``, ``grep ERROR | awk | sort | uniq -c | sort -nr`` and
``tail -f | grep --color ERROR\\|WARN``. The reading itself (big files from the end, rotation, the
container's log stream) is in :mod:`es_doctor.probes.logs` and :mod:`es_doctor.probes.docker`; this
module turns lines into entries, filters them and groups them.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from es_doctor.errors import EsDoctorError, ExitStatus
from es_doctor.loglevels import LEVEL_CHOICES, LEVEL_RANK, level_rank
from es_doctor.probes.logs import (
    MAX_LINE_BYTES,
    PROBE_WINDOW,
    LineSplitter,
    LogFile,
    Notice,
    RawLine,
    follow_file,
    iso_epoch,
    line_epoch,
    open_log,
)
from es_doctor.probes.result import FailureKind
from es_doctor.secrets import clean, mask_data
from es_doctor.units import DURATION_EXAMPLES, DurationError, parse_duration, utc_iso

if TYPE_CHECKING:
    from es_doctor.probes.docker import DockerProbe

__all__ = ["LEVEL_CHOICES", "LEVEL_RANK", "level_rank"]
#: the fields of the guide's log format, in the order they are shown
FIELDS = ("timestamp", "level", "component", "message", "error", "request_id", "user_id", "duration_ms")
#: distinct patterns kept; further ones are counted together (memory stays flat on any log)
MAX_PATTERNS = 5000
#: the default window of --patterns (a whole 1 GiB log is `--since all`)
PATTERNS_DEFAULT_SINCE = "1h"

Kind = Literal["json", "truncated", "text"]


class SinceError(ValueError):
    pass


def parse_since(text: str, now: float | None = None) -> float | None:
    """``15m``, ``1h30m``, ``2d``, ``90s`` (ago), an ISO time (``2026-11-29T10:00:00Z``), or ``all``
    (None: no lower bound) → seconds since the epoch."""
    value = text.strip().lower()
    if value in ("all", "0"):
        return None
    now = time.time() if now is None else now
    expected = (f"--since {text!r}: expected a duration ({DURATION_EXAMPLES}, 1d), "
                "an ISO time (2026-11-29T10:00:00Z) or 'all'")
    if re.match(r"\d{4}-\d{2}-\d{2}", value):
        stamp = iso_epoch(text)
        if stamp is None:
            raise SinceError(expected)
        return stamp
    if value.replace(".", "", 1).isdigit():  # a bare number: seconds? minutes? the operator says which
        raise SinceError(expected)
    try:
        seconds = parse_duration(value)
    except DurationError:
        raise SinceError(expected) from None
    if seconds <= 0:
        raise SinceError(f"--since {text!r}: a duration must be positive (e.g. 15m)")
    return now - seconds


def iso(stamp: float | None) -> str:
    if stamp is None:
        return ""
    return utc_iso(stamp, ms=True)


@dataclass(frozen=True)
class Entry:
    """One log line: a JSON record (``data``), a truncated JSON line, or other text."""

    text: str
    kind: Kind
    data: dict[str, Any] | None = None
    cut: bool = False
    #: the line's own timestamp, else the engine's (docker), else None
    stamp: float | None = None

    def field(self, key: str) -> str:
        if self.data is None:
            return ""
        value = self.data.get(key)
        return "" if value is None else value if isinstance(value, str) else json.dumps(value)

    @property
    def level(self) -> str:
        if self.data is not None:
            word = self.field("level").upper()
            return "WARN" if word == "WARNING" else word
        for word in ("FATAL", "PANIC", "ERROR", "WARN", "INFO", "DEBUG"):
            if word in self.text:
                return word
        return ""


def to_entry(line: RawLine, engine_stamp: float | None = None) -> Entry:
    text = line.text()
    stripped = text.lstrip()
    if stripped.startswith("{") and not line.cut:
        try:
            data = json.loads(stripped)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            own = data.get("timestamp")
            stamp = iso_epoch(own) if isinstance(own, str) else None
            return Entry(text, "json", data, False, stamp if stamp is not None else engine_stamp)
    kind: Kind = "truncated" if stripped.startswith("{") else "text"
    return Entry(text, kind, None, line.cut, engine_stamp)


_LEVEL_KEY = re.compile(rb'"level"\s*:\s*"([A-Za-z]{1,10})"')


def to_entry_below(line: RawLine, min_level: int, engine_stamp: float | None = None) -> Entry:
    """:func:`to_entry`, except that a JSON line whose level is below ``min_level`` (read with a regex
    from its first 512 bytes) is not parsed: it is counted as a record that cannot match (``data``
    None). Most lines of a log are below ERROR; this is where a window's time goes."""
    if min_level and not line.cut:
        found = _LEVEL_KEY.search(line.data, 0, 512)
        if found is not None and level_rank(found.group(1).decode("ascii")) < min_level:
            body = line.data.strip()
            if body.startswith(b"{") and body.endswith(b"}"):
                own = line_epoch(line.data)
                return Entry("", "json", None, False, own if own is not None else engine_stamp)
    return to_entry(line, engine_stamp)


@dataclass(frozen=True)
class Query:
    """What to keep: a minimum level, components (case-insensitive), lines at or after ``since``, and
    whether lines that are not JSON records are shown (``raw``)."""

    min_level: int = 0
    components: frozenset[str] = frozenset()
    since: float | None = None
    raw: bool = False

    def in_window(self, entry: Entry) -> bool:
        return self.since is None or entry.stamp is None or entry.stamp >= self.since

    def wants(self, entry: Entry) -> bool:
        if entry.kind == "json" and entry.data is None:  # below the level: not even parsed
            return False
        if entry.kind != "json":
            if not self.raw or self.components:
                return False
        elif self.components and entry.field("component").lower() not in self.components:
            return False
        return not self.min_level or level_rank(entry.level) >= self.min_level


@dataclass
class Counts:
    read: int = 0  #: lines in the window
    json: int = 0
    truncated: int = 0
    text: int = 0
    cut: int = 0  #: longer than the line cap (kept: their start)
    matched: int = 0  #: kept by the query

    def add(self, entry: Entry) -> None:
        self.read += 1
        if entry.kind == "json":
            self.json += 1
        elif entry.kind == "truncated":
            self.truncated += 1
        else:
            self.text += 1
        if entry.cut:
            self.cut += 1


# --------------------------------------------------------------------------- normalisation
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "<email>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"\[[0-9a-f:]*:[0-9a-f:]+\](?::\d+)?", re.I), "<ip:port>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}:\d{1,5}\b"), "<ip:port>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), "<ip>"),
    (re.compile(r"\b(?:localhost|[a-z][\w-]*(?:\.[\w-]+)+):\d{2,5}\b", re.I), "<host:port>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<hex>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.I), "<hex>"),
    (re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h)(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m))*\b"), "<dur>"),
    (re.compile(r"\b[a-z]+[-_]\d+[\w-]*\b", re.I), "<id>"),
    (re.compile(r"(?<![\w<])[-+]?\d+(?:\.\d+)?(?![\w>])"), "<n>"),
)


def normalise(message: str) -> str:
    """The shape of a message: ids, UUIDs, e-mail and IP:port addresses, times, durations, hex values
    and numbers replaced by placeholders (``<id>``, ``<uuid>``, ``<ip:port>``, ``<dur>``, ``<hex>``,
    ``<n>``…), whitespace collapsed, cut at 300 characters."""
    text = message[:2000]
    for pattern, placeholder in _RULES:
        text = pattern.sub(placeholder, text)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:299] + "…"


@dataclass
class Pattern:
    component: str
    pattern: str
    level: str
    count: int = 0
    first: float | None = None
    last: float | None = None
    request_id: str = ""
    sample: str = ""
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "level": self.level, "component": self.component, "pattern": self.pattern,
                "first_seen": iso(self.first), "last_seen": iso(self.last), "sample_request_id": self.request_id,
                "sample_message": self.sample, "sample_error": self.error}


@dataclass
class Patterns:
    """Errors grouped by component and normalised message, with count, first/last seen, one sample."""

    groups: dict[tuple[str, str], Pattern] = field(default_factory=dict)
    overflow: int = 0  #: lines of patterns beyond MAX_PATTERNS

    def add(self, entry: Entry) -> None:
        component = entry.field("component") or "-"
        message = entry.field("message") or entry.field("msg") or entry.field("error")
        key = (component, normalise(message))
        group = self.groups.get(key)
        if group is None:
            if len(self.groups) >= MAX_PATTERNS:
                self.overflow += 1
                return
            group = self.groups[key] = Pattern(component, key[1], entry.level or "-")
        group.count += 1
        if level_rank(entry.level) > level_rank(group.level):
            group.level = entry.level
        stamp = entry.stamp
        if stamp is not None:
            group.first = stamp if group.first is None else min(group.first, stamp)
            group.last = stamp if group.last is None else max(group.last, stamp)
        if not group.sample:
            group.sample, group.error = message[:500], entry.field("error")[:500]
        if not group.request_id:
            group.request_id = entry.field("request_id")[:200]

    def rows(self) -> list[Pattern]:
        return sorted(self.groups.values(), key=lambda p: (-p.count, -(p.last or 0.0), p.component, p.pattern))


# --------------------------------------------------------------------------- scans
@dataclass
class Scan:
    """The outcome of reading a window: kept entries (the newest ``limit``), or patterns, and counts."""

    counts: Counts = field(default_factory=Counts)
    entries: deque[Entry] = field(default_factory=deque)
    patterns: Patterns | None = None
    notes: list[str] = field(default_factory=list)


def collect(entries: Iterable[Entry], query: Query, limit: int, patterns: bool) -> Scan:
    """Read every entry of the window once: count it, and keep the newest ``limit`` matches (or group
    them). Memory: ``limit`` entries, or at most MAX_PATTERNS groups."""
    scan = Scan(entries=deque(maxlen=max(1, limit)), patterns=Patterns() if patterns else None)
    for entry in entries:
        if not query.in_window(entry):
            continue
        scan.counts.add(entry)
        if not query.wants(entry):
            continue
        scan.counts.matched += 1
        if scan.patterns is not None:
            if entry.kind == "json":
                scan.patterns.add(entry)
        else:
            scan.entries.append(entry)
    return scan


def collect_newest(entries_newest_first: Iterator[Entry], query: Query, limit: int) -> Scan:
    """The newest ``limit`` matching entries of a log read backwards: stops as soon as it has them."""
    scan = Scan(entries=deque())
    for entry in entries_newest_first:
        scan.counts.add(entry)
        if query.wants(entry):
            scan.counts.matched += 1
            scan.entries.appendleft(entry)
            if len(scan.entries) >= limit:
                break
    return scan


# --------------------------------------------------------------------------- docker's log stream
_ENGINE_STAMP = re.compile(rb"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2}) ")


def engine_split(line: RawLine) -> tuple[int | None, RawLine]:
    """A ``docker logs --timestamps`` line → (its engine time in ns since the epoch, the line itself)."""
    match = _ENGINE_STAMP.match(line.data)
    if match is None:
        return None, line
    seconds = iso_epoch(match.group(1).decode() + match.group(3).decode())
    if seconds is None:
        return None, line
    nanos = int((match.group(2) or b"0").decode().ljust(9, "0"))
    return int(seconds) * 1_000_000_000 + nanos, RawLine(line.data[match.end():], line.cut)


# --------------------------------------------------------------------------- sources
#: docker source: the newest lines asked of the engine, the bytes read, the time spent (non-follow)
DOCKER_TAIL = 100_000
DOCKER_MAX_BYTES = 64 * 1024 * 1024
DOCKER_DEADLINE_S = 60.0


def _unavailable(message: str) -> EsDoctorError:
    return EsDoctorError(message, exit_status=ExitStatus.UNAVAILABLE)


def open_file(path: Path) -> LogFile:
    opened = open_log(path)
    if opened.failure is not None:
        status = ExitStatus.DATA if opened.failure.kind is FailureKind.BAD_RESPONSE else ExitStatus.UNAVAILABLE
        raise EsDoctorError(opened.failure.message, exit_status=status)
    return opened.unwrap()


def scan_file(path: Path, query: Query, limit: int, patterns: bool) -> Scan:
    """A window of a log file: from the first line at ``query.since`` (binary search, then forward),
    or, without a window, its newest ``limit`` matching lines (read backwards)."""
    log = open_file(path)
    try:
        if patterns or query.since is not None:
            if query.since is not None and not log.stamped():
                raise EsDoctorError(f"{path}: its last {PROBE_WINDOW // 1024} KiB hold no JSON line with a "
                                    "timestamp, so --since cannot find a window in it (try --since all, or "
                                    "-n N --raw without --since)", exit_status=ExitStatus.DATA)
            offset = log.offset_since(query.since) if query.since is not None else 0
            return collect((to_entry_below(line, query.min_level) for line in log.lines_from(offset)), query, limit,
                           patterns)
        return collect_newest((to_entry(line) for line in log.lines_backward()), query, limit)
    except OSError as exc:
        raise _unavailable(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        log.close()


def _stream_lines(stream: Iterable[bytes], max_bytes: int | None, deadline: float | None,
                  notes: list[str]) -> Iterator[RawLine]:
    splitter, read = LineSplitter(), 0
    for chunk in stream:
        read += len(chunk)
        yield from splitter.feed(chunk)
        if max_bytes is not None and read >= max_bytes:
            notes.append(f"stopped after {read // (1024 * 1024)} MiB of docker logs (narrow --since)")
            return
        if deadline is not None and time.monotonic() > deadline:
            notes.append(f"stopped after {DOCKER_DEADLINE_S:.0f} s reading docker logs (narrow --since)")
            return
    yield from splitter.flush()


def scan_docker(probe: DockerProbe, container: str, query: Query, limit: int, patterns: bool) -> Scan:
    """``docker logs --since --tail`` of the container, at most DOCKER_MAX_BYTES, within DOCKER_DEADLINE_S."""
    opened = probe.log_stream(container, since=query.since, tail=DOCKER_TAIL)
    if opened.failure is not None:
        raise _unavailable(f"cannot read docker logs of {container}: {opened.failure}")
    stream = opened.unwrap()
    notes: list[str] = []
    try:
        lines = _stream_lines(stream, DOCKER_MAX_BYTES, time.monotonic() + DOCKER_DEADLINE_S, notes)
        entries = (to_entry_below(line, query.min_level, None if ns is None else ns / 1e9)
                   for ns, line in map(engine_split, lines))
        scan = collect(entries, query, limit, patterns)
    finally:
        stream.close()
    if stream.failure is not None:
        raise _unavailable(f"docker logs of {container} broke off: {stream.failure}")
    scan.notes.extend(notes)
    return scan


def follow_docker(probe: DockerProbe, container: str, since: float | None, poll_s: float = 1.0,
                  sleep: Any = time.sleep) -> Iterator[Entry | Notice]:
    """``docker logs --follow``, forever: a stream that ends (a quiet log's read timeout, a restarted
    container, an engine that went away) is opened again from the last line seen, without repeats."""
    last_ns = int((time.time() if since is None else since) * 1e9)
    said = ""
    while True:
        opened = probe.log_stream(container, since=last_ns / 1e9, follow=True)
        if opened.failure is not None:
            if str(opened.failure) != said:
                said = str(opened.failure)
                yield Notice(f"docker logs of {container}: {said} (retrying)")
            sleep(poll_s)
            continue
        if said:
            said = ""
            yield Notice(f"docker logs of {container}: reading again")
        stream = opened.unwrap()
        try:
            for ns, line in map(engine_split, _stream_lines(stream, None, None, [])):
                if ns is not None:
                    if ns <= last_ns:
                        continue  # already shown before the stream was opened again
                    last_ns = ns
                yield to_entry(line, None if ns is None else ns / 1e9)
        finally:
            stream.close()
        sleep(min(poll_s, 0.2))


def follow_path(path: Path, since: float | None, query: Query, backlog: int) -> Iterator[Entry | Notice]:
    """The last ``backlog`` matching lines (or those since ``since``), then ``tail -F`` of the file."""
    log = open_file(path)
    try:
        if since is not None:
            start = log.offset_since(since)
        else:
            start = log.size
            yield from collect_newest((to_entry(line) for line in log.lines_backward()), query, backlog).entries
    finally:
        log.close()
    for item in follow_file(path, start):
        yield item if isinstance(item, Notice) else to_entry(item)


# --------------------------------------------------------------------------- presentation
def entry_dict(entry: Entry, secrets: list[str]) -> dict[str, Any]:
    """An entry for ``--format json``: its record (secrets masked, control characters removed), or
    the raw text of a line that is not one."""
    if entry.data is not None:
        record = mask_data(entry.data, secrets)
        out: dict[str, Any] = {k: clean(v, secrets) if isinstance(v, str) else v for k, v in record.items()}
        return out
    return {"kind": entry.kind, "raw": clean(entry.text, secrets), "cut": entry.cut,
            "engine_timestamp": iso(entry.stamp) or None}


def entry_parts(entry: Entry, secrets: list[str]) -> list[tuple[str, str]]:
    """An entry as (text, role) pieces for one line of output: role ``level:<LEVEL>``, ``dim``, ``""``."""
    if entry.data is None:
        tag = "[truncated] " if entry.kind == "truncated" else "[raw] "
        return [(tag, "dim"), (clean(entry.text, secrets) + (" …(cut)" if entry.cut else ""), "")]
    level = entry.level or "-"
    parts = [(entry.field("timestamp") or iso(entry.stamp) or "-", "dim"), (" ", ""),
             (f"{level:<5}", f"level:{level}"), (" ", ""), (entry.field("component") or "-", "bold"),
             ("  ", ""), (clean(entry.field("message"), secrets), "")]
    for key in ("error", "request_id", "user_id", "duration_ms"):
        value = entry.field(key)
        if value:
            shown = json.dumps(value) if key == "error" else value
            parts.append((f"  {key}=", "dim"))
            parts.append((clean(shown, secrets), ""))
    if entry.cut:
        parts.append((" …(cut)", "dim"))
    return parts


def summary(counts: Counts, shown: int, what: str, raw: bool) -> str:
    """One line for stderr: how much was read and what was left out."""
    text = f"{counts.read} line(s) read {what}: {shown} shown"
    hidden = []
    if counts.text:
        hidden.append(f"{counts.text} not JSON")
    if counts.truncated:
        hidden.append(f"{counts.truncated} truncated JSON")
    if counts.cut:
        hidden.append(f"{counts.cut} longer than {MAX_LINE_BYTES // 1024} KiB (cut)")
    if hidden:
        text += "; " + ", ".join(hidden) + ("" if raw else " (--raw shows them)")
    return text
