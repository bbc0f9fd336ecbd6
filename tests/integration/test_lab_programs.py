"""The lab programs as real subprocesses on free 127.0.0.1 ports: the service stand-in, the Qdrant
stand-in and the port squatter. Every runtime fault is proven by what a client observes (status
codes, client-side latency, scraped metrics, log lines, RSS, Qdrant errors), never by a flag."""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from es_doctor.lab.runtime_faults import write_faults_file
from support import eventually

pytestmark = pytest.mark.integration

PY = sys.executable
MEMORY_LIMIT = 256 * 1024 * 1024
Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


# ---------------------------------------------------------------- helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


def scrape(url: str) -> Metrics:
    out: Metrics = {}
    for fam in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def val(m: Metrics, name: str, **labels: str) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def stop(self, timeout: float = 5.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return int(self.popen.returncode)

    def err_text(self) -> str:
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""


def spawn(args: list[str], cwd: Path, env: dict[str, str] | None = None, name: str = "proc") -> Proc:
    out, err = cwd / f"{name}.stdout", cwd / f"{name}.stderr"
    full_env = {k: v for k, v in os.environ.items() if k not in ("GO_ENV", "LAB_FAULTS_FILE")}
    full_env.update(env or {})
    with out.open("wb") as o, err.open("wb") as e:
        popen = subprocess.Popen([PY, *args], cwd=cwd, env=full_env, stdout=o, stderr=e)
    return Proc(popen, out, err)


@dataclass
class Svc:
    proc: Proc
    api: str
    metrics_url: str
    metrics_base: str
    log_dir: Path
    faults_file: Path
    cfg: dict[str, Any] = field(default_factory=dict)

    @property
    def log_file(self) -> Path:
        return self.log_dir / "email-sender.log"

    def set_faults(self, *names: str) -> None:
        write_faults_file(self.faults_file, names)
        r = httpx.post(self.api + "/_lab/reload", timeout=30)
        assert sorted(r.json()["faults"]) == sorted(set(names))

    def metrics(self) -> Metrics:
        return scrape(self.metrics_url)

    def log_offset(self) -> int:
        return self.log_file.stat().st_size if self.log_file.exists() else 0

    def log_lines(self, since: int = 0) -> list[dict[str, Any]]:
        with self.log_file.open("rb") as fh:
            fh.seek(since)
            return [json.loads(line) for line in fh.read().decode().splitlines() if line.strip()]


def service_config(tmp: Path, qdrant_url: str, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "api": {"host": "127.0.0.1", "port": free_port()},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": free_port(), "path": "/metrics"},
        "qdrant": {"url": qdrant_url, "collection": "task_vectors", "vector_size": 1536},
        "event_bus": {"buffer_size": 1000, "workers": 10},
        "logging": {"dir": str(tmp / "logs"), "level": "info"},
        "lab": {"faults_file": str(tmp / "faults.json"), "traffic_rps": 6,
                "memory_limit_bytes": MEMORY_LIMIT, "seed_tasks": 0},
    }
    for key, value in over.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


def launch_service(tmp: Path, cfg: dict[str, Any], env: dict[str, str] | None = None,
                   wait: bool = True) -> Svc:
    tmp.mkdir(parents=True, exist_ok=True)
    cfg_path = tmp / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    proc = spawn(["-m", "es_doctor.lab.service", "--config", str(cfg_path)], tmp,
                 {"GO_ENV": "staging", **(env or {})}, name="service")
    api = f"http://127.0.0.1:{cfg['api']['port']}"
    mbase = f"http://127.0.0.1:{cfg['metrics']['port']}"
    svc = Svc(proc, api, mbase + cfg["metrics"]["path"], mbase, Path(cfg["logging"]["dir"]),
              Path(cfg["lab"]["faults_file"]), cfg)
    if wait:
        def up() -> bool:
            assert proc.popen.poll() is None, f"service exited {proc.popen.returncode}: {proc.err_text()}"
            return http_ok(api + "/health")
        eventually(up, 20, message="service /health")
    return svc


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def qdrant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Proc]]:
    tmp = tmp_path_factory.mktemp("qdrant")
    port = free_port()
    faults = tmp / "qdrant-faults.json"
    proc = spawn(["-m", "es_doctor.lab.qdrant_server", "--port", str(port), "--storage", str(tmp / "storage"),
                  "--faults-file", str(faults), "--init-collection", "task_vectors:1536:Cosine"], tmp, name="qdrant")
    url = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            assert proc.popen.poll() is None, f"qdrant exited: {proc.err_text()}"
            return http_ok(url + "/healthz")
        eventually(up, 30, message="qdrant")
        yield url, faults, proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def svc(qdrant: tuple[str, Path, Proc], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Svc]:
    tmp = tmp_path_factory.mktemp("service")
    s = launch_service(tmp, service_config(tmp, qdrant[0]))
    try:
        yield s
    finally:
        code = s.proc.stop()
        assert code == 0, s.proc.err_text()[-2000:]


@pytest.fixture
def clean(svc: Svc) -> Iterator[Svc]:
    """The shared service, with no fault and normal mode before and after the test."""
    svc.set_faults()
    yield svc
    svc.set_faults()
    httpx.post(svc.api + "/api/v1/maintenance/readonly", json={"enabled": False})
    httpx.post(svc.api + "/api/v1/maintenance/disable")
    httpx.post(svc.api + "/api/v1/events/purge")


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[list[Proc]]:
    """Processes a test starts itself; always stopped."""
    procs: list[Proc] = []
    yield procs
    for p in procs:
        p.stop()


def timed_get(url: str) -> tuple[int, float]:
    t = time.perf_counter()
    r = httpx.get(url, timeout=10)
    return r.status_code, time.perf_counter() - t


# ---------------------------------------------------------------- the service: shapes
def test_api_shapes_metrics_pprof_and_logs(clean: Svc) -> None:
    s = clean
    assert httpx.get(s.api + "/health").json() == {"status": "ok"}
    assert httpx.get(s.api + "/ready").json() == {"ready": True}
    managers = httpx.get(s.api + "/api/v1/managers/status").json()["managers"]
    names = {m["name"] for m in managers}
    assert len(managers) >= 25 and "coordinator" in names and "notification-manager" in names
    assert all(m["status"] == "healthy" and m["last_heartbeat"].endswith("Z") for m in managers)
    disc = httpx.get(s.api + "/api/v1/managers/discovery").json()
    assert disc["expected"] == disc["discovered"] and len(disc["expected"]) >= 24
    assert httpx.get(s.api + "/api/v1/maintenance").json() == {"readonly": False, "maintenance": False}
    r = httpx.get(s.api + "/no/such/path")
    assert r.status_code == 404 and r.headers["content-type"] == "application/json" and "error" in r.json()
    r = httpx.post(s.api + "/api/v1/tasks", json={"title": "quarterly invoice reminder"})
    assert r.status_code == 201 and r.json()["vectorized"] is True
    task_id = r.json()["id"]
    hits = httpx.get(s.api + "/api/v1/tasks/search", params={"q": "quarterly invoice reminder"}).json()
    assert hits["results"][0]["payload"]["task_id"] == task_id
    assert httpx.post(s.api + "/api/v1/tasks", json={}).status_code == 400
    assert httpx.get(s.api + "/_lab/faults").json() == {"faults": []}

    eventually(lambda: val(s.metrics(), "email_sender_http_requests_total", route="/api/v1/tasks",
                         method="POST", status="201") > 0, 5, message="task metric")
    m = s.metrics()
    for name in ("email_sender_event_bus_queue_depth", "email_sender_event_bus_capacity",
                 "email_sender_event_bus_dropped_total", "email_sender_event_bus_published_total",
                 "email_sender_qdrant_connection_errors_total", "process_resident_memory_bytes",
                 "process_start_time_seconds", "email_sender_vector_search_duration_seconds_count"):
        assert (name, ()) in m, name
    assert val(m, "email_sender_event_bus_capacity") == 1000
    assert val(m, "email_sender_event_bus_published_total") > 0
    assert val(m, "email_sender_managers_up", manager="notification-manager") == 1
    assert val(m, "email_sender_vector_operations_total", op="insert", result="ok") >= 1
    assert val(m, "email_sender_http_request_duration_seconds_bucket", route="/health", le="0.05") >= 1
    assert ("email_sender_db_connections", (("state", "active"),)) in m
    assert not any(k[0].endswith("_created") for k in m)

    assert "goroutine" in httpx.get(s.metrics_base + "/debug/pprof/").text
    assert "heap profile" in httpx.get(s.metrics_base + "/debug/pprof/heap").text
    assert "goroutine profile" in httpx.get(s.metrics_base + "/debug/pprof/goroutine").text
    t = time.perf_counter()
    prof = httpx.get(s.metrics_base + "/debug/pprof/profile", params={"seconds": 1}, timeout=10)
    assert prof.status_code == 200 and "cpu profile" in prof.text and time.perf_counter() - t >= 0.9

    lines = s.log_lines()
    keys = {"timestamp", "level", "component", "message", "error", "request_id", "user_id", "duration_ms"}
    assert all(set(line) == keys or (line["component"] == "SECURITY" and set(line) == keys | {"client_ip"})
               for line in lines)
    http_lines = [x for x in lines if x["component"] == "http" and x["level"] == "INFO"]
    assert http_lines and http_lines[-1]["timestamp"].endswith("Z") and http_lines[-1]["request_id"]
    datetime.strptime(http_lines[-1]["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert any(x["user_id"] for x in http_lines), "the traffic generator sends user ids"


def test_faults_file_is_polled_without_reload(clean: Svc) -> None:
    write_faults_file(clean.faults_file, ["manager-down"])
    eventually(lambda: httpx.get(clean.api + "/_lab/faults").json()["faults"] == ["manager-down"], 3,
             message="poll of the faults file")


# ---------------------------------------------------------------- the service: runtime faults
def test_slow_api_warn_and_crit(clean: Svc) -> None:
    # Latencies are compared with a baseline taken here, now: the faults' sleeps (150-250 ms, 600-1000 ms)
    # are lower bounds a loaded machine only adds to; the upper bounds are relative to the baseline.
    s = clean
    url = s.api + "/api/v1/managers/status"
    route = {"route": "/api/v1/managers/status"}
    bucket = "email_sender_http_request_duration_seconds_bucket"
    count = "email_sender_http_request_duration_seconds_count"
    calm = s.metrics()
    base = [timed_get(url)[1] for _ in range(5)]
    b = statistics.median(base)
    healthy = s.metrics()
    # the healthy lab answers below the 100 ms WARN threshold, by its own (server-side) clock
    assert val(healthy, bucket, le="0.1", **route) - val(calm, bucket, le="0.1", **route) >= 4, base
    # the same concurrency as the faults' rounds below, healthy: what the machine adds to each request now
    with ThreadPoolExecutor(4) as pool:
        base4 = [d for _c, d in pool.map(timed_get, [url] * 16)]
    with ThreadPoolExecutor(8) as pool:
        base8 = [d for _c, d in pool.map(timed_get, [url] * 8)]
    s.set_faults("slow-api-warn")
    before, off = s.metrics(), s.log_offset()
    with ThreadPoolExecutor(4) as pool:
        warn = [d for _c, d in pool.map(timed_get, [url] * 16)]
    assert 0.13 <= statistics.median(warn) < statistics.median(base4) + 0.5, (base4, warn)
    assert max(warn) < max(base4) + 1.0, (base4, warn)
    health, ready = timed_get(s.api + "/health")[1], timed_get(s.api + "/ready")[1]
    assert health < b + 0.1 and ready < b + 0.5, (b, health, ready)  # the probes are not slowed
    after = s.metrics()
    n = val(after, count, **route) - val(before, count, **route)
    fast = val(after, bucket, le="0.1", **route) - val(before, bucket, le="0.1", **route)
    assert n >= 16 and fast / n < 0.2
    slow_lines = [x for x in s.log_lines(off) if "SLOW request" in x["message"]]
    assert slow_lines and slow_lines[0]["level"] == "WARN" and slow_lines[0]["duration_ms"] > 100

    s.set_faults("slow-api-crit")
    with ThreadPoolExecutor(8) as pool:
        crit = [d for _c, d in pool.map(timed_get, [url] * 8)]
    assert statistics.median(crit) >= 0.55 and max(crit) < max(base8) + 1.5, (base8, crit)
    s.set_faults()
    cleared = [timed_get(url)[1] for _ in range(5)]
    assert statistics.median(cleared) < b + 0.1, (base, cleared)  # the 150 ms+ sleep is gone


def _codes(url: str, n: int) -> list[int]:
    with httpx.Client(timeout=10) as c:
        return [c.get(url).status_code for _ in range(n)]


def test_errors_warn_and_crit(clean: Svc) -> None:
    s = clean
    url = s.api + "/api/v1/maintenance"
    assert set(_codes(url, 50)) == {200}
    s.set_faults("errors-crit")
    before, off = s.metrics(), s.log_offset()
    codes = _codes(url, 300)
    rate = codes.count(500) / len(codes)
    assert 0.07 <= rate <= 0.26, rate
    assert set(_codes(s.api + "/health", 60)) == {200}
    errors = (val(s.metrics(), "email_sender_errors_total", route="/api/v1/maintenance")
              - val(before, "email_sender_errors_total", route="/api/v1/maintenance"))
    assert errors >= codes.count(500)
    assert any(x["level"] == "ERROR" and x["component"] == "http" for x in s.log_lines(off))
    err_log = (s.log_dir / "email-sender-error.log").read_text()
    assert '"level":"ERROR"' in err_log and '"level":"INFO"' not in err_log

    s.set_faults("errors-warn")
    codes = _codes(url, 400)
    rate = codes.count(500) / len(codes)
    assert 0.005 <= rate <= 0.08, rate


def _rss(s: Svc) -> int:
    return int(psutil.Process(s.proc.popen.pid).memory_info().rss)


def test_memory_pressure_and_critical(clean: Svc) -> None:
    s = clean
    assert _rss(s) < 0.6 * MEMORY_LIMIT
    s.set_faults("memory-pressure")
    eventually(lambda: 0.86 * MEMORY_LIMIT <= _rss(s) <= 0.94 * MEMORY_LIMIT, 6, message="RSS ≈ 90 %")
    rss_metric = val(s.metrics(), "process_resident_memory_bytes")
    assert 0.85 * MEMORY_LIMIT <= rss_metric <= 0.95 * MEMORY_LIMIT
    s.set_faults("memory-critical")
    eventually(lambda: 0.95 * MEMORY_LIMIT <= _rss(s) <= 1.0 * MEMORY_LIMIT, 6, message="RSS ≈ 97 %")
    s.set_faults()
    eventually(lambda: _rss(s) < 0.6 * MEMORY_LIMIT, 6, message="ballast released")


def test_slow_logs(clean: Svc) -> None:
    s = clean
    s.set_faults("slow-logs")
    off = s.log_offset()
    time.sleep(2.2)
    # a tick (every 0.4 s) logs a timeout 40 % of the time: wait for one rather than bet on 5 ticks
    deadline = time.monotonic() + 10
    while True:
        new = s.log_lines(off)
        slow = [x for x in new if x["level"] == "WARN" and "SLOW query" in x["message"]]
        timeouts = [x for x in new if x["level"] == "ERROR" and "timeout" in (x["error"] or x["message"])]
        if timeouts or time.monotonic() > deadline:
            break
        time.sleep(0.4)
    assert len(slow) >= 3 and all(x["duration_ms"] > 1000 for x in slow)
    assert timeouts
    s.set_faults()
    time.sleep(0.5)
    off = s.log_offset()
    time.sleep(1.0)
    assert not [x for x in s.log_lines(off) if "SLOW query" in x["message"]]


def test_vector_insert_errors(clean: Svc) -> None:
    s = clean
    s.set_faults("vector-insert-errors")
    before, off = s.metrics(), s.log_offset()
    with httpx.Client(timeout=10) as c:
        replies = [c.post(s.api + "/api/v1/tasks", json={"title": f"vector fault {i}"}) for i in range(160)]
    assert all(r.status_code == 201 for r in replies)
    failed = [r for r in replies if not r.json()["vectorized"]]
    assert failed and len(failed) < 40
    assert "expected dim: 1536, got 768" in failed[0].json()["error"]
    after = s.metrics()
    delta = (val(after, "email_sender_vector_operations_total", op="insert", result="error")
             - val(before, "email_sender_vector_operations_total", op="insert", result="error"))
    assert delta >= len(failed)
    assert val(after, "email_sender_qdrant_connection_errors_total") == val(
        before, "email_sender_qdrant_connection_errors_total")
    errs = [x for x in s.log_lines(off) if x["level"] == "ERROR" and x["component"] == "vector-service"]
    assert errs and "Vector dimension error" in errs[0]["error"]


def test_qdrant_flaky(clean: Svc) -> None:
    s = clean
    s.set_faults("qdrant-flaky")
    before, off = s.metrics(), s.log_offset()
    with httpx.Client(timeout=10) as c:
        replies = [c.get(s.api + "/api/v1/tasks/search", params={"q": f"flaky {i}"}).json() for i in range(60)]
    degraded = [r for r in replies if r.get("degraded")]
    assert 5 <= len(degraded) <= 35
    delta = (val(s.metrics(), "email_sender_qdrant_connection_errors_total")
             - val(before, "email_sender_qdrant_connection_errors_total"))
    assert delta >= len(degraded)
    errs = [x for x in s.log_lines(off) if x["level"] == "ERROR" and x["component"] == "vector-service"]
    assert errs and "connection" in errs[0]["error"].lower()
    s.set_faults()
    before = s.metrics()
    with httpx.Client(timeout=10) as c:
        replies = [c.get(s.api + "/api/v1/tasks/search", params={"q": f"ok {i}"}).json() for i in range(20)]
    assert not [r for r in replies if r.get("degraded")]
    assert val(s.metrics(), "email_sender_qdrant_connection_errors_total") == val(
        before, "email_sender_qdrant_connection_errors_total")


def _manager(s: Svc, name: str) -> dict[str, Any]:
    managers = httpx.get(s.api + "/api/v1/managers/status").json()["managers"]
    return next(m for m in managers if m["name"] == name)


def _age(ts: str) -> float:
    return time.time() - datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def test_manager_down(clean: Svc) -> None:
    s = clean
    s.set_faults("manager-down")
    m = _manager(s, "notification-manager")
    assert m["status"] == "down" and _age(m["last_heartbeat"]) > 60
    assert _manager(s, "email-manager")["status"] == "healthy"
    assert val(s.metrics(), "email_sender_managers_up", manager="notification-manager") == 0
    s.set_faults()
    m = _manager(s, "notification-manager")
    assert m["status"] == "healthy" and _age(m["last_heartbeat"]) < 10
    assert val(s.metrics(), "email_sender_managers_up", manager="notification-manager") == 1


def _discovery(s: Svc) -> tuple[int, int]:
    d = httpx.get(s.api + "/api/v1/managers/discovery").json()
    return len(d["expected"]), len(d["discovered"])


def test_discovery_broken_is_one_shot_and_cured_by_restart(clean: Svc) -> None:
    s = clean
    s.set_faults("discovery-broken")
    expected, discovered = _discovery(s)
    assert discovered <= expected - 5
    r = httpx.post(s.api + "/api/v1/managers/discovery/restart")
    assert r.status_code == 202 and r.json() == {"status": "restarting"}
    assert _discovery(s) == (expected, expected)
    time.sleep(1.2)  # still listed, but one-shot: stays cured
    assert _discovery(s) == (expected, expected)
    s.set_faults()
    s.set_faults("discovery-broken")  # re-activation breaks it again
    assert _discovery(s)[1] < expected
    httpx.post(s.api + "/api/v1/managers/discovery/restart")
    assert _discovery(s) == (expected, expected)


def test_event_bus_saturated_then_purged(clean: Svc) -> None:
    s = clean
    before, off = s.metrics(), s.log_offset()
    s.set_faults("event-bus-saturated")
    m = s.metrics()
    cap = val(m, "email_sender_event_bus_capacity")
    assert val(m, "email_sender_event_bus_queue_depth") >= 0.98 * cap
    assert val(m, "email_sender_event_bus_dropped_total") > val(before, "email_sender_event_bus_dropped_total")
    time.sleep(1.0)
    assert val(s.metrics(), "email_sender_event_bus_queue_depth") >= 0.98 * cap, "workers stay stalled"
    bus = [x for x in s.log_lines(off) if x["component"] == "EventBus" and x["level"] in ("WARN", "ERROR")]
    assert any("event bus queue full, dropping event" in x["message"] for x in bus)
    r = httpx.post(s.api + "/api/v1/events/purge")
    assert r.status_code == 200 and r.json()["purged"] >= 0.98 * cap
    time.sleep(1.5)
    assert val(s.metrics(), "email_sender_event_bus_queue_depth") < 0.1 * cap


def test_readonly_and_maintenance_refuse_writes(clean: Svc) -> None:
    s = clean
    post = lambda: httpx.post(s.api + "/api/v1/tasks", json={"title": "write probe"})  # noqa: E731
    assert post().status_code == 201
    r = httpx.post(s.api + "/api/v1/maintenance/readonly")  # the guide's curl: no body
    assert r.json() == {"readonly": True}
    r = post()
    assert r.status_code == 503 and r.json() == {"error": "read-only"}
    assert httpx.get(s.api + "/api/v1/maintenance").json() == {"readonly": True, "maintenance": False}
    state = json.loads((s.faults_file.parent / "service-state.json").read_text())
    assert state["readonly"] is True
    assert httpx.post(s.api + "/api/v1/maintenance/readonly", json={"enabled": False}).json() == {
        "readonly": False}
    assert post().status_code == 201
    assert httpx.post(s.api + "/api/v1/maintenance/enable").json() == {"maintenance": True}
    assert post().status_code == 503
    assert httpx.post(s.api + "/api/v1/maintenance/disable").json() == {"maintenance": False}
    assert post().status_code == 201


# ---------------------------------------------------------------- the service: startup and shutdown
def test_config_missing_or_invalid_is_fatal(tmp_path: Path) -> None:
    proc = subprocess.run([PY, "-m", "es_doctor.lab.service", "--config", "missing.yaml"], cwd=tmp_path,
                          capture_output=True, timeout=30, check=False)
    assert proc.returncode == 1
    line = json.loads(proc.stderr.decode().strip().splitlines()[-1])
    assert line["level"] == "FATAL" and line["message"] == "config file not found: missing.yaml"
    assert "config file not found" in (tmp_path / "logs" / "email-sender.log").read_text()
    (tmp_path / "bad.yaml").write_text("api: [unclosed\n")
    proc = subprocess.run([PY, "-m", "es_doctor.lab.service", "--config", "bad.yaml"], cwd=tmp_path,
                          capture_output=True, timeout=30, check=False)
    assert proc.returncode == 1 and '"level":"FATAL"' in proc.stderr.decode()


def test_port_taken_by_squatter_is_fatal(tmp_path: Path, standalone: list[Proc]) -> None:
    cfg = service_config(tmp_path, closed_url())
    port = cfg["api"]["port"]
    sq = spawn(["-m", "es_doctor.lab.squatter", "--port", str(port)], tmp_path, name="squatter")
    standalone.append(sq)

    def holds() -> bool:
        with socket.socket() as c:
            return c.connect_ex(("127.0.0.1", port)) == 0
    eventually(holds, 10, message="squatter listening")
    assert "squatter" in " ".join(psutil.Process(sq.popen.pid).cmdline())
    svc = launch_service(tmp_path, cfg, wait=False)
    standalone.append(svc.proc)
    assert svc.proc.popen.wait(20) == 1
    assert f"listen tcp :{port}: bind: address already in use" in svc.proc.err_text()
    assert "address already in use" in (tmp_path / "logs" / "email-sender.log").read_text()
    assert sq.stop() == 0


def test_go_env_unset_qdrant_down_and_metrics_disabled(tmp_path: Path, standalone: list[Proc]) -> None:
    cfg = service_config(tmp_path, closed_url(), metrics={"enabled": False}, lab={"traffic_rps": 0})
    svc = launch_service(tmp_path, cfg, env={"GO_ENV": ""})
    standalone.append(svc.proc)
    r = httpx.get(svc.api + "/ready")
    assert r.status_code == 503 and r.json() == {"ready": False, "waiting_for": ["config", "qdrant"]}
    assert any(x["level"] == "WARN" and "GO_ENV not set" in x["message"] for x in svc.log_lines())
    with pytest.raises(httpx.ConnectError):
        httpx.get(svc.metrics_url, timeout=2)
    # SIGTERM: clean and quick
    svc.proc.popen.send_signal(signal.SIGTERM)
    t = time.perf_counter()
    assert svc.proc.popen.wait(5) == 0 and time.perf_counter() - t < 1.0


def test_service_exits_fault_and_state_survives_restart(tmp_path: Path, standalone: list[Proc]) -> None:
    cfg = service_config(tmp_path, closed_url(), lab={"traffic_rps": 0})
    write_faults_file(tmp_path / "faults.json", ["service-exits"])
    svc = launch_service(tmp_path, cfg, wait=False)
    standalone.append(svc.proc)
    assert svc.proc.popen.wait(20) == 1
    assert "startup aborted" in svc.proc.err_text()
    write_faults_file(tmp_path / "faults.json", [])
    svc = launch_service(tmp_path, cfg)
    standalone.append(svc.proc)
    httpx.post(svc.api + "/api/v1/maintenance/readonly", json={"enabled": True})
    assert svc.proc.stop() == 0
    svc = launch_service(tmp_path, cfg)
    standalone.append(svc.proc)
    assert httpx.get(svc.api + "/api/v1/maintenance").json()["readonly"] is True
    assert httpx.post(svc.api + "/api/v1/tasks", json={"title": "x"}).status_code == 503


def test_bigger_buffer_after_restart_cures_saturation(tmp_path: Path, standalone: list[Proc]) -> None:
    cfg = service_config(tmp_path, closed_url(), event_bus={"buffer_size": 50, "workers": 2},
                         lab={"traffic_rps": 0})
    svc = launch_service(tmp_path, cfg)
    standalone.append(svc.proc)
    svc.set_faults("event-bus-saturated")
    assert val(svc.metrics(), "email_sender_event_bus_queue_depth") >= 49
    assert svc.proc.stop() == 0
    cfg["event_bus"]["buffer_size"] = 500  # the guide's cure; the fault is still listed
    svc = launch_service(tmp_path, cfg)
    standalone.append(svc.proc)
    m = svc.metrics()
    assert val(m, "email_sender_event_bus_capacity") == 500
    assert val(m, "email_sender_event_bus_queue_depth") < 50


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture
def postgres() -> Iterator[str]:
    """A private PostgreSQL cluster (RECIPES.md); skipped where PostgreSQL is not installed."""
    import pwd
    import shutil
    import tempfile

    bindir = _pg_bin()
    try:
        pg_user = pwd.getpwnam("postgres")
    except KeyError:
        pg_user = None
    if bindir is None or pg_user is None:
        pytest.skip("PostgreSQL (initdb, user postgres) not installed")
    root = Path(tempfile.mkdtemp(prefix="lab-pg-"))  # pytest's tmp dirs are 0700 root: not for postgres
    os.chown(root, pg_user.pw_uid, pg_user.pw_gid)
    port = free_port()
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*as_pg, str(bindir / "initdb"), "-D", str(root / "data"), "-U", "postgres", "-A", "trust",
                    "--no-sync", "-E", "UTF8"], check=True, capture_output=True, timeout=60)
    opts = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off"
    subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "pg.log"), "-w",
                    "-o", opts, "start"], check=True, capture_output=True, timeout=60)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_tasks_and_readiness(qdrant: tuple[str, Path, Proc], postgres: str, tmp_path: Path,
                                      standalone: list[Proc]) -> None:
    import psycopg

    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute("CREATE DATABASE email_sender")
    dsn = postgres.rsplit("/", 1)[0] + "/email_sender"
    cfg = service_config(tmp_path, qdrant[0], postgres={"dsn": dsn}, lab={"traffic_rps": 0})
    svc = launch_service(tmp_path, cfg)
    standalone.append(svc.proc)
    assert httpx.get(svc.api + "/ready").json() == {"ready": True}
    r = httpx.post(svc.api + "/api/v1/tasks", json={"title": "stored in postgres"})
    assert r.status_code == 201
    task_id = r.json()["id"]
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT title FROM tasks WHERE id = %s", (task_id,)).fetchone()
    assert row == ("stored in postgres",)
    point = httpx.get(f"{qdrant[0]}/collections/task_vectors/points/{task_id}").json()["result"]
    assert point["payload"]["task_id"] == task_id and len(point["vector"]) == 1536
    assert val(svc.metrics(), "email_sender_db_connections", state="idle") >= 1
    with psycopg.connect(postgres, autocommit=True) as conn:  # the database goes away
        conn.execute("ALTER DATABASE email_sender ALLOW_CONNECTIONS false")
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'email_sender'")
    r = httpx.get(svc.api + "/ready", timeout=10)
    assert r.status_code == 503 and r.json()["waiting_for"] == ["postgres"]


# ---------------------------------------------------------------- the Qdrant stand-in
def test_qdrant_with_the_real_client(qdrant: tuple[str, Path, Proc], tmp_path: Path) -> None:
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm
    from qdrant_client.http.exceptions import UnexpectedResponse

    url = qdrant[0]
    assert httpx.get(url + "/").json() == {"title": "qdrant - vector search engine", "version": "1.12.0"}
    for p in ("/healthz", "/livez", "/readyz"):
        assert httpx.get(url + p).status_code == 200
    assert "collections_total" in httpx.get(url + "/metrics").text
    r = httpx.post(url + "/collections/task_vectors/points/search", json={"vector": [0.1, 0.2, 0.3], "limit": 5})
    assert r.status_code == 400
    assert r.json()["status"]["error"] == "Wrong input: Vector dimension error: expected dim: 1536, got 3"
    assert httpx.get(url + "/collections/nope").status_code == 404

    c = QdrantClient(url=url, check_compatibility=False, timeout=30)
    assert c.collection_exists("task_vectors") and not c.collection_exists("lab_t")
    c.create_collection("lab_t", vectors_config=qm.VectorParams(size=4, distance=qm.Distance.COSINE))
    assert "lab_t" in [x.name for x in c.get_collections().collections]
    assert c.get_collection("lab_t").config.params.vectors.size == 4
    c.upsert("lab_t", points=[qm.PointStruct(id=i, vector=[1.0, i, 0.5, 0.1], payload={"task_id": i})
                              for i in range(1, 21)])
    assert c.count("lab_t").count == 20
    hit = c.query_points("lab_t", query=[1.0, 20, 0.5, 0.1], limit=3, with_payload=True).points[0]
    assert hit.payload == {"task_id": 20}
    recs, nxt = c.scroll("lab_t", limit=15)
    assert len(recs) == 15 and nxt is not None
    assert c.retrieve("lab_t", ids=[3], with_vectors=True)[0].vector is not None
    legacy = httpx.post(url + "/collections/lab_t/points/search",
                        json={"vector": [1.0, 2, 0.5, 0.1], "limit": 2, "with_payload": True}).json()
    assert legacy["status"] == "ok" and len(legacy["result"]) == 2
    with pytest.raises(UnexpectedResponse) as bad:
        c.upsert("lab_t", points=[qm.PointStruct(id=99, vector=[0.1, 0.2])])
    assert bad.value.status_code == 400

    snap = c.create_snapshot("lab_t")
    assert snap is not None and snap.size > 0
    assert snap.name in [x.name for x in c.list_snapshots("lab_t")]
    c.delete("lab_t", points_selector=qm.PointIdsList(points=list(range(1, 11))))
    assert c.count("lab_t").count == 10
    snap_path = qdrant[2].stdout.parent / "storage" / "snapshots" / "lab_t" / snap.name
    assert c.recover_snapshot("lab_t", location=snap_path.as_uri())
    assert c.count("lab_t").count == 20
    data = httpx.get(f"{url}/collections/lab_t/snapshots/{snap.name}").content
    up = httpx.post(url + "/collections/lab_u/snapshots/upload", files={"snapshot": (snap.name, data)})
    assert up.status_code == 200 and c.count("lab_u").count == 20
    assert c.delete_collection("lab_t") and c.delete_collection("lab_u")
    assert not c.collection_exists("lab_t")
    c.close()


def test_qdrant_slow_vector_search_fault(qdrant: tuple[str, Path, Proc]) -> None:
    url, faults, _proc = qdrant
    body = {"query": [0.01] * 1536, "limit": 3}

    def mean_query() -> float:
        with httpx.Client(timeout=10) as c:
            times = []
            for _ in range(8):
                t = time.perf_counter()
                assert c.post(url + "/collections/task_vectors/points/query", json=body).status_code == 200
                times.append(time.perf_counter() - t)
        return statistics.median(times)

    base = mean_query()
    write_faults_file(faults, ["slow-vector-search"])
    try:
        eventually(lambda: mean_query() - base >= 0.07, 5, interval=0.2, message="+80 ms searches")
    finally:
        write_faults_file(faults, [])
    eventually(lambda: mean_query() - base < 0.04, 5, interval=0.2, message="fast searches again")


def test_qdrant_persists_across_restart(tmp_path: Path, standalone: list[Proc]) -> None:
    port = free_port()
    args = ["-m", "es_doctor.lab.qdrant_server", "--port", str(port), "--storage", str(tmp_path / "st"),
            "--init-collection", "task_vectors:8:Cosine"]
    url = f"http://127.0.0.1:{port}"
    q = spawn(args, tmp_path, name="q1")
    standalone.append(q)
    eventually(lambda: http_ok(url + "/healthz"), 30, message="qdrant")
    pts = {"points": [{"id": i, "vector": [0.1 * i] * 8, "payload": {"task_id": i}} for i in range(1, 6)]}
    assert httpx.put(url + "/collections/task_vectors/points?wait=true", json=pts).status_code == 200
    t = time.perf_counter()
    assert q.stop() == 0 and time.perf_counter() - t < 2.0
    q = spawn(args, tmp_path, name="q2")
    standalone.append(q)
    eventually(lambda: http_ok(url + "/healthz"), 30, message="qdrant restarted")
    count = httpx.post(url + "/collections/task_vectors/points/count", json={"exact": True}).json()
    assert count["result"]["count"] == 5
