"""The typed outcome of a probe call."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class FailureKind(StrEnum):
    REFUSED = "refused"  #: nothing listens / connection refused or reset
    TIMEOUT = "timeout"  #: no answer within the probe's timeout
    NOT_FOUND = "not-found"  #: 404 / no such container, collection, file
    HTTP_ERROR = "http-error"  #: an HTTP status other than 2xx/404
    BAD_RESPONSE = "bad-response"  #: answered, but not what the contract says (bad JSON, shape)
    AUTH = "auth"  #: credentials refused
    UNAVAILABLE = "unavailable"  #: the component is not configured or its SDK/engine is absent
    ERROR = "error"  #: anything else, with the message


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    message: str
    status_code: int | None = None

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.message}"


@dataclass(frozen=True)
class Result(Generic[T]):
    value: T | None = None
    failure: Failure | None = None
    elapsed_ms: float = 0.0
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failure is None

    def unwrap(self) -> T:
        """The value; only call after checking ``ok``."""
        if self.failure is not None or self.value is None:
            raise ValueError(f"probe failed: {self.failure}")
        return self.value


def success(value: T, elapsed_ms: float = 0.0) -> Result[T]:
    return Result(value=value, elapsed_ms=elapsed_ms)


def failed(kind: FailureKind, message: str, *, status_code: int | None = None, elapsed_ms: float = 0.0) -> Result[T]:
    return Result(failure=Failure(kind, message, status_code), elapsed_ms=elapsed_ms)


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000.0


def guarded(classify: Callable[[BaseException], Failure], fn: Callable[[], T]) -> Result[T]:
    """Run ``fn``; any exception becomes a failure via ``classify`` (never raises)."""
    watch = Stopwatch()
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001 - the probe boundary: nothing escapes
        failure = classify(exc)
        return Result(failure=failure, elapsed_ms=watch.ms)
    return Result(value=value, elapsed_ms=watch.ms)


def short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class MarkedCleanup:
    """What a load test's cleanup did in one store: ``removed`` records carried both one of the run's ids and
    its marker; ``id_without_marker`` records had one of the ids but not the marker (someone else's record
    behind an id the API answered: kept), ``marker_without_id`` records had the marker but no id of the run
    (a creation whose id was never answered, or a record copied by hand: kept). Both are reported, never
    deleted."""

    removed: int
    id_without_marker: int = 0
    marker_without_id: int = 0
    note: str = ""
