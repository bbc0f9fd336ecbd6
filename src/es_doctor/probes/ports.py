"""Local ports and processes (psutil): who listens on a port, is it open, a process's environment."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Collection
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


def listeners(port: int, addresses: Collection[str] | None = None) -> Result[list[ProcessInfo]]:
    """Processes listening on TCP ``port``: on any address, or (``addresses``) on one of those addresses or
    on a wildcard that covers one (``0.0.0.0`` an IPv4 address, ``::`` any): a process bound to
    127.0.0.1:P does not hold 127.0.0.2:P or [::1]:P."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError) as exc:
        return failed(FailureKind.ERROR, f"cannot list sockets: {short(exc)}")
    pids = sorted({c.pid for c in conns if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                   and c.pid is not None and (addresses is None or binds_one_of(str(c.laddr.ip), addresses))})
    infos = [info for info in (_info(pid) for pid in pids) if info is not None]
    return success(infos)


def binds_one_of(bound: str, addresses: Collection[str]) -> bool:
    """Whether a socket bound to ``bound`` receives connections to one of ``addresses``."""
    import ipaddress

    try:
        mine = ipaddress.ip_address(bound.split("%", 1)[0])
    except ValueError:
        return True  # an address psutil cannot name: counted as holding the port (never hides a holder)
    if isinstance(mine, ipaddress.IPv6Address) and mine.ipv4_mapped is not None:
        mine = mine.ipv4_mapped
    for text in addresses:
        try:
            want = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
        except ValueError:
            continue
        if isinstance(want, ipaddress.IPv6Address) and want.ipv4_mapped is not None:
            want = want.ipv4_mapped
        if mine == want or (mine.is_unspecified and mine.version in (want.version, 6)):
            return True
    return False


def host_addresses(host: str, timeout: float = 2.0) -> list[str] | None:
    """The addresses ``host`` names (itself for an address; a name resolved within ``timeout``); None when
    it does not resolve (then a caller looks at every address)."""
    import ipaddress
    import threading

    host = host.strip("[]")
    with contextlib.suppress(ValueError):
        return [str(ipaddress.ip_address(host.split("%", 1)[0]))]
    found: dict[str, list[str]] = {}

    def resolve() -> None:
        with contextlib.suppress(OSError):
            found["addrs"] = sorted({str(info[4][0]).split("%", 1)[0] for info in socket.getaddrinfo(
                host, None, type=socket.SOCK_STREAM)})

    worker = threading.Thread(target=resolve, daemon=True)
    worker.start()
    worker.join(timeout)
    return found.get("addrs") or None


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


def local_addresses() -> set[str]:
    """Every address of this host's interfaces (psutil), loopback included."""
    out = {"127.0.0.1", "::1", "0.0.0.0", "::"}
    try:
        for addrs in psutil.net_if_addrs().values():
            for addr in addrs:
                if addr.family in (socket.AF_INET, socket.AF_INET6):
                    out.add(addr.address.split("%", 1)[0])
    except (psutil.Error, OSError):
        pass
    return out


def is_local_host(host: str, timeout: float = 2.0) -> tuple[bool, str]:
    """(whether ``host`` is this machine, why): a loopback or interface address, or a name that resolves
    only to such addresses. A name that does not resolve in ``timeout`` is not local."""
    import ipaddress
    import threading

    host = host.strip("[]")
    if host.lower() in {"localhost", "localhost.localdomain", "ip6-localhost"}:
        return True, f"{host} is the loopback name"
    mine = local_addresses()
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        if ip.is_loopback or str(ip) in mine:
            return True, f"{host} is an address of this host"
        return False, f"{host} is not an address of this host"
    found: dict[str, list[str]] = {}

    def resolve() -> None:
        try:
            found["addrs"] = sorted({str(info[4][0]).split("%", 1)[0] for info in socket.getaddrinfo(host, None)})
        except OSError:
            found["addrs"] = []

    worker = threading.Thread(target=resolve, daemon=True)
    worker.start()
    worker.join(timeout)
    addrs = found.get("addrs")
    if addrs is None:
        return False, f"{host} did not resolve within {timeout:g}s"
    if not addrs:
        return False, f"{host} does not resolve"
    foreign = [a for a in addrs if not (a in mine or ipaddress.ip_address(a).is_loopback)]
    if foreign:
        return False, f"{host} resolves to {', '.join(foreign)}, not an address of this host"
    return True, f"{host} resolves to this host ({', '.join(addrs)})"


def process_tree(pid: int) -> set[int]:
    """``pid`` and all its descendants (empty when it is gone)."""
    try:
        root = psutil.Process(pid)
        return {root.pid, *(p.pid for p in root.children(recursive=True))}
    except (psutil.Error, OSError):
        return set()


def ancestors(pid: int) -> set[int]:
    """``pid`` and its parents up to init: processes a step must never terminate (es-doctor itself)."""
    out: set[int] = {pid}
    with contextlib.suppress(psutil.Error, OSError):
        out.update(p.pid for p in psutil.Process(pid).parents())
    return out
