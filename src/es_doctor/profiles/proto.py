"""Go's pprof profile format (``profile.proto`` of github.com/google/pprof), read without a library.

A profile is a protobuf message, usually gzip-compressed. Only the fields a summary needs are read:
sample types, samples (location ids and values), locations (their lines), functions, the string
table, time, duration and period. The reader is a small protobuf wire-format decoder (varint,
64-bit, length-delimited and 32-bit fields; packed or unpacked repeated integers), bounded and
strict: any malformed input (truncated, a field of the wrong wire type, an index outside the string
table, a sample naming an unknown location) is a :class:`ProfileError`, never another exception.

Bounded in what it builds as well as in what it reads: a sample names at most
:data:`MAX_SAMPLE_LOCATIONS` locations, all stacks together hold at most :data:`MAX_TOTAL_FRAMES` frames,
a value is a non-negative 64-bit signed integer and so is the sum of a sample type's values, and a parse
stops after :data:`PARSE_CPU_BUDGET_S` CPU seconds (a small gzip of repeated ids would otherwise expand
into gigabytes of stacks).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

#: a profile larger than this once decompressed is refused (Go's own profiles are a few MiB)
MAX_DECOMPRESSED = 256 * 1024 * 1024
#: the most locations one sample may name (Go records at most 1024 frames: GODEBUG=profstackdepth's maximum)
MAX_SAMPLE_LOCATIONS = 1024
#: the most frames (inlined functions included) one sample's stack may hold once its locations are read
MAX_SAMPLE_FRAMES = 8 * MAX_SAMPLE_LOCATIONS
#: the most frames all samples together may hold: what a parse may build (~64 MiB of references)
MAX_TOTAL_FRAMES = 8_000_000
#: the largest sample value: a count or an amount is a non-negative signed 64-bit integer (as Go writes it)
MAX_VALUE = (1 << 63) - 1
#: CPU seconds a parse may spend (a 30 s profile of a busy service parses in well under one)
PARSE_CPU_BUDGET_S = 10.0
GZIP_MAGIC = b"\x1f\x8b"


class ProfileError(ValueError):
    """The data is not a readable pprof profile."""


@dataclass(frozen=True, slots=True)
class Sample:
    #: function names, leaf (where the sample was taken) first; inlined functions included
    stack: tuple[str, ...]
    values: tuple[int, ...]


@dataclass(frozen=True)
class Profile:
    #: (type, unit) per value of every sample, e.g. ("inuse_space", "bytes")
    sample_types: tuple[tuple[str, str], ...]
    samples: tuple[Sample, ...]
    time_nanos: int = 0
    duration_nanos: int = 0
    period_type: tuple[str, str] = ("", "")
    period: int = 0
    default_sample_type: str = ""
    comments: tuple[str, ...] = field(default=())

    def index(self, sample_type: str) -> int | None:
        """The index of the value named ``sample_type`` (None when the profile has none)."""
        for i, (name, _unit) in enumerate(self.sample_types):
            if name == sample_type:
                return i
        return None


# --------------------------------------------------------------------------- wire format

Buf = bytes | memoryview
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _varint(buf: Buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProfileError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProfileError("varint longer than 10 bytes")


def _signed(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(buf: Buf) -> Iterator[tuple[int, int, int | Buf]]:
    """(field number, wire type, value) of each field: an int, or the bytes of a length-delimited one."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProfileError("field number 0")
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == _I64:
            if pos + 8 > end:
                raise ProfileError("truncated 64-bit field")
            yield number, wire, int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wire == _LEN:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise ProfileError(f"field {number}: {size} bytes announced, {end - pos} left")
            yield number, wire, buf[pos:pos + size]
            pos += size
        elif wire == _I32:
            if pos + 4 > end:
                raise ProfileError("truncated 32-bit field")
            yield number, wire, int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise ProfileError(f"field {number}: unsupported wire type {wire}")


def _ints(wire: int, value: int | Buf) -> list[int]:
    """A repeated integer field's values: packed (length-delimited) or one unpacked varint."""
    if wire == _VARINT:
        assert isinstance(value, int)
        return [value]
    if wire != _LEN:
        raise ProfileError(f"repeated integer with wire type {wire}")
    assert not isinstance(value, int)
    return _packed(value)


def _packed(buf: Buf) -> list[int]:
    """Packed varints, decoded in one loop (samples hold most of a profile's integers)."""
    out: list[int] = []
    append = out.append
    value = shift = 0
    for byte in buf:
        if byte < 0x80:
            append(value | (byte << shift))
            value = shift = 0
        else:
            value |= (byte & 0x7F) << shift
            shift += 7
            if shift >= 70:
                raise ProfileError("varint longer than 10 bytes")
    if shift:
        raise ProfileError("truncated varint")
    return out


def _int(number: int, wire: int, value: int | Buf) -> int:
    if wire != _VARINT or not isinstance(value, int):
        raise ProfileError(f"field {number}: expected a varint, got wire type {wire}")
    return value


def _msg(number: int, wire: int, value: int | Buf) -> Buf:
    if wire != _LEN or isinstance(value, int):
        raise ProfileError(f"field {number}: expected a message, got wire type {wire}")
    return value


def _small(buf: Buf) -> dict[int, int]:
    """A message of scalar varint fields only (ValueType, Line, Function): last value wins."""
    out: dict[int, int] = {}
    for number, wire, value in _fields(buf):
        if wire == _VARINT:
            assert isinstance(value, int)
            out[number] = value
    return out


# --------------------------------------------------------------------------- the profile


def decompress(data: bytes, limit: int = MAX_DECOMPRESSED) -> bytes:
    """``data`` gunzipped when it is gzip (pprof's usual form), else as is; at most ``limit`` bytes."""
    if not data.startswith(GZIP_MAGIC):
        return data
    decoder = zlib.decompressobj(zlib.MAX_WBITS | 16)
    try:
        out = decoder.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ProfileError(f"bad gzip data: {exc}") from None
    if len(out) > limit:
        raise ProfileError(f"profile larger than {limit // (1024 * 1024)} MiB once decompressed")
    if not decoder.eof:
        raise ProfileError("truncated gzip data")
    return out


class _Budget:
    """The CPU time a parse may still spend (this thread's), checked every so often."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.until = time.thread_time() + seconds

    def check(self) -> None:
        if time.thread_time() > self.until:
            raise ProfileError(f"took more than {self.seconds:g} s of CPU to read: refused")


def parse(data: bytes, cpu_budget_s: float = PARSE_CPU_BUDGET_S) -> Profile:
    """The profile in ``data`` (gzip-compressed or not); :class:`ProfileError` when it is not one, or when
    reading it would pass the bounds above."""
    if not data:
        raise ProfileError("empty")
    budget = _Budget(cpu_budget_s)
    raw = memoryview(decompress(data))  # views, not copies, of each message
    sample_types: list[tuple[int, int]] = []
    raw_samples: list[Buf] = []  # decoded once the locations are known (they come after the samples)
    locations: dict[int, list[int]] = {}  # location id → function ids, innermost first
    functions: dict[int, int] = {}  # function id → name (string index)
    strings: list[str] = []
    scalars: dict[int, int] = {}
    period_type = (0, 0)
    comments: list[int] = []
    for seen, (number, wire, value) in enumerate(_fields(raw)):
        if not seen % 4096:
            budget.check()
        if number == 1:
            vt = _small(_msg(number, wire, value))
            sample_types.append((vt.get(1, 0), vt.get(2, 0)))
        elif number == 2:
            raw_samples.append(_msg(number, wire, value))
        elif number == 4:
            loc_id, funcs = _location(_msg(number, wire, value))
            locations[loc_id] = funcs
        elif number == 5:
            fn = _small(_msg(number, wire, value))
            functions[fn.get(1, 0)] = fn.get(2, 0)
        elif number == 6:
            try:
                strings.append(str(_msg(number, wire, value), "utf-8"))
            except UnicodeDecodeError:
                raise ProfileError("string table entry is not UTF-8") from None
        elif number in (9, 10, 12, 14):
            scalars[number] = _int(number, wire, value)
        elif number == 11:
            vt = _small(_msg(number, wire, value))
            period_type = (vt.get(1, 0), vt.get(2, 0))
        elif number == 13:
            comments.extend(_ints(wire, value))
    if not strings or strings[0] != "":
        raise ProfileError("no string table (or its first entry is not empty)")
    if not sample_types:
        raise ProfileError("no sample types")

    def text(index: int) -> str:
        if not 0 <= index < len(strings):
            raise ProfileError(f"string index {index} outside the table of {len(strings)}")
        return strings[index]

    names = {fid: text(sidx) for fid, sidx in functions.items()}
    stacks: dict[int, tuple[str, ...]] = {}
    for loc_id, funcs in locations.items():
        missing = [f for f in funcs if f not in names]
        if missing:
            raise ProfileError(f"location {loc_id} names unknown function {missing[0]}")
        stacks[loc_id] = tuple(names[f] for f in funcs)
    samples = []
    frames = 0
    totals = [0] * len(sample_types)
    for message in raw_samples:
        budget.check()
        loc_ids, values = _sample(message)
        if len(values) != len(sample_types):
            raise ProfileError(f"a sample has {len(values)} values for {len(sample_types)} sample types")
        stack: list[str] = []
        for loc in loc_ids:
            if loc not in stacks:
                raise ProfileError(f"a sample names unknown location {loc}")
            stack.extend(stacks[loc])
        if len(stack) > MAX_SAMPLE_FRAMES:
            raise ProfileError(f"a sample's stack has {len(stack)} frames (more than {MAX_SAMPLE_FRAMES})")
        frames += len(stack)
        if frames > MAX_TOTAL_FRAMES:
            raise ProfileError(f"the samples' stacks hold more than {MAX_TOTAL_FRAMES} frames in all: refused")
        for i, v in enumerate(values):
            if v > MAX_VALUE:
                raise ProfileError(f"a sample value is negative or larger than 2^63-1 ({_signed(v)})")
            totals[i] += v
            if totals[i] > MAX_VALUE:
                raise ProfileError("a sample type's values add up past 2^63-1: not a real profile")
        samples.append(Sample(tuple(stack), tuple(values)))
    default = scalars.get(14, 0)
    return Profile(
        sample_types=tuple((text(t), text(u)) for t, u in sample_types),
        samples=tuple(samples),
        time_nanos=_signed(scalars.get(9, 0)),
        duration_nanos=_signed(scalars.get(10, 0)),
        period_type=(text(period_type[0]), text(period_type[1])),
        period=_signed(scalars.get(12, 0)),
        default_sample_type=text(default) if default else "",
        comments=tuple(text(c) for c in comments),
    )


def _sample(buf: Buf) -> tuple[list[int], list[int]]:
    locs: list[int] = []
    values: list[int] = []
    for number, wire, value in _fields(buf):
        if number == 1:
            if not isinstance(value, int) and len(value) > 10 * MAX_SAMPLE_LOCATIONS:  # before decoding it
                raise ProfileError(f"a sample names more than {MAX_SAMPLE_LOCATIONS} locations")
            locs.extend(_ints(wire, value))
            if len(locs) > MAX_SAMPLE_LOCATIONS:
                raise ProfileError(f"a sample names more than {MAX_SAMPLE_LOCATIONS} locations")
        elif number == 2:
            values.extend(_ints(wire, value))
    return locs, values


def _location(buf: Buf) -> tuple[int, list[int]]:
    loc_id = 0
    funcs: list[int] = []
    for number, wire, value in _fields(buf):
        if number == 1:
            loc_id = _int(number, wire, value)
        elif number == 4:
            funcs.append(_small(_msg(number, wire, value)).get(1, 0))
    if loc_id == 0:
        raise ProfileError("a location without an id")
    return loc_id, funcs
