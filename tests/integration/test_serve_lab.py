"""es-doctor serve against the real lab: a real Prometheus scrapes it, Debian's chromium renders its page,
and two other targets, one that hangs (accepts connections, never answers) and one stopped (every port
refuses), do not slow the lab's cadence.

One ``serve`` process (targets ``lab``, ``hung`` and ``stopped``, 4 s interval) and one private Prometheus
(scraping it every second) are shared by the module's tests: CI budget.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from es_doctor.findings import Status
from es_doctor.serve.exposition import STATUS_VALUE
from support import cli_command, eventually, isolated_env, require

pytestmark = [pytest.mark.integration, pytest.mark.docker]

INTERVAL_S = 4.0
CHECK = "inter-manager.status"  # the lab's manager-down fault makes it CRIT
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@dataclass
class Serve:
    url: str
    prometheus: str
    workdir: Path

    def report(self, target: str = "lab") -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/v1/targets/{target}/report", timeout=5)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def query(self, expr: str) -> dict[str, float]:
        data = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=5).json()
        return {item["metric"].get("check", item["metric"].get("target", "")): float(item["value"][1])
                for item in data["data"]["result"]}


def _hung_listener() -> tuple[socket.socket, int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock, sock.getsockname()[1]


@pytest.fixture(scope="module")
def serve(lab_stack: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    from es_doctor.lab import infra
    from es_doctor.lab.stack import LabStack

    assert isinstance(lab_stack, LabStack)
    work = tmp_path_factory.mktemp("serve")
    hung, port = _hung_listener()
    hung_url = f"http://127.0.0.1:{port}"
    stopped_port = infra.free_port()  # nothing listens there
    stopped_url = f"http://127.0.0.1:{stopped_port}"
    config = {
        "state_dir": str(work / "state"),
        "serve": {"interval_s": INTERVAL_S, "jitter_pct": 10},
        "targets": {"hung": {
            "service": {"api_url": hung_url, "metrics_url": f"{hung_url}/metrics", "log_dir": str(work / "nologs")},
            "qdrant": {"url": hung_url}, "prometheus": {"url": hung_url},
            "postgres": {"dsn": f"postgresql://x@127.0.0.1:{port}/x"},
            "absent": {"docker": "bare-metal test target", "grafana": "none", "redis": "none"},
            "check_timeout_s": 20, "deadline_s": 12},  # probes wait 5 s each
            # a second stack that is stopped: every one of its ports refuses connections
            "stopped": {
                "service": {"api_url": stopped_url, "metrics_url": f"{stopped_url}/metrics",
                            "log_dir": str(work / "nologs")},
                "qdrant": {"url": stopped_url}, "prometheus": {"url": stopped_url},
                "postgres": {"dsn": f"postgresql://x@127.0.0.1:{stopped_port}/x"},
                "absent": {"docker": "bare-metal test target", "grafana": "none", "redis": "none"}}},
    }
    (work / "es-doctor.yaml").write_text(yaml.safe_dump(config))
    serve_port = infra.free_port()
    env = isolated_env(work, {"ES_DOCTOR_LAB_DIR": str(lab_stack.lab_dir)})
    log = (work / "serve.log").open("w")
    proc = subprocess.Popen(cli_command("-c", str(work / "es-doctor.yaml"), "serve",
                                        "--targets", "lab", "--targets", "hung", "--targets", "stopped",
                                        "--listen", f"127.0.0.1:{serve_port}"),
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    url = f"http://127.0.0.1:{serve_port}"
    prom_port = infra.free_port()
    prom_cfg = infra.prometheus_config([f"127.0.0.1:{serve_port}"], job="es-doctor")
    infra.write_prometheus_config(work / "prometheus.yml", prom_cfg)
    prom = subprocess.Popen(infra.prometheus_argv(work / "prometheus.yml", prom_port, work / "prom"),
                            stdout=subprocess.DEVNULL, stderr=(work / "prometheus.log").open("w"))
    try:
        eventually(lambda: infra.http_ok(f"{url}/healthz"), 20, message="serve answers /healthz")
        eventually(lambda: httpx.get(f"{url}/ready", timeout=5).status_code == 200, 40, message="serve is ready")
        eventually(lambda: infra.prometheus_target_up(f"http://127.0.0.1:{prom_port}", "es-doctor"), 30,
                   message="Prometheus scrapes serve")
        yield Serve(url, f"http://127.0.0.1:{prom_port}", work)
    finally:
        for child in (proc, prom):
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
        hung.close()
        log.close()
        print((work / "serve.log").read_text()[-3000:])
    assert proc.returncode == 0  # a clean stop on SIGTERM


def _same_report_in_prometheus(serve: Serve) -> tuple[dict[str, Any], dict[str, float]] | None:
    """The JSON report and Prometheus' series of it, once Prometheus holds that very report (same start)."""
    report = serve.report()
    started = report["started_at"]
    from datetime import datetime

    want = datetime.fromisoformat(started).timestamp()
    last = serve.query('es_doctor_last_run_timestamp_seconds{target="lab"}').get("lab")
    if last is None or abs(last - want) > 0.001:
        return None
    series = serve.query('es_doctor_check_status{target="lab"}')
    if serve.report()["started_at"] != started:
        return None  # a newer run landed meanwhile: try again
    return report, series


def _assert_prometheus_holds_the_report(serve: Serve, check_status: Status, timeout: float) -> None:
    def matches() -> tuple[dict[str, Any], dict[str, float]] | None:
        got = _same_report_in_prometheus(serve)
        if got is None:
            return None
        report, _ = got
        status = next(f["status"] for f in report["findings"] if f["id"] == CHECK)
        return got if status == check_status.value else None

    report, series = eventually(matches, timeout, message=f"{CHECK} {check_status} in the report and in Prometheus")
    expected = {f["id"]: STATUS_VALUE[Status(f["status"])] for f in report["findings"]}
    assert series == expected  # every check's series is the value the JSON report holds
    assert series[CHECK] == STATUS_VALUE[check_status]


def test_prometheus_scrapes_serve_and_holds_the_json_report_values(serve: Serve, healthy_lab: Any) -> None:
    _assert_prometheus_holds_the_report(serve, Status.OK, timeout=3 * INTERVAL_S + 20)
    healthy_lab.add_fault("manager-down")
    _assert_prometheus_holds_the_report(serve, Status.CRIT, timeout=3 * INTERVAL_S + 20)
    # the report API, the exposition and the history agree on the change
    history = httpx.get(f"{serve.url}/api/v1/targets/lab/history", timeout=5).json()["changes"]
    assert any(c["check"] == CHECK and c["to"] == "CRIT" for c in history)
    assert serve.query('es_doctor_target_up{target="lab"}') == {"lab": 1.0}


# --------------------------------------------------------------------------- the page in a real browser


def _chromium(args: list[str], work: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    profile = work / f"chromium-{time.monotonic_ns()}"
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                           "--enable-logging=stderr", "--v=0", "--no-first-run", "--disable-extensions",
                           "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", "--metrics-recording-only", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def _page_status(serve: Serve, artifacts: Path, label: str) -> tuple[str | None, str]:
    """Render the page in chromium: the status the page shows for CHECK (after scripts, as a person sees it),
    with its net log checked: no request left for another host, no console error."""
    netlog = artifacts / f"netlog-{label}-{time.monotonic_ns()}.json"
    result = _chromium([f"--log-net-log={netlog}", "--window-size=1280,900", "--dump-dom", f"{serve.url}/"],
                       artifacts)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    # the page's own requests (those it initiated: the browser's background ones say "not an origin")
    events = json.loads(netlog.read_text())["events"]
    page = {e["params"]["url"] for e in events
            if (e.get("params") or {}).get("initiator") == serve.url and "url" in e["params"]}
    assert f"{serve.url}/assets/style.css" in page  # the stylesheet, from the package: the log does see them
    assert {urlsplit(u).hostname for u in page} == {"127.0.0.1"}, page
    found = re.search(rf'data-check="{re.escape(CHECK)}" data-status="(\w+)"><td data-label="status">'
                      r'<span class="st st-\w+">(.) (\w+)</span>', result.stdout)
    if not found:
        return None, result.stdout
    status, symbol, word = found.groups()
    assert (symbol, word) == (Status(status).symbol, status)  # symbol and word, never colour alone
    return status, result.stdout


def _screenshot(serve: Serve, path: Path) -> None:
    result = _chromium(["--window-size=1280,2400", f"--screenshot={path}", f"{serve.url}/"], path.parent)
    assert result.returncode == 0 and path.stat().st_size > 10_000, result.stderr[-2000:]


def test_status_page_in_chromium_shows_a_fault_within_one_interval(serve: Serve, healthy_lab: Any,
                                                                    tmp_path: Path) -> None:
    require("chromium", None if os.path.exists(CHROMIUM) else "chromium not installed (apt-get install chromium)")
    eventually(lambda: _page_status(serve, tmp_path, "healthy")[0] == "OK", 3 * INTERVAL_S + 30,
               message="page shows OK")
    healthy_lab.add_fault("manager-down")
    injected, injected_at = time.monotonic(), time.time()
    # within one interval (plus its jitter and the run itself, ~2 s here, and a browser start)
    eventually(lambda: _page_status(serve, tmp_path, "fault")[0] == "CRIT", INTERVAL_S * 1.1 + 12,
               message="page shows CRIT")
    assert time.monotonic() - injected <= INTERVAL_S * 1.1 + 12
    # the run that caught it started within one interval (+ jitter, + 1 s for the lab program to notice)
    changes = httpx.get(f"{serve.url}/api/v1/targets/lab/history", timeout=5).json()["changes"]
    caught = min(c["at"] for c in changes if c["check"] == CHECK and c["to"] == "CRIT" and c["at"] >= injected_at - 3)
    assert caught - injected_at <= INTERVAL_S * 1.1 + 1.0, caught - injected_at
    status, dom = _page_status(serve, tmp_path, "fault")
    assert status == "CRIT"
    assert re.search(r"✗ [\w-]+ DOWN</li>", dom), "the manager grid shows the down manager"
    for widget in ("service", "latency", "errors", "memory", "vectors", "managers", "eventbus", "db"):
        assert f'data-widget="{widget}"' in dom
    _screenshot(serve, tmp_path / "status-fault.png")
    healthy_lab.clear()
    eventually(lambda: _page_status(serve, tmp_path, "cleared")[0] == "OK", 3 * INTERVAL_S + 30,
               message="page healthy again")
    _screenshot(serve, tmp_path / "status-healthy.png")
    # a phone-sized viewport renders too (the table turns into stacked rows)
    _chromium(["--window-size=390,844", f"--screenshot={tmp_path / 'status-phone.png'}", f"{serve.url}/"], tmp_path)
    assert (tmp_path / "status-phone.png").stat().st_size > 5_000
    print(f"screenshots: {tmp_path}")


# --------------------------------------------------------------------------- a hung target


def test_a_hung_target_and_a_stopped_one_do_not_delay_the_lab(serve: Serve) -> None:
    starts: list[str] = []
    deadline = time.monotonic() + 5 * INTERVAL_S
    while time.monotonic() < deadline:
        targets = {t["name"]: t for t in httpx.get(f"{serve.url}/api/v1/targets", timeout=5).json()}
        stamp = targets["lab"]["started_at"]
        if stamp and (not starts or starts[-1] != stamp):
            starts.append(stamp)
        time.sleep(0.25)
    from datetime import datetime

    times = [datetime.fromisoformat(s).timestamp() for s in starts]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    hung = serve.report("hung")
    assert hung["duration_ms"] / 1000 > INTERVAL_S  # the hung target's runs really are slower than the interval
    assert len(gaps) >= 3, starts
    assert all(gap <= INTERVAL_S * 1.1 + 1.0 for gap in gaps), gaps  # the lab kept its cadence
    assert json.dumps(hung).count('"UNKNOWN"') + json.dumps(hung).count('"CRIT"') > 0
    stopped = {f["id"]: f for f in serve.report("stopped")["findings"]}
    assert stopped["startup.api-port"]["status"] == "CRIT", stopped["startup.api-port"]
    assert stopped["startup.postgres"]["status"] == "CRIT", stopped["startup.postgres"]
