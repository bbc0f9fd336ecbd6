"""``es-doctor logs`` end to end: the CLI as a subprocess, on the lab's real JSON logs (file and
``docker logs`` of its container on the real engine), and ``--follow`` on a file that is appended to,
rotated (rename + new file) and copytruncated, then stopped with SIGINT."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

PY = sys.executable
FAULT = "errors-crit"  # ~15 % of API requests fail with 500 and log `handler failed: <path>` (ERROR, component http)


def lab_env(lab: Any, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ES_DOCTOR_")}
    env.update({"ES_DOCTOR_LAB_DIR": str(lab.lab_dir), **extra})
    return env


def es_doctor(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "es_doctor", "-t", "lab", "logs", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def records(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict):
            out.append(data)
    return out


def epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def fault_errors(path: Path, since: float, until: float) -> list[dict[str, Any]]:
    return [r for r in records(path) if r.get("level") == "ERROR" and r.get("component") == "http"
            and str(r.get("message", "")).startswith("handler failed:") and since <= epoch(r["timestamp"]) <= until]


def wait_for_errors(path: Path, since: float, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(fault_errors(path, since, time.time() + 60)) >= count:
            return
        time.sleep(0.5)
    raise AssertionError(f"the lab logged fewer than {count} `handler failed` errors in {timeout} s")


#: when the current erroring_lab's fault was added (whole seconds): the tests read the log from there, so
#: errors that earlier tests' faults left in the shared lab's log (e.g. vector-service ones) are not counted
_FAULT_SINCE: list[float] = [0.0]


def since_fault() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_FAULT_SINCE[0]))


@pytest.fixture
def erroring_lab(healthy_lab: Any) -> Iterator[Any]:
    started = float(int(time.time()))
    _FAULT_SINCE[0] = started
    healthy_lab.add_fault(FAULT)
    log = Path(healthy_lab.target.service.log_dir) / healthy_lab.target.service.main_log
    wait_for_errors(log, started, 8)
    yield healthy_lab


def test_patterns_group_the_fault_s_errors(erroring_lab: Any) -> None:
    log = Path(erroring_lab.target.service.log_dir) / erroring_lab.target.service.main_log
    before = time.time()
    result = es_doctor(lab_env(erroring_lab), "--patterns", "--since", since_fault(), "--format", "json",
                       "--source", "file")
    after = time.time()
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["source"] == {"type": "file", "path": str(log)}
    top = report["patterns"][0]
    assert (top["component"], top["level"]) == ("http", "ERROR")
    assert top["pattern"].startswith("handler failed: /")
    grouped = [p for p in report["patterns"] if p["component"] == "http" and p["pattern"].startswith("handler failed")]
    # the command read the file at some moment between before and after: its count lies between the two
    counted = sum(p["count"] for p in grouped)
    window = _FAULT_SINCE[0]
    assert len(fault_errors(log, window, before)) <= counted <= len(fault_errors(log, window - 1, after))
    ids = {r.get("request_id") for r in fault_errors(log, window - 1, after)}
    for p in grouped:
        assert p["sample_request_id"] in ids
        assert window - 1 <= epoch(p["first_seen"]) <= epoch(p["last_seen"]) <= after
        assert not re.search(r"\d{2,}", p["pattern"]), p  # ids and numbers in paths are placeholders
    table = es_doctor(lab_env(erroring_lab), "--patterns", "--since", since_fault(), "--source", "file")
    assert table.returncode == 0 and table.stdout.split()[1:4] == ["ERROR", "http", "handler"]
    assert "pattern(s)" in table.stderr


def test_docker_source_reads_the_container_s_log(erroring_lab: Any) -> None:
    log = Path(erroring_lab.target.service.log_dir) / erroring_lab.target.service.main_log
    result = es_doctor(lab_env(erroring_lab), "--source", "docker", "--since", since_fault(), "--level", "ERROR",
                       "--format", "json", "-n", "50")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["source"] == {"type": "docker", "container": erroring_lab.target.service.container}
    lines = report["lines"]
    assert lines and all(line["level"] in ("ERROR", "FATAL") for line in lines)
    in_file = {(r.get("request_id"), r.get("message")) for r in records(log)}
    assert {(line.get("request_id"), line.get("message")) for line in lines} <= in_file
    patterns = es_doctor(lab_env(erroring_lab), "--source", "docker", "--patterns", "--since", since_fault(),
                         "--format", "json")
    assert patterns.returncode == 0, patterns.stderr
    top = json.loads(patterns.stdout)["patterns"][0]
    assert top["component"] == "http" and top["pattern"].startswith("handler failed: /")


def test_unreadable_docker_logs_are_a_clear_error(healthy_lab: Any) -> None:
    import docker

    client = docker.DockerClient(base_url=healthy_lab.target.docker.host)
    name = f"esd-nolog-{os.getpid()}"
    from es_doctor.lab.infra import BASE_IMAGE

    container = client.containers.run(BASE_IMAGE, ["busybox", "sleep", "60"], name=name, detach=True,
                                      network_mode="none", log_config={"type": "none"})
    try:
        for container_name, words in ((name, "cannot read docker logs"), ("esd-no-such-container", "not-found")):
            result = es_doctor(lab_env(healthy_lab, ES_DOCTOR_SERVICE__CONTAINER=container_name),
                               "--source", "docker", "--since", "5m")
            assert result.returncode == 69, result.stdout + result.stderr
            assert words in result.stderr and container_name in result.stderr
            assert "Traceback" not in result.stderr + result.stdout
    finally:
        container.remove(force=True)
        client.close()


# --------------------------------------------------------------------------- --follow
class Reader:
    """The subprocess's stdout lines, read by a thread, taken with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(target=lambda: [self.lines.put(line.rstrip("\n")) for line in stream], daemon=True).start()

    def take(self, count: int, timeout: float = 20) -> list[str]:
        deadline, out = time.monotonic() + timeout, []
        while len(out) < count:
            try:
                out.append(self.lines.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"got {out}, expected {count} line(s)") from None
        return out


def record(level: str, message: str) -> str:
    from datetime import UTC, datetime

    return json.dumps({"timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "level": level,
                       "component": "http", "message": message, "request_id": "req-1"})


def append(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write("".join(line + "\n" for line in lines))


def test_follow_survives_rotation_and_stops_on_sigint(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "email-sender.log"
    append(log, record("ERROR", "old error"), record("INFO", "old info"))
    config = tmp_path / "es-doctor.yaml"
    config.write_text(f"targets:\n  t:\n    service:\n      log_dir: {logs}\n    absent: {{docker: none}}\n",
                      encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ES_DOCTOR_")}
    proc = subprocess.Popen([PY, "-m", "es_doctor", "-c", str(config), "logs", "-F", "--level", "WARN",
                             "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out = Reader(proc)
        assert [json.loads(x)["message"] for x in out.take(1)] == ["old error"]  # the backlog: matching only
        append(log, record("INFO", "not shown"), record("WARN", "warn 1"), "plain text, not shown", "x" * 200_000,
               record("ERROR", "error 1"))
        assert [json.loads(x)["message"] for x in out.take(2)] == ["warn 1", "error 1"]
        writer = log.open("a", encoding="utf-8")  # the service still holds the file it opened
        log.rename(logs / "email-sender.log.1")
        writer.write(record("ERROR", "late line in the rotated file") + "\n")
        writer.flush()
        time.sleep(0.5)
        append(log, record("ERROR", "first of the new file"))
        writer.close()
        assert [json.loads(x)["message"] for x in out.take(2)] == ["late line in the rotated file",
                                                                   "first of the new file"]
        (logs / "email-sender.log.2").write_bytes(log.read_bytes())  # copytruncate
        with log.open("r+b") as handle:
            handle.truncate(0)
        time.sleep(0.5)
        append(log, record("FATAL", "after copytruncate"))
        assert [json.loads(x)["message"] for x in out.take(1)] == ["after copytruncate"]
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr is not None else ""
    assert code == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert "was rotated" in stderr and "was truncated" in stderr


def test_follow_docker_source_then_sigint(erroring_lab: Any) -> None:
    proc = subprocess.Popen([PY, "-m", "es_doctor", "-t", "lab", "logs", "-F", "--source", "docker", "--level",
                             "ERROR", "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=lab_env(erroring_lab))
    try:
        lines = [json.loads(x) for x in Reader(proc).take(2, timeout=60)]
        assert all(line["level"] == "ERROR" for line in lines)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr is not None else ""
    assert code == 130, stderr
    assert "Traceback" not in stderr
