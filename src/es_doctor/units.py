"""Units, once: durations (read and written), sizes, percents, plain numbers, and UTC stamps.

Every duration an operator types (``logs --since``, ``load --duration``, ``serve --interval``,
``diagnose --watch``, durations in es-doctor.yaml, the lab's config) is read by :func:`parse_duration`;
every number shown to a human goes through one of the ``format_*`` functions (``230 MiB``, ``48 ms``,
``0.71 %``: never ``1e+03`` nor ``241664000 B``); every UTC stamp is written by one of the ``utc_*``
functions.
"""

from __future__ import annotations

import datetime as dt
import math
import re

#: seconds per duration unit (Go's units, plus days and weeks for windows such as ``--since 2d``)
DURATION_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0,
                                    "w": 604800.0}
DURATION_EXAMPLES = "90s, 1m30s, 1h30m, 500ms"
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


class DurationError(ValueError):
    """Not a duration; the message names the text and gives examples."""


def parse_duration(text: str | float, *, name: str | None = None) -> float:
    """Seconds from ``90s``, ``1m30s``, ``1h30m``, ``500ms``, ``1.5m``, ``2d`` or a bare number (seconds).

    Parts may be separated by spaces (``1h 30m``); units are case-insensitive. A negative, empty or
    unknown value raises :class:`DurationError` (``name`` is the option or key it came from, for the
    message). Zero is returned as 0.0: callers that need a positive value say so themselves.
    """
    if isinstance(text, bool):
        raise DurationError(_message(str(text), name))
    if isinstance(text, int | float):
        if not math.isfinite(text) or text < 0:
            raise DurationError(_message(str(text), name))
        return float(text)
    value = str(text).strip()
    if _NUMBER.fullmatch(value):
        return float(value)
    parts = _PART.findall(value)
    if not parts or _PART.sub("", value).strip() != "":
        raise DurationError(_message(value, name))
    return sum(float(number) * DURATION_UNITS[unit.lower()] for number, unit in parts)


def parse_duration_or(value: object, default: float) -> float:
    """:func:`parse_duration` that returns ``default`` for None or a value it cannot read (lenient
    configuration files, as the Go service reads its own)."""
    if value is None or not isinstance(value, str | int | float):
        return default
    try:
        return parse_duration(value)
    except DurationError:
        return default


def _message(text: str, name: str | None) -> str:
    where = f"{name}: " if name else ""
    return f"{where}not a duration: {text!r} (e.g. {DURATION_EXAMPLES})"


def go_duration(seconds: float) -> str:
    """The compact form that :func:`parse_duration`, Go and Prometheus all read: ``1h30m``, ``90s`` is
    written ``1m30s``, ``500ms``; whole milliseconds."""
    total_ms = round(seconds * 1000)
    if total_ms <= 0:
        return "0s"
    out = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, total_ms = divmod(total_ms, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def format_number(value: float) -> str:
    """A plain number for a human: whole above 100, one decimal above 10, two below (four below
    0.01), trailing zeros dropped, never an exponent (``1000``, ``12.5``, ``0.07``, ``3``)."""
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    size = abs(value)
    if size >= 100 or value.is_integer():
        return "0" if value == 0 else f"{value:.0f}"
    if size >= 10:
        text = f"{value:.1f}"
    elif size >= 0.01:
        text = f"{value:.2f}"
    else:
        text = f"{value:.4f}"
    text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def format_percent(value: float) -> str:
    """A percentage (already in percent): ``0.71 %``, ``5 %``, ``100 %``."""
    return f"{format_number(value)} %"


_SIZES = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(count: float) -> str:
    """A size in IEC units: ``512 B``, ``1.5 KiB``, ``230 MiB``, ``1.2 GiB``."""
    value = float(count)
    for unit in _SIZES:
        if abs(value) < 1024 or unit == _SIZES[-1]:
            return f"{value:.0f} B" if unit == "B" else f"{format_number(value)} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """A duration for a human: ``0.4 ms``, ``48 ms``, ``1.5 s``, ``2 min 30 s``, ``1 h 30 min``, ``2 d 3 h``."""
    if not math.isfinite(seconds):
        return str(seconds)
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    if seconds < 1:
        return f"{sign}{format_number(seconds * 1000)} ms"
    if seconds < 60:
        return f"{sign}{format_number(seconds)} s"
    whole = round(seconds)
    for big, big_name, small, small_name in ((86400, "d", 3600, "h"), (3600, "h", 60, "min"), (60, "min", 1, "s")):
        if whole >= big:
            major, rest = divmod(whole, big)
            minor = rest // small
            return f"{sign}{major} {big_name}" + (f" {minor} {small_name}" if minor else "")
    raise AssertionError("unreachable")


def format_ms(milliseconds: float) -> str:
    """:func:`format_duration` of a value in milliseconds."""
    return format_duration(milliseconds / 1000)


#: units (as evidence and metrics name them) and how each is written
_BY_UNIT = {"ms": format_ms, "s": format_duration, "seconds": format_duration, "%": format_percent,
            "percent": format_percent, "B": format_bytes, "bytes": format_bytes}


def format_value(value: object, unit: str | None = None) -> str:
    """``value`` in ``unit`` for a human (``format_value(241664000, "bytes")`` is ``230 MiB``); a value that is
    not a number is returned as text, with its unit."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        text = "" if value is None else str(value)
        return f"{text} {unit}" if unit and text else text
    if unit in _BY_UNIT:
        return _BY_UNIT[unit](value)
    return f"{format_number(value)} {unit}" if unit else format_number(value)


Moment = float | dt.datetime | None


def _utc(when: Moment) -> dt.datetime:
    if when is None:
        return dt.datetime.now(dt.UTC)
    if isinstance(when, dt.datetime):
        return when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(when, dt.UTC)


def utc_stamp(when: Moment = None) -> str:
    """The stamp in file and directory names: ``20261207T030853Z`` (sorts as it reads)."""
    return _utc(when).strftime("%Y%m%dT%H%M%SZ")


def parse_utc_stamp(text: str) -> dt.datetime:
    """The time a :func:`utc_stamp` names (``ValueError`` for text it could not have written)."""
    return dt.datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)


def utc_iso(when: Moment = None, *, ms: bool = False) -> str:
    """ISO 8601 in UTC with a ``Z``: ``2026-12-07T03:08:53Z`` (``ms``: ``2026-12-07T03:08:53.123Z``)."""
    moment = _utc(when)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{moment.microsecond // 1000:03d}Z" if ms else f"{text}Z"


def utc_display(when: Moment = None) -> str:
    """A UTC time for a page or a table: ``2026-12-07 03:08:53 UTC``."""
    return _utc(when).strftime("%Y-%m-%d %H:%M:%S UTC")
