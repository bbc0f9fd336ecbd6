"""A step stuck in a Docker SDK call stops when it is cancelled (issue 24 item 9): on the lab's real Docker
engine, ``docker.exec`` of a program that runs for 20 s in the Qdrant container, with a step timeout of
2 s, is stopped (the call's connection shut down), reported as timed out, not "could not be stopped",
and the rollback runs after it. Over the engine's Unix socket, and over tcp (the same engine behind a
TCP-to-Unix forwarder: an engine address the SDK reaches through requests' own adapter)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from es_doctor.runbooks.audit import AuditLog
from es_doctor.runbooks.engine import Engine, RunOutcome, plan
from es_doctor.runbooks.loader import load_runbook_file

pytestmark = [pytest.mark.integration, pytest.mark.docker]


@contextlib.contextmanager
def tcp_to_unix(socket_path: str) -> Iterator[int]:
    """A TCP port on 127.0.0.1 whose every connection is piped to the Unix socket ``socket_path``."""

    class Pipe(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(socket_path)

            def pump(src: socket.socket, dst: socket.socket) -> None:
                with contextlib.suppress(OSError):
                    while chunk := src.recv(65536):
                        dst.sendall(chunk)
                for sock in (src, dst):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

            back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
            back.start()
            pump(self.request, upstream)
            back.join(30)
            upstream.close()

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Pipe)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_a_step_stuck_in_a_docker_call_is_stopped_and_rolled_back(healthy_lab: Any, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    stuck_step_is_stopped(healthy_lab.target, tmp_path, monkeypatch)


def test_over_tcp_too(healthy_lab: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = healthy_lab.target
    host = target.docker.host or os.environ.get("DOCKER_HOST") or ""
    assert host.startswith("unix://"), host
    with tcp_to_unix(host.removeprefix("unix://")) as port:
        over_tcp = target.model_copy(update={"docker": target.docker.model_copy(
            update={"host": f"tcp://127.0.0.1:{port}"})})
        stuck_step_is_stopped(over_tcp, tmp_path, monkeypatch)


def stuck_step_is_stopped(target: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from es_doctor.runbooks import stepper as stepper_module

    marker = tmp_path / "marker"
    path = tmp_path / "rb.yaml"
    path.write_text(f"""
id: test-docker-stuck
title: an exec that outlives its step
description: busybox sleep 20 in the Qdrant container, with a step timeout of 2 s
class: deploy
steps:
  - name: stuck
    action: docker.exec
    timeout: 2
    inputs: {{container: {target.qdrant.container}, argv: [busybox, sleep, "20"]}}
rollback:
  - name: undo
    action: shell
    inputs: {{argv: [sh, -c, "echo ROLLBACK >> {marker}"]}}
""")
    runbook = load_runbook_file(path)
    said: list[str] = []
    engine = Engine(target, "lab", AuditLog(tmp_path / "audit.jsonl", []), tmp_path / "state",
                    confirm=lambda _q: True, say=said.append)
    # a grace shorter than the exec: a step the cancel could not reach would be reported "could not be stopped"
    monkeypatch.setattr(stepper_module, "STOP_GRACE_S", 6.0)
    started = time.monotonic()
    result = engine.run(plan(runbook, target, "lab"), yes=True)
    took = time.monotonic() - started
    step = result.steps[0]
    assert step.status == "timeout", (step.status, step.error, said)
    assert "could not be stopped" not in (step.error or "")
    assert marker.read_text() == "ROLLBACK\n", "the rollback ran once the step had stopped"
    assert result.outcome in (RunOutcome.ROLLED_BACK, RunOutcome.FAILED), result.message
    assert "no rollback was started" not in result.message
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["event"] == "fix.step"]
    assert [(r["phase"], r["status"]) for r in steps] == [("steps", "timeout"), ("rollback", "ok")]
    assert took < 20, f"the run waited for the exec to end ({took:.1f} s)"
