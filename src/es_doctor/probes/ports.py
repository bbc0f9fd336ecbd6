"""Local ports and processes (psutil): who listens on a port, is it open, a process's environment."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import psutil

from es_doctor.probes.result import FailureKind, Result, failed, short, success


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    name: str
    cmdline: list[str]
    username: str | None

    @property
    def command(self) -> str:
        return " ".join(self.cmdline) if self.cmdline else self.name


def port_open(host: str, port: int, timeout: float = 1.0) -> Result[bool]:
    """Whether a TCP connect succeeds (a value either way; errors other than refusal are failures)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return success(True)
    except ConnectionRefusedError:
        return success(False)
    except TimeoutError:
        return failed(FailureKind.TIMEOUT, f"connect to {host}:{port} timed out after {timeout:g}s")
    except OSError as exc:
        return failed(FailureKind.ERROR, f"connect to {host}:{port}: {short(exc)}")


def _info(pid: int) -> ProcessInfo | None:
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            return ProcessInfo(pid, proc.name(), proc.cmdline(), proc.username())
    except (psutil.Error, OSError):
        return None


def listeners(port: int) -> Result[list[ProcessInfo]]:
    """Processes listening on TCP ``port`` on any address."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError) as exc:
        return failed(FailureKind.ERROR, f"cannot list sockets: {short(exc)}")
    pids = sorted({c.pid for c in conns if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                   and c.pid is not None})
    infos = [info for info in (_info(pid) for pid in pids) if info is not None]
    return success(infos)


def process_environ(pid: int) -> Result[dict[str, str]]:
    try:
        return success(dict(psutil.Process(pid).environ()))
    except psutil.NoSuchProcess:
        return failed(FailureKind.NOT_FOUND, f"no process {pid}")
    except (psutil.Error, OSError) as exc:
        return failed(FailureKind.ERROR, f"environment of {pid}: {short(exc)}")


def _gone(proc: psutil.Process, timeout: float) -> bool:
    """Whether ``proc`` exits within ``timeout``; a zombie (dead, not yet reaped by its parent) counts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def terminate(pid: int, timeout: float = 5.0) -> Result[str]:
    """SIGTERM, then SIGKILL after ``timeout``. Already gone is success (idempotent)."""
    try:
        proc = psutil.Process(pid)
        proc.terminate()
        if _gone(proc, timeout):
            return success("terminated")
        proc.kill()
        if _gone(proc, timeout):
            return success("killed")
        return failed(FailureKind.TIMEOUT, f"pid {pid} survived SIGKILL for {timeout:g}s")
    except psutil.NoSuchProcess:
        return success("already gone")
    except (psutil.Error, OSError) as exc:
        return failed(FailureKind.ERROR, f"terminate {pid}: {short(exc)}")
