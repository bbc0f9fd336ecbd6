"""Where es-doctor writes (state dir, audit log, backups, incidents) is proved writable before a
command changes anything: a directory that cannot be created or written (a read-only or full
file system, a path under a regular file) is :class:`CantCreateError` (exit 73) naming it."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from es_doctor.errors import CantCreateError

#: bytes written (then removed) to prove there is room
PROBE_BYTES = 64 * 1024
#: errors of a write refused by the file system (full, over quota or file-size limit, read-only)
FULL_OR_READ_ONLY = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})

_HINT = "nothing was changed; free it, or point ES_DOCTOR_STATE_DIR / state_dir at a writable directory"


def ensure_writable_dir(path: Path | str, what: str) -> Path:
    """Create ``path`` (0700 when new) and prove a file can be written in it; else CantCreateError."""
    directory = Path(path).expanduser()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".es-doctor-write-test-", dir=directory)
        try:  # room for a run's records, not only an inode: a nearly full disk is refused up front
            left = PROBE_BYTES
            while left > 0:  # a write may be short (a file-size limit): the next one says why
                left -= os.write(fd, bytes(min(left, PROBE_BYTES)))
            os.fsync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                Path(probe).unlink()
    except OSError as exc:
        raise CantCreateError(f"cannot write the {what} {directory}: {exc.strerror or exc} ({_HINT})") from None
    return directory


def cant_write(exc: OSError, where: str | None = None) -> CantCreateError | None:
    """The exit-73 error for an OSError raised while writing (disk full, read-only…), else None.
    ``where`` names the place when the error does not (a failed write() carries no file name)."""
    if exc.errno not in FULL_OR_READ_ONLY or not (exc.filename or where):
        return None
    return CantCreateError(f"cannot write {exc.filename or where}: {exc.strerror or exc}")
