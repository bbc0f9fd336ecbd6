"""The audit log (JSON lines, one event per line, secrets masked) and the per-target fix lock."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import json
import os
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from es_doctor.errors import CantCreateError, UnavailableError
from es_doctor.files import private_dir
from es_doctor.secrets import mask_data
from es_doctor.units import utc_iso

#: the audit log's masking is es_doctor.secrets.mask_data (known values, secret-named keys, URL/DSN passwords)
mask = mask_data


def who() -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {"user": user, "host": socket.gethostname(), "pid": os.getpid()}


class AuditLog:
    def __init__(self, path: Path, secrets: list[str]) -> None:
        self.path = path.expanduser()
        self.secrets = [s for s in secrets if s]

    def write(self, event: str, **fields: Any) -> None:
        record = {"time": utc_iso(ms=True),
                  "event": event, **who(), **fields}
        line = json.dumps(mask(record, self.secrets), default=str, ensure_ascii=False)
        try:
            private_dir(self.path.parent)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise CantCreateError(f"cannot write the audit log {self.path} (audit_log): "
                                  f"{exc.strerror or exc}") from None
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            fcntl.flock(out, fcntl.LOCK_EX)
            out.write(line + "\n")
            out.flush()

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def run_records(self, run_id: str, max_bytes: int = 8 * 1024 * 1024) -> list[dict[str, Any]]:
        """The records of one run, read from the last ``max_bytes`` of the log (a dead run is recent)."""
        if not run_id or not self.path.is_file():
            return []
        with self.path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - max_bytes))
            tail = handle.read(max_bytes).decode("utf-8", errors="replace")
        out = []
        for line in tail.splitlines():
            if run_id not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("run_id") == run_id:
                out.append(record)
        return out


def _holder_text(holder: dict[str, Any]) -> str:
    return (f"runbook {holder.get('runbook', '?')} by {holder.get('user', '?')}@{holder.get('host', '?')} "
            f"(pid {holder.get('pid', '?')}, run {holder.get('run_id', '?')}) since {holder.get('since', '?')}")


@contextlib.contextmanager
def fix_lock(state_dir: Path, target: str, runbook: str, run_id: str = "",
             on_dead: Callable[[dict[str, Any]], None] | None = None) -> Iterator[dict[str, Any] | None]:
    """One fix at a time per target; a second one is told who holds the lock, and never touches the
    holder's record. A run that died holding the lock (SIGKILL, a crash of the machine) left its record:
    ``on_dead(record)`` is called first (when it raises, the record stays for the next attempt), and the
    record is yielded (else None)."""
    directory = state_dir.expanduser() / "locks"
    path = directory / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', target)}.lock"
    try:
        private_dir(directory)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise UnavailableError(f"cannot open the lock file {path}: {exc.strerror or exc}") from None
    handle: Any = os.fdopen(fd, "r+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        try:
            holder = json.loads(handle.read(65536) or "{}")
        except ValueError:
            holder = {}
        handle.close()  # the holder's record stays as it is
        text = _holder_text(holder if isinstance(holder, dict) else {})
        raise UnavailableError(f"another fix is running on target {target}: {text}; lock file {path}") from None
    try:
        handle.seek(0)
        try:
            left = json.loads(handle.read(65536) or "null")
        except ValueError:
            left = {"runbook": "?", "note": "unreadable lock record"}
        if isinstance(left, dict) and left and on_dead is not None:
            try:
                on_dead(left)
            except BaseException:
                handle.close()  # keeps the dead run's record: the next attempt reports it again
                handle = None
                raise
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({**who(), "runbook": runbook, "run_id": run_id,
                                 "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}))
        handle.flush()
        yield left if isinstance(left, dict) and left else None
    finally:
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()
            handle.close()


#: the PostgreSQL advisory lock of ``fix`` (two int4 keys: "ESD", 1), taken on the target's own database
PG_LOCK_KEYS = (0x455344, 1)


@contextlib.contextmanager
def target_lock(target: Any, runbook: str, run_id: str, say: Any) -> Iterator[dict[str, Any]]:
    """Where the target has PostgreSQL, a session advisory lock on its database held for the run: two
    operators on two machines (two state dirs) cannot fix the same stack at once. The holder is named
    through its session's ``application_name``. Yields what was done (held, or why not) for the audit."""
    from es_doctor.probes.session import ProbeSession
    from es_doctor.secrets import resolve_secret

    present, why = target.is_present("postgres")
    if not present:
        yield {"target_lock": "none", "reason": why}
        return
    dsn = resolve_secret(target.postgres.dsn) or ""
    if not dsn:
        yield {"target_lock": "none", "reason": "the target's PostgreSQL DSN is not set"}
        return
    me = who()
    label = f"es-doctor fix {runbook} {run_id} {me['user']}@{me['host']} pid {me['pid']}"
    with ProbeSession(target, timeout=5.0) as session:  # the lock's own connection, closed with the session
        lock = session.advisory_lock(PG_LOCK_KEYS, label)
        got = lock.acquire()
        if got.failure is not None:  # PostgreSQL down is often what is being fixed: go on, say so
            say(f"  (no lock on the target's PostgreSQL: {got.failure.message}; only this machine's lock is held)")
            yield {"target_lock": "unavailable", "reason": got.failure.message}
            return
        if not got.value:
            holder = lock.holder()
            lock.release()
            raise UnavailableError(f"another fix holds the lock on the target's database: {holder}")
        try:
            yield {"target_lock": "postgres advisory lock", "keys": list(PG_LOCK_KEYS)}
        finally:
            lock.release()
