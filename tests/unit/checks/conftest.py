"""Fixtures of the checks' unit tests, and the verifier of ``@covers`` declarations."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Collection, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import OBSERVED, iter_covers

from es_doctor.config import Target
from es_doctor.probes import ports
from es_doctor.probes.result import Result


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "covers(check_id, *statuses): the test runs the check and sees each status")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A test declaring ``@covers(id, STATUS)`` must have run that check and seen that status."""
    OBSERVED.clear()
    outcome = yield
    if outcome.excinfo is not None:
        return
    seen = set(OBSERVED)
    missing = [f"{cid} {status}" for cid, status in iter_covers(item.iter_markers("covers")) if (cid, status)
               not in seen]
    if missing:
        pytest.fail(f"declared by @covers but never observed: {', '.join(missing)}", pytrace=False)


#: the stack's default ports: a unit test must never read whatever runs on them on this machine
STACK_PORTS = {8080, 8081, 8082, 6333, 6334, 5432, 6379, 9090, 3000}


@pytest.fixture(autouse=True)
def no_real_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail a test that would connect to, or list the owners of, a port of the machine's own stack."""
    real_connect = socket.create_connection
    real_listeners = ports.listeners

    def connect(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        host, port = address
        assert host == "127.0.0.1" and port not in STACK_PORTS, f"a unit test connected to {host}:{port}"
        return real_connect(address, *args, **kwargs)

    def listeners(port: int, addresses: Collection[str] | None = None) -> Result[list[ports.ProcessInfo]]:
        assert port not in STACK_PORTS, f"a unit test listed the owners of the machine's port {port}"
        return real_listeners(port, addresses)

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setattr(ports, "listeners", listeners)


@pytest.fixture
def target(tmp_path: Path) -> Target:
    """The default target, its logs in a fresh directory (so no log check reads the machine's)."""
    t = Target()
    t.service.log_dir = str(tmp_path / "logs")
    return t


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections (a real socket)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    from es_doctor.lab.infra import free_port

    return free_port()


LISTENER = """
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""


@pytest.fixture
def listener_process() -> Iterator[Callable[[dict[str, str]], tuple[int, int]]]:
    """Start a process listening on 127.0.0.1 with the given environment: (pid, port)."""
    started: list[subprocess.Popen[str]] = []

    def start(env: dict[str, str]) -> tuple[int, int]:
        proc = subprocess.Popen([sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, text=True, env=env)
        started.append(proc)
        assert proc.stdout is not None
        return proc.pid, int(proc.stdout.readline())

    yield start
    for proc in started:
        proc.kill()
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
