"""``es-doctor profile``'s core: fetch a profile from the target's ``pprof_url``, check it is one, save it,
summarise it, and compare it with an earlier one. The CLI only parses, shows progress and renders."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from es_doctor.errors import EsDoctorError, ExitStatus, UnavailableError
from es_doctor.profiles import store
from es_doctor.profiles.proto import ProfileError, parse
from es_doctor.profiles.summary import Comparison, Kind, Summary, compare, summarize
from es_doctor.secrets import clean

#: seconds a heap or goroutine profile may take; a CPU profile gets its duration plus this
FETCH_MARGIN_S = 30.0
ENABLE_HINT = ("enable profiling on the service: the guide's GO_PROFILE=true, which serves Go's net/http/pprof "
               "under /debug/pprof on the metrics port (:8081); or point this target's service.pprof_url at "
               "where it is served")


class NotAProfileError(EsDoctorError):
    """The server answered, but not with a pprof profile (exit 69: the service is not what it should be)."""

    exit_status = ExitStatus.UNAVAILABLE


@dataclass(frozen=True)
class Captured:
    url: str
    path: Path
    summary: Summary


def profile_url(pprof_url: str, kind: Kind, seconds: int) -> str:
    """The endpoint of ``kind`` under ``pprof_url``. The heap is asked with ``gc=1`` (a collection
    first) so that its in-use figures are current, not those of the last cycle."""
    base = pprof_url.rstrip("/")
    return {"cpu": f"{base}/profile?seconds={seconds}", "heap": f"{base}/heap?gc=1",
            "goroutine": f"{base}/goroutine"}[kind]


def fetch_timeout(kind: Kind, seconds: int) -> float:
    return seconds + FETCH_MARGIN_S if kind == "cpu" else FETCH_MARGIN_S


def fetch(pprof_url: str, kind: Kind, seconds: int, cancel: threading.Event | None = None) -> tuple[str, bytes]:
    """The profile's bytes, checked to be a readable profile of ``kind``; UnavailableError or
    NotAProfileError (with the cure) otherwise."""
    from es_doctor.probes import pprof
    from es_doctor.probes.result import FailureKind

    url = profile_url(pprof_url, kind, seconds)
    result = pprof.fetch(url, timeout=fetch_timeout(kind, seconds), cancel=cancel)
    if cancel is not None and cancel.is_set():
        raise KeyboardInterrupt
    if result.failure is not None:
        failure = result.failure
        if failure.kind is FailureKind.NOT_FOUND:
            raise UnavailableError(clean(f"{failure.message}\nno pprof endpoint there: {ENABLE_HINT}"))
        if failure.kind in (FailureKind.REFUSED, FailureKind.TIMEOUT):
            raise UnavailableError(clean(f"pprof endpoint unreachable: {failure.message} (is the service up? "
                                         "es-doctor diagnose --class startup)"))
        raise UnavailableError(clean(f"pprof endpoint failed: {failure.message}"))
    body = result.unwrap()
    try:
        summarize(parse(body.data), kind)
    except ProfileError as exc:
        is_text, sent = describe(body.data, body.content_type)
        why = "" if is_text else f" ({exc})"  # text speaks for itself; binary gets the parser's reason
        raise NotAProfileError(clean(f"GET {url} did not answer a Go pprof {kind} profile{why}; it sent {sent}")) \
            from None
    return url, body.data


def describe(data: bytes, content_type: str) -> tuple[bool, str]:
    """What a server sent instead of a profile, in a few words (its first line when it is text), and
    whether it is text."""
    kind = content_type.split(";", maxsplit=1)[0].strip() or "no content type"
    if not data:
        return False, f"{kind}, an empty body"
    try:
        text = data[:400].decode("utf-8")
    except UnicodeDecodeError:
        text = "\x00"
    if "\x00" in text:
        return False, f"{kind}, {len(data)} bytes of binary data"
    lines = text.strip().splitlines()
    return True, f"{kind}, {len(data)} bytes: {(lines[0][:200] if lines else '')!r}"


def capture(state_dir: str, target_name: str, pprof_url: str, kind: Kind, seconds: int = 30,
            cancel: threading.Event | None = None) -> Captured:
    """Fetch, save (never overwriting; nothing saved unless complete and readable) and summarise."""
    url, data = fetch(pprof_url, kind, seconds, cancel)
    if cancel is not None and cancel.is_set():  # Ctrl-C as the answer arrived: keep nothing
        raise KeyboardInterrupt
    path = store.save(state_dir, target_name, kind, data)
    return Captured(url, path, summarize(parse(data), kind))


def load_saved(path: Path, kind: Kind) -> Summary:
    """A saved (or any) profile file, summarised as ``kind``; EsDoctorError (exit 65) when unreadable."""
    from es_doctor.files import RefusedFileError, read_regular_file

    try:  # a FIFO or device given as --compare is refused, not waited on
        data = read_regular_file(path, store.MAX_FILE)
    except RefusedFileError as exc:
        if exc.too_large:
            raise EsDoctorError(f"{path}: larger than {store.MAX_FILE // (1024 * 1024)} MiB: not a profile "
                                "es-doctor saved", exit_status=ExitStatus.DATA) from None
        raise EsDoctorError(f"{path}: {exc.why}", exit_status=ExitStatus.DATA) from None
    try:
        return summarize(parse(data), kind)
    except ProfileError as exc:
        raise EsDoctorError(clean(f"{path}: not a readable {kind} profile: {exc}"),
                            exit_status=ExitStatus.DATA) from None


def compare_with(before: Summary, current: Summary) -> Comparison:
    try:
        return compare(before, current)
    except ProfileError as exc:
        raise EsDoctorError(str(exc), exit_status=ExitStatus.USAGE) from None
