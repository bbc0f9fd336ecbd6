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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from es_doctor.errors import CantCreateError, UnavailableError
from es_doctor.files import private_dir
from es_doctor.secrets import mask_data

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
        record = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
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


@contextlib.contextmanager
def fix_lock(state_dir: Path, target: str, runbook: str) -> Iterator[None]:
    """One fix at a time per target; a second one is told who holds the lock."""
    directory = state_dir.expanduser() / "locks"
    path = directory / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', target)}.lock"
    try:
        private_dir(directory)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise UnavailableError(f"cannot open the lock file {path}: {exc.strerror or exc}") from None
    handle = os.fdopen(fd, "r+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            try:
                holder = json.loads(handle.read(4096) or "{}")
            except ValueError:
                holder = {}
            if not isinstance(holder, dict):  # a lock file holding something else: say what we know
                holder = {}
            raise UnavailableError(
                f"another fix is running on target {target}: runbook {holder.get('runbook', '?')} by "
                f"{holder.get('user', '?')}@{holder.get('host', '?')} (pid {holder.get('pid', '?')}) since "
                f"{holder.get('since', '?')}; lock file {path}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({**who(), "runbook": runbook,
                                 "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}))
        handle.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            handle.seek(0)
            handle.truncate()
        handle.close()
