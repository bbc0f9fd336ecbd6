"""Files es-doctor writes that hold data or secrets: 0600 files in 0700 directories.

- :func:`private_dir`: creates a directory (and its missing parents) 0700.
- :func:`create_private`: a new 0600 file, never following a symlink or reusing an existing file.
- :func:`replace_atomically`: rewrites a file someone else owns (the service's config) beside it,
  fsync, rename: its mode and owner are kept, a crash leaves either the old or the new file.
- :func:`write_atomically`: the same for a file es-doctor owns (``diagnose --output``), new or not.

And the one way es-doctor reads a whole file it did not write this run (a config, a runbook, a saved
profile, the previous run's scrape): :func:`read_regular_file`, bounded, never blocking on a FIFO.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """``path`` created (with its missing parents) 0700; an existing leaf is made 0700 too."""
    path = path.expanduser()
    if path.is_symlink():  # a planted link would send our private files elsewhere
        raise NotADirectoryError(f"{path} is a symbolic link, not a private directory")
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=PRIVATE_DIR)
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    if stat.S_IMODE(path.stat().st_mode) != PRIVATE_DIR and path.stat().st_uid == os.geteuid():
        path.chmod(PRIVATE_DIR)
    return path


def create_private(path: Path) -> int:
    """A new file opened for writing, 0600: refuses to follow a symlink or to open an existing file."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to a new 0600 file (replacing none)."""
    with os.fdopen(create_private(path), "w", encoding="utf-8") as out:
        out.write(text)
    return path


def replace_atomically(path: Path, text: str) -> None:
    """Replace ``path``'s content: a temporary file beside it (same mode and owner), fsync, rename, fsync dir."""
    info = path.stat()
    _write_beside(path, text, stat.S_IMODE(info.st_mode), (info.st_uid, info.st_gid))


def write_atomically(path: Path, text: str, mode: int = 0o644, *, keep_mode: bool = True) -> None:
    """Write ``path`` so that a reader sees the old content or the new, never a part (``diagnose --output``
    for node_exporter's textfile collector, ``dashboard --out``): beside it, fsync, rename. A new file gets
    ``mode``; an existing one keeps its mode and owner (``keep_mode=False``: it gets ``mode`` too). The
    temporary name (``.NAME.*.es-doctor-tmp``) does not end in ``.prom``, so the collector never reads it."""
    try:
        info = path.stat()
    except FileNotFoundError:
        _write_beside(path, text, mode, None)
        return
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(21, "is a directory", str(path))
    if not keep_mode:
        _write_beside(path, text, mode, None)
        return
    _write_beside(path, text, stat.S_IMODE(info.st_mode), (info.st_uid, info.st_gid))


def _write_beside(path: Path, text: str, mode: int, owner: tuple[int, int] | None) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".es-doctor-tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        if owner is not None and owner != (os.geteuid(), os.getegid()):
            with contextlib.suppress(PermissionError):
                os.fchown(fd, *owner)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class RefusedFileError(Exception):
    """A file :func:`read_regular_file` did not read; ``why`` says it in words (``not a regular file``,
    ``larger than 1024 KiB (…)``, ``cannot read: No such file or directory``)."""

    def __init__(self, why: str, *, too_large: bool = False) -> None:
        super().__init__(why)
        self.why = why
        self.too_large = too_large


def read_regular_file(path: Path, limit: int, *, follow_links: bool = True) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; RefusedFileError otherwise.

    Opened non-blocking and checked with fstat before any read: a FIFO, socket or device is refused
    at once instead of hanging on it; ``follow_links=False`` refuses a symbolic link too (a file es-doctor
    keeps in its own directory, where a planted link would make it read elsewhere).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise RefusedFileError(f"cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RefusedFileError("not a regular file")
        if info.st_size > limit:
            raise RefusedFileError(f"larger than {limit // 1024} KiB ({info.st_size} bytes)", too_large=True)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise RefusedFileError(f"larger than {limit // 1024} KiB", too_large=True)
        return b"".join(chunks)
    except OSError as exc:
        raise RefusedFileError(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
