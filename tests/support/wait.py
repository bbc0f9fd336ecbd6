"""One wait: ``eventually(condition, ...)`` polls until the condition holds, or fails saying what it waited for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.5,
               message: str | Callable[[], str] = "",
               *, ignoring: tuple[type[BaseException], ...] = ()) -> T:
    """Call ``condition`` every ``interval`` seconds until it returns a true value, and return that value.

    An exception of a type in ``ignoring`` counts as "not yet" (a server still starting); any other
    propagates. After ``timeout`` seconds the test fails with ``message`` (or what ``message()`` says
    then: e.g. the last reading), the last value and the last ignored error. The condition is always
    tried once more at the deadline, so a slow machine that got there late still passes.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    error: BaseException | None = None
    while True:
        expired = time.monotonic() >= deadline
        try:
            value = condition()
        except ignoring as exc:
            error = exc
        else:
            if value:
                return value
            last, error = value, None
        if expired:
            detail = f"; last error: {error!r}" if error is not None else f"; last value: {last!r}"
            what = message() if callable(message) else message
            raise AssertionError(f"not within {timeout:g} s: {what or getattr(condition, '__name__', 'condition')}"
                                 f"{detail}")
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
