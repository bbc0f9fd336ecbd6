"""What a profile says, in the terms ``go tool pprof -top`` uses: per function, the *flat* value (samples
taken in that function itself) and the *cumulative* value (samples with that function anywhere on the
stack, counted once per sample), their shares of the total, and for goroutine profiles the count by
state and by the function each goroutine runs. :func:`compare` says what grew between two profiles.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

from es_doctor.profiles.proto import Profile, ProfileError

Kind = Literal["cpu", "heap", "goroutine"]
KINDS: tuple[Kind, ...] = ("cpu", "heap", "goroutine")
#: the value each kind is summarised by (``go tool pprof``'s default for that profile)
VALUE: dict[Kind, str] = {"cpu": "cpu", "heap": "inuse_space", "goroutine": "goroutine"}


@dataclass(frozen=True)
class Entry:
    function: str
    flat: int
    cum: int


@dataclass(frozen=True)
class Summary:
    kind: Kind
    sample_type: str
    unit: str
    total: int
    entries: tuple[Entry, ...]  #: every function, by flat (then cumulative, then name)
    duration_s: float = 0.0
    #: goroutine profiles: count by (inferred) state and by the function each goroutine runs
    states: tuple[tuple[str, int], ...] = ()
    started_in: tuple[tuple[str, int], ...] = ()

    def top(self, n: int, by: Literal["flat", "cum"] = "flat") -> tuple[Entry, ...]:
        if by == "flat":
            return self.entries[:n]
        return tuple(sorted(self.entries, key=lambda e: (-e.cum, -e.flat, e.function))[:n])

    def share(self, value: int) -> float:
        return 100.0 * value / self.total if self.total else 0.0


def kind_of(profile: Profile) -> Kind | None:
    """What kind of profile this is, from its sample types (None: none es-doctor summarises)."""
    names = {name for name, _unit in profile.sample_types}
    for kind in KINDS:
        if VALUE[kind] in names:
            return kind
    return None


def summarize(profile: Profile, kind: Kind | None = None) -> Summary:
    kind = kind or kind_of(profile)
    if kind is None:
        found = ", ".join(name for name, _ in profile.sample_types)
        raise ProfileError(f"not a cpu, heap or goroutine profile (sample types: {found})")
    index = profile.index(VALUE[kind])
    if index is None:
        found = ", ".join(name for name, _ in profile.sample_types)
        raise ProfileError(f"not a {kind} profile: no {VALUE[kind]} values (sample types: {found})")
    flat: Counter[str] = Counter()
    cum: Counter[str] = Counter()
    states: Counter[str] = Counter()
    started: Counter[str] = Counter()
    total = 0
    for sample in profile.samples:
        value = sample.values[index]
        if value == 0:
            continue
        total += value
        if sample.stack:
            flat[sample.stack[0]] += value
        for name in set(sample.stack):
            cum[name] += value
        if kind == "goroutine":
            states[goroutine_state(sample.stack)] += value
            started[entry_function(sample.stack)] += value
    entries = sorted((Entry(name, flat[name], cum[name]) for name in cum),
                     key=lambda e: (-e.flat, -e.cum, e.function))
    return Summary(kind, VALUE[kind], profile.sample_types[index][1], total, tuple(entries),
                   duration_s=profile.duration_nanos / 1e9,
                   states=tuple(sorted(states.items(), key=lambda kv: (-kv[1], kv[0]))),
                   started_in=tuple(sorted(started.items(), key=lambda kv: (-kv[1], kv[0]))))


def entry_function(stack: tuple[str, ...]) -> str:
    """The function a goroutine was started with (``go f()``): the outermost frame that is not the
    runtime's own; the outermost frame for the runtime's goroutines (GC workers, …)."""
    for name in reversed(stack):
        if not name.startswith("runtime."):
            return name
    return stack[-1] if stack else "(no stack)"


#: where a parked goroutine waits → the state Go's own dump prints (``goroutine 7 [chan receive]``)
_WAITS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("runtime.chanrecv", "runtime.chanrecv1", "runtime.chanrecv2"), "chan receive"),
    (("runtime.chansend", "runtime.chansend1"), "chan send"),
    (("runtime.selectgo",), "select"),
    (("runtime.block",), "select (no cases)"),
    (("runtime.netpollblock", "internal/poll.runtime_pollWait"), "IO wait"),
    (("sync.runtime_notifyListWait", "runtime.notifyListWait"), "sync.Cond.Wait"),
    (("sync.runtime_SemacquireMutex", "sync.runtime_SemacquireRWMutex", "sync.runtime_SemacquireRWMutexR",
      "sync.runtime_Semacquire", "runtime.semacquire1", "runtime.semacquire"), "semacquire"),
    (("time.Sleep", "runtime.timeSleep"), "sleep"),
    (("runtime.gcBgMarkWorker",), "GC worker (idle)"),
    (("runtime.bgsweep",), "GC sweep wait"),
    (("runtime.bgscavenge",), "GC scavenge wait"),
    (("runtime.forcegchelper",), "force gc (idle)"),
    (("runtime.runfinq",), "finalizer wait"),
)
_PARK = frozenset({"runtime.gopark", "runtime.goparkunlock", "runtime.park_m", "runtime.mcall"})


def goroutine_state(stack: tuple[str, ...]) -> str:
    """The goroutine's state, inferred from where it stands (the protobuf goroutine profile carries
    stacks, not states): parked in a channel receive reads ``chan receive``, as in Go's text dump."""
    if not stack:
        return "unknown"
    if stack[0] in ("runtime.notetsleepg", "runtime.entersyscallblock", "syscall.Syscall", "syscall.Syscall6",
                    "runtime/internal/syscall.Syscall6"):
        return "syscall"
    if stack[0] not in _PARK:
        return "running"
    for name in stack[1:]:
        for functions, state in _WAITS:
            if name in functions:
                return state
    return "waiting"


@dataclass(frozen=True)
class Change:
    function: str
    before: int
    after: int

    @property
    def delta(self) -> int:
        return self.after - self.before


@dataclass(frozen=True)
class Comparison:
    kind: Kind
    unit: str
    total_before: int
    total_after: int
    #: per function (the function goroutines run; where heap in use was allocated): grown first
    changes: tuple[Change, ...]

    def grew(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.delta > 0)


def compare(before: Summary, after: Summary) -> Comparison:
    """What grew from ``before`` to ``after`` (same kind): goroutines by the function they run, heap in
    use by the function that allocated it (flat)."""
    if before.kind != after.kind:
        raise ProfileError(f"cannot compare a {before.kind} profile with a {after.kind} profile")
    if after.kind == "cpu":
        raise ProfileError("--compare shows growth: it works on heap and goroutine profiles, not cpu")
    if after.kind == "goroutine":
        old, new = dict(before.started_in), dict(after.started_in)
    else:
        old = {e.function: e.flat for e in before.entries if e.flat}
        new = {e.function: e.flat for e in after.entries if e.flat}
    changes = [Change(name, old.get(name, 0), new.get(name, 0)) for name in set(old) | set(new)]
    changes.sort(key=lambda c: (-c.delta, c.function))
    return Comparison(after.kind, after.unit, before.total, after.total, tuple(changes))
