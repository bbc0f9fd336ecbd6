"""Detached processes tracked by pid files, so another CLI invocation can stop them (psutil)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import psutil

#: Children started by this interpreter, reaped when they exit (no zombies in long test sessions).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def new_password() -> str:
    return secrets.token_urlsafe(18)


def spawn(argv: list[str], pidfile: Path, log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> int:
    """Start ``argv`` in its own session, output appended to ``log``; record it in ``pidfile``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, cwd=cwd)
    _CHILDREN[proc.pid] = proc
    created = psutil.Process(proc.pid).create_time()
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(json.dumps({"pid": proc.pid, "create_time": created, "argv": argv}), encoding="utf-8")
    return proc.pid


def process(pidfile: Path) -> psutil.Process | None:
    """The live process recorded in ``pidfile`` (None when gone, a zombie, or the pid was reused)."""
    try:
        data = json.loads(pidfile.read_text(encoding="utf-8"))
        proc = psutil.Process(int(data["pid"]))
        if abs(proc.create_time() - float(data["create_time"])) > 0.5:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(proc.pid)
            return None
        return proc
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return None


def exit_code(pidfile: Path) -> int | None:
    """The exit code of a child of this interpreter that exited (None if unknown or running)."""
    try:
        pid = int(json.loads(pidfile.read_text(encoding="utf-8"))["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    child = _CHILDREN.get(pid)
    return None if child is None else child.poll()


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None:
        child.poll()


def stop(pidfile: Path, sig: int = signal.SIGTERM, timeout: float = 10.0) -> bool:
    """Signal the process (then SIGKILL after ``timeout``); True if one was running."""
    proc = process(pidfile)
    if proc is None:
        return False
    with contextlib.suppress(psutil.Error):
        proc.send_signal(sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process(pidfile) is not None:
        time.sleep(0.05)
    if process(pidfile) is not None:
        with contextlib.suppress(psutil.Error, OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            proc.kill()
        with contextlib.suppress(psutil.Error):
            proc.wait(5)
        _reap(proc.pid)
    return True
