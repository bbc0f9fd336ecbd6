"""External programs es-doctor runs (pg_dump, pg_restore, …): argv only, never a shell string, the
password in the environment, never on the command line; stopped on cancel or timeout."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from es_doctor.config import Target
from es_doctor.secrets import resolve_secret, split_dsn


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
    return clean, {**os.environ, "PGPASSWORD": password} if password else dict(os.environ)


def run_tool(argv: list[str], env: dict[str, str] | None, timeout: float,
             cancel: threading.Event | None = None) -> str:
    """Run ``argv``; its combined output, or :class:`ToolError` (non-zero exit, timeout, cancel)."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    except OSError as exc:
        raise ToolError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    deadline = time.monotonic() + timeout
    stopped = ""
    try:
        while proc.poll() is None and not stopped:
            if cancel is not None and cancel.is_set():
                stopped = "interrupted"
            elif time.monotonic() > deadline:
                stopped = "timed out"
            else:
                time.sleep(0.05)
    finally:  # Ctrl-C included: never leave the program running
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            proc.kill()
            proc.wait()
    if stopped:
        raise ToolError(f"{Path(argv[0]).name} {stopped}")
    output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise ToolError(f"{Path(argv[0]).name} exited {proc.returncode}: {output.strip()[-400:]}")
    return output
