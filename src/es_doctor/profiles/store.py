"""Saved profiles: ``<state_dir>/profiles/<target>/<UTC time>-<kind>.pb.gz``, each as the server sent it.

Directories are 0700, files 0600; a profile is written to a temporary file, flushed, then linked to
its final name, which fails rather than replace an existing file (two profiles in the same second get
``-2``, ``-3``…): a saved profile is never overwritten and never half-written.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from es_doctor.files import PRIVATE_FILE, private_dir
from es_doctor.profiles.summary import KINDS, Kind
from es_doctor.units import parse_utc_stamp, utc_stamp

NAME = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)-(?P<kind>cpu|heap|goroutine)(?:-(?P<n>\d{1,4}))?\.pb\.gz$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
#: the largest file read back as a profile (what the fetch accepts)
MAX_FILE = 64 * 1024 * 1024


@dataclass(frozen=True)
class Saved:
    path: Path
    target: str
    kind: Kind
    taken: datetime
    size: int
    seq: int = 1  #: 2, 3… for a second profile of the same kind in the same second

    @property
    def name(self) -> str:
        return self.path.name


def root(state_dir: str | Path) -> Path:
    return Path(state_dir).expanduser() / "profiles"


def target_dir(state_dir: str | Path, target: str) -> Path:
    """The target's directory; its name reduced to safe characters (nothing is written outside the root)."""
    safe = _UNSAFE.sub("_", target).lstrip(".") or "_"
    return root(state_dir) / safe


def save(state_dir: str | Path, target: str, kind: Kind, data: bytes, now: datetime | None = None) -> Path:
    """Write ``data`` under a new name; OSError when the directory cannot be written."""
    private_dir(root(state_dir))  # the root too (an existing one made 0700): profiles hold the service's memory
    directory = private_dir(target_dir(state_dir, target))
    stamp = utc_stamp(now)
    fd, tmp_name = tempfile.mkstemp(prefix=".partial-", suffix=".pb.gz", dir=directory)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        for n in range(1, 10_000):
            path = directory / (f"{stamp}-{kind}.pb.gz" if n == 1 else f"{stamp}-{kind}-{n}.pb.gz")
            try:
                os.link(tmp, path)  # fails if the name exists: never overwrite
            except FileExistsError:
                continue
            return path
        raise FileExistsError(f"no free name for a {kind} profile of {stamp} in {directory}")
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def listing(state_dir: str | Path, target: str | None = None, kind: Kind | None = None) -> list[Saved]:
    """Saved profiles (of one target, of one kind), oldest first; names es-doctor did not write are ignored."""
    base = root(state_dir)
    dirs = [target_dir(state_dir, target)] if target is not None else (
        sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink()) if base.is_dir() else [])
    out = []
    for directory in dirs:
        if not directory.is_dir() or directory.is_symlink():
            continue
        for path in directory.iterdir():
            match = NAME.match(path.name)
            if match is None or not path.is_file() or path.is_symlink():
                continue
            found: Kind = next(k for k in KINDS if k == match["kind"])
            if kind is not None and found != kind:
                continue
            try:  # a name es-doctor could not have written (month 13) is not one of its profiles
                taken = parse_utc_stamp(match["stamp"])
            except ValueError:
                continue
            out.append(Saved(path, directory.name, found, taken, path.stat().st_size, int(match["n"] or 1)))
    out.sort(key=lambda s: (s.taken, s.seq, s.target, s.kind))
    return out


def resolve(state_dir: str | Path, target: str, ref: str, kind: Kind) -> Path:
    """``--compare`` argument → a file: a path, a saved profile's name, or ``last`` (the newest saved
    profile of that kind for the target). FileNotFoundError with what was looked for."""
    if ref == "last":
        saved = listing(state_dir, target, kind)
        if not saved:
            raise FileNotFoundError(f"no saved {kind} profile for target {target!r} yet "
                                    f"(take one first: es-doctor -t {target} profile {kind})")
        return saved[-1].path
    candidate = Path(ref).expanduser()
    if candidate.is_file():
        return candidate
    if NAME.match(ref):
        saved_path = target_dir(state_dir, target) / ref
        if saved_path.is_file():
            return saved_path
    raise FileNotFoundError(f"{ref}: no such file, and no saved profile of that name for target {target!r} "
                            "(see: es-doctor profile list)")
