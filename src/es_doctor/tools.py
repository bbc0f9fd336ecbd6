"""External programs es-doctor runs (pg_dump, pg_restore, a runbook's ``shell`` step): argv only,
never a shell string, the password in the environment, never on the command line.

Each program runs in its own process group (``start_new_session``) with no stdin; its output is
read while it runs (so a chatty program never blocks on a full pipe) and capped (head and tail
kept, the size of what was dropped said in between); on cancel, timeout or Ctrl-C the whole group
gets SIGTERM, then SIGKILL, and is reaped before :func:`run_tool` returns. The groups still alive
are tracked (:func:`live_groups`), so the engine can prove a cancelled step left nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from es_doctor.config import Target
from es_doctor.probes.postgres import split_dsn
from es_doctor.secrets import resolve_secret

#: what run_tool keeps of a program's output by default: the first and the last half of this
DEFAULT_KEEP = 8 * 1024 * 1024
#: seconds between SIGTERM and SIGKILL of a program's process group
TERM_GRACE_S = 5.0
#: programs that could prompt for a password: they get ``--no-password``
PG_TOOLS = frozenset({"pg_dump", "pg_restore", "pg_dumpall", "psql"})

_LIVE: set[int] = set()
_LIVE_LOCK = threading.Lock()


class ToolError(RuntimeError):
    """A program could not run or failed (the message has no secret in it)."""


def pg_bin(name: str) -> str:
    """``pg_dump``/``pg_restore``: on PATH, else the newest of Debian's /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if candidates:
        return str(candidates[-1])
    raise ToolError(f"{name} not installed (apt-get install postgresql-client)")


def pg_env(target: Target) -> tuple[str, dict[str, str]]:
    """The target's DSN without its password (userinfo or ``?password=``), and an environment carrying
    the password, percent-decoded: it never reaches a command line."""
    pg = target.postgres
    try:
        clean, password = split_dsn(resolve_secret(pg.dsn) or "", resolve_secret(pg.password))
    except ValueError as exc:
        raise ToolError(str(exc)) from None
    env = {**os.environ, "PGCONNECT_TIMEOUT": os.environ.get("PGCONNECT_TIMEOUT", "15")}
    return clean, {**env, "PGPASSWORD": password} if password else env


def live_groups() -> set[int]:
    """Process groups started by :func:`run_tool` that have not been reaped yet."""
    with _LIVE_LOCK:
        return set(_LIVE)


def kill_group(pgid: int, grace: float = TERM_GRACE_S) -> bool:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds; True once no member is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if not _group_alive(pgid):
                return True
            time.sleep(0.05)
    return not _group_alive(pgid)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # zombies of the group count as gone: their parent (we, or init) reaps them
    import psutil

    for proc in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.info["pid"]) == pgid:
                return True
    return False


class _Capped:
    """The first and last ``keep // 2`` bytes of a stream, and how many were dropped between."""

    def __init__(self, keep: int) -> None:
        self.half = max(keep // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, data: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data:
            return
        self.tail += data
        excess = len(self.tail) - self.half
        if excess > 0:
            del self.tail[:excess]
            self.dropped += excess

    def text(self) -> str:
        middle = f"\n[… {self.dropped} bytes of output dropped …]\n".encode() if self.dropped else b""
        return bytes(self.head + middle + self.tail).decode("utf-8", errors="replace")


def _drain(sel: selectors.BaseSelector, fd: int, output: _Capped, until: float) -> None:
    while time.monotonic() < until and sel.select(0):
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return
        output.add(chunk)


def run_tool(argv: list[str], env: dict[str, str] | None, timeout: float,
             cancel: threading.Event | None = None, *, keep: int = DEFAULT_KEEP) -> str:
    """Run ``argv``; its combined output (capped to ``keep`` bytes, head and tail), or
    :class:`ToolError` (could not start, non-zero exit, timeout, cancel). The program and every
    process it started are gone when this returns or raises (Ctrl-C included)."""
    name = Path(argv[0]).name
    if name in PG_TOOLS and "--no-password" not in argv and "-w" not in argv:
        argv = [argv[0], "--no-password", *argv[1:]]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    except OSError as exc:
        raise ToolError(f"cannot run {name}: {exc.strerror or exc}") from None
    pgid = proc.pid  # start_new_session: the child leads its own group
    with _LIVE_LOCK:
        _LIVE.add(pgid)
    output = _Capped(keep)
    deadline = time.monotonic() + timeout
    stopped = ""
    assert proc.stdout is not None
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            open_pipe = True
            while not stopped:
                if cancel is not None and cancel.is_set():
                    stopped = "interrupted"
                elif time.monotonic() > deadline:
                    stopped = f"timed out after {timeout:g}s"
                elif open_pipe:
                    ready = sel.select(0.05)
                    for _key, _events in ready:
                        chunk = os.read(proc.stdout.fileno(), 1 << 16)
                        if chunk:
                            output.add(chunk)
                        else:  # EOF: the program (and whoever shared its stdout) closed it
                            sel.unregister(proc.stdout)
                            open_pipe = False
                    if not ready and proc.poll() is not None:
                        # it exited: what it wrote last is in the pipe (read it; briefly, in case what it
                        # left behind still writes); what it left holding the pipe dies with its group below
                        _drain(sel, proc.stdout.fileno(), output, time.monotonic() + 0.5)
                        break
                elif proc.poll() is not None:
                    break
                else:
                    time.sleep(0.05)
    finally:  # Ctrl-C included: never leave the program or its children running
        gone = kill_group(pgid) if (stopped or proc.poll() is None or _group_alive(pgid)) else True
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        proc.stdout.close()
        if gone:
            with _LIVE_LOCK:
                _LIVE.discard(pgid)
    if stopped:
        raise ToolError(f"{name} {stopped}" + ("" if gone else f" (process group {pgid} could not be killed)"))
    text = output.text()
    if proc.returncode != 0:
        raise ToolError(f"{name} exited {proc.returncode}: {text.strip()[-400:]}")
    return text
