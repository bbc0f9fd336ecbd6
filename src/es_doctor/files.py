"""Files es-doctor writes that hold data or secrets: 0600 files in 0700 directories.

- :func:`private_dir`: creates a directory (and its missing parents) 0700.
- :func:`create_private`: a new 0600 file, never following a symlink or reusing an existing file.
- :func:`replace_atomically`: rewrites a file someone else owns (the service's config) beside it,
  fsync, rename: its mode and owner are kept, a crash leaves either the old or the new file.
- :func:`write_atomically`: the same for a file es-doctor owns (``diagnose --output``), new or not; a
  FIFO or character device is written through, a symlink's target is written, nothing else is replaced.

And the one way es-doctor reads a whole file it did not write this run (a config, a runbook, a saved
profile, the previous run's scrape): :func:`read_regular_file`, bounded, never blocking on a FIFO.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import stat
import tempfile
import time
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


#: how long a write through to a FIFO or character device may wait for its reader
WRITE_THROUGH_TIMEOUT_S = 30.0


def write_atomically(path: Path, text: str, mode: int = 0o644, *, keep_mode: bool = True) -> None:
    """Write ``path`` so that a reader sees the old content or the new, never a part (``diagnose --output``
    for node_exporter's textfile collector, ``dashboard --out``): beside it, fsync, rename. A new file gets
    ``mode``; an existing one keeps its mode and owner (``keep_mode=False``: it gets ``mode`` too). The
    temporary name (``.NAME.*.es-doctor-tmp``) does not end in ``.prom``, so the collector never reads it.

    Only a regular file (or a new path) is replaced. A FIFO or a character device (``/dev/stdout``,
    ``/dev/null``) is written through, never replaced: a FIFO with no reader, a block device, a socket or a
    directory is refused (OSError naming why). A symbolic link is kept: its target is written by the same
    rules (a regular target replaced atomically beside the target, a link to nothing refused)."""
    try:
        link = path.lstat()
    except FileNotFoundError:
        _write_beside(path, text, mode, None)
        return
    if stat.S_ISLNK(link.st_mode):
        try:
            info = path.stat()
        except OSError as exc:
            raise OSError(exc.errno or errno.ENOENT, "a symbolic link to nothing (refused: the link is kept)",
                          str(path)) from None
        if stat.S_ISREG(info.st_mode):
            write_atomically(Path(os.path.realpath(path)), text, mode, keep_mode=keep_mode)
            return
    else:
        info = link
    kind = stat.S_IFMT(info.st_mode)
    if kind in (stat.S_IFIFO, stat.S_IFCHR):
        _write_through(path, text)
        return
    if kind == stat.S_IFDIR:
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
    if kind != stat.S_IFREG:
        what = {stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}.get(kind, "not a regular file")
        raise OSError(errno.EINVAL, f"{what} (refused: only a regular file, a FIFO or a character device is "
                                    "written)", str(path))
    if not keep_mode:
        _write_beside(path, text, mode, None)
        return
    _write_beside(path, text, stat.S_IMODE(info.st_mode), (info.st_uid, info.st_gid))


def _write_through(path: Path, text: str, timeout: float = WRITE_THROUGH_TIMEOUT_S) -> None:
    """``text`` written into the FIFO or character device ``path`` (never created, truncated or replaced),
    without blocking: a FIFO with no reader is refused at once, a reader that stops reading for ``timeout``
    seconds ends the write (TimeoutError)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OSError(errno.ENXIO, "a FIFO with no reader (refused: nothing would read the report)",
                          str(path)) from None
        raise
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode) and not stat.S_ISCHR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "changed into something else while opened (refused)", str(path))
        data = memoryview(text.encode("utf-8"))
        deadline = time.monotonic() + timeout
        while data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(errno.ETIMEDOUT, f"its reader took no data for {timeout:g} s", str(path))
            _, ready, _ = select.select([], [fd], [], remaining)
            if not ready:
                continue
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                continue
            data = data[written:]
    finally:
        os.close(fd)


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
