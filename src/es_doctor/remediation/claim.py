"""One run per request across ``serve`` instances: a PostgreSQL advisory lock on the target's own database,
keyed by the request id (which every instance derives alike), held from the last check through the run
and its verification. The instance that cannot take it records that the cure runs elsewhere; one that takes
it after the other finished checks the finding again first, and finds it cleared."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

#: the first key of a request's advisory lock ("ESE"); the second is from the request id
CLAIM_KEY = 0x455345


def claim_keys(rid: str) -> tuple[int, int]:
    return CLAIM_KEY, int.from_bytes(hashlib.sha256(rid.encode()).digest()[:4], "big", signed=True)


@contextlib.contextmanager
def claim(target: Any, rid: str) -> Iterator[str | None]:
    """Yields None when this process may run the request (it holds the claim, or the target has no reachable
    PostgreSQL to share one: then only the engine's locks apply), else who holds it."""
    from es_doctor.probes.session import ProbeSession
    from es_doctor.secrets import resolve_secret

    present, _ = target.is_present("postgres")
    dsn = resolve_secret(target.postgres.dsn) if present else None
    if not dsn:
        yield None
        return
    with ProbeSession(target, timeout=5.0) as session:  # the one door: the lock's connection is the session's
        lock = session.advisory_lock(claim_keys(rid), f"es-doctor serve request {rid}")
        got = lock.acquire()
        if got.failure is not None:
            yield None
            return
        if not got.value:
            yield lock.holder()
            return
        try:
            yield None
        finally:
            lock.release()
