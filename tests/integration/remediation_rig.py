"""The rig of the remediation end-to-end tests: ``serve`` process(es) watching the lab, a private Prometheus
scraping them with es-doctor's ``--serve`` alert rule, the real Alertmanager configured from
``serve --print-alertmanager-config`` (one webhook per serve: Alertmanager in HA sends every alert to each
receiver), and a local HTTP receiver standing for the notification channel.

The rule is ``EsDoctorCheckCritical`` as ``alert-rules --serve`` prints it, narrowed to the checks these
tests trip and with ``for: 2s`` instead of ``1m`` (CI budget); Alertmanager's group wait and interval are
1 s and its repeat interval 4 s (so repeats are seen). Nothing else is changed.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from conftest import require
from support import eventually, isolated_env

TOKEN = "e2e-remediation-token-5f1c"
CHECKS = ("inter-manager.discovery", "inter-manager.status", "inter-manager.event-bus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"


@dataclass
class Rig:
    serve: str
    prometheus: str
    alertmanager: str
    work: Path
    config: Path
    notes: list[dict[str, Any]] = field(default_factory=list)
    #: every serve's URL (the first is ``serve``)
    serves: list[str] = field(default_factory=list)

    def _get(self, url: str) -> Any:
        got = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert got.status_code == 200, got.text
        return got.json()

    def requests(self, serve: str | None = None) -> list[dict[str, Any]]:
        return self._get(f"{serve or self.serve}/api/v1/requests")["requests"]  # type: ignore[no-any-return]

    def request(self, rid: str, serve: str | None = None) -> dict[str, Any]:
        return self._get(f"{serve or self.serve}/api/v1/requests/{rid}")  # type: ignore[no-any-return]

    def latest_for(self, finding: str, since: float, serve: str | None = None) -> dict[str, Any] | None:
        found = [r for r in self.requests(serve) if r["finding"] == finding and r["created"] >= since]
        return found[0] if found else None

    def am_alerts(self, check: str) -> list[dict[str, Any]]:
        got = httpx.get(f"{self.alertmanager}/api/v2/alerts", params={"filter": f'check="{check}"', "active": "true"},
                        timeout=5)
        return got.json() if got.status_code == 200 else []  # type: ignore[no-any-return]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = isolated_env(self.config.parent / "cli-env", {"ES_DOCTOR_SERVE_TOKEN": TOKEN})
        return subprocess.run([sys.executable, "-m", "es_doctor", "-c", str(self.config), "requests", *args,
                               "--server", self.serve], capture_output=True, text=True, timeout=60, env=env,
                              check=False)


def wait(predicate: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
    """support.eventually with this rig's argument order (``what`` third)."""
    return eventually(predicate, timeout, interval, what)


def _sink(notes: list[dict[str, Any]]) -> http.server.ThreadingHTTPServer:
    class Sink(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            notes.append({"at": time.time(), **json.loads(body)})
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextlib.contextmanager
def start_rig(lab_stack: object, work: Path, serves: int = 1,
              remediation: dict[str, Any] | None = None, checks: tuple[str, ...] = CHECKS) -> Iterator[Rig]:
    """The rig, up; every process stopped on exit. A second serve has its own state dir and audit log (as on
    another host) and the same target. ``checks``: the findings the alert rule fires for."""
    from es_doctor.lab import infra
    from es_doctor.lab.stack import LabStack
    from es_doctor.serve.fleet import serve_rules

    assert isinstance(lab_stack, LabStack)
    require("Alertmanager", None if Path(ALERTMANAGER).exists() else "prometheus-alertmanager is not installed")
    notes: list[dict[str, Any]] = []
    sink = _sink(notes)
    config = {
        "state_dir": str(work / "state"), "audit_log": str(work / "audit.jsonl"),
        "serve": {"interval_s": 2, "jitter_pct": 0, "token": "env:ESD_E2E_TOKEN"},
        "escalation": {"channels": {"hook": {"type": "webhook", "url": f"http://127.0.0.1:{sink.server_port}/n",
                                             "retries": 0, "timeout_s": 5}},
                       "levels": {1: {"channels": ["hook"]}, 2: {"channels": ["hook"]}, 3: {"channels": ["hook"]}}},
        "remediation": remediation or {},
        "targets": {"spare": {}},
    }
    ports = [infra.free_port() for _ in range(serves)]
    prom_port, am_port = infra.free_port(), infra.free_port()
    argvs = []
    for n, port in enumerate(ports):
        own = config if n == 0 else {**config, "state_dir": str(work / f"state-{n}"),
                                     "audit_log": str(work / f"audit-{n}.jsonl")}
        path = work / ("es-doctor.yaml" if n == 0 else f"es-doctor-{n}.yaml")
        path.write_text(yaml.safe_dump(own))
        argvs.append([sys.executable, "-m", "es_doctor", "-c", str(path), "serve", "--targets", "lab",
                      "--listen", f"127.0.0.1:{port}"])
    env = isolated_env(work, {"ES_DOCTOR_LAB_DIR": str(lab_stack.lab_dir)})
    env["ESD_E2E_TOKEN"] = TOKEN
    # Alertmanager's configuration is the one serve prints (its token in a file, as printed)
    printed = subprocess.run([*argvs[0], "--print-alertmanager-config"], capture_output=True, text=True, env=env,
                             timeout=60, check=True).stdout
    assert TOKEN not in printed
    am_config = yaml.safe_load(printed)
    token_file = work / "am.token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    hook = am_config["receivers"][0]["webhook_configs"][0]
    hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    am_config["receivers"][0]["webhook_configs"] = [
        {**hook, "url": hook["url"].replace(f":{ports[0]}/", f":{port}/")} for port in ports]
    am_config["route"].update({"group_wait": "1s", "group_interval": "1s", "repeat_interval": "4s"})
    (work / "am.yml").write_text(yaml.safe_dump(am_config))
    # Prometheus: scrapes serve, loads the serve rule, sends to Alertmanager
    rule = next(r for r in serve_rules(2)["groups"][0]["rules"] if r["alert"] == "EsDoctorCheckCritical")
    rule["expr"] = f'es_doctor_check_status{{check=~"{"|".join(c.replace(".", "[.]") for c in checks)}"}} == 2'
    rule["for"] = "2s"
    (work / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "es-doctor-serve", "rules": [rule]}]}))
    # one serve scraped: with two, the series are the same per target and one alert per check is enough
    prom_cfg = infra.prometheus_config([f"127.0.0.1:{ports[0]}"], job="es-doctor",
                                       rule_files=[str(work / "rules.yml")])
    prom_cfg["scrape_configs"][0]["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}
    prom_cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]}
    infra.write_prometheus_config(work / "prometheus.yml", prom_cfg)
    log = (work / "serve.log").open("w")
    procs = [
        *(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work) for argv in argvs),
        subprocess.Popen([ALERTMANAGER, f"--config.file={work / 'am.yml'}", f"--storage.path={work / 'am'}",
                          f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                         stdout=subprocess.DEVNULL, stderr=(work / "am.log").open("w")),
        subprocess.Popen(infra.prometheus_argv(work / "prometheus.yml", prom_port, work / "prom"),
                         stdout=subprocess.DEVNULL, stderr=(work / "prometheus.log").open("w")),
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url in urls:
            wait(lambda url=url: infra.http_ok(f"{url}/healthz"), 30, "serve answers /healthz")
        wait(lambda: infra.http_ok(f"http://127.0.0.1:{am_port}/-/ready"), 30, "Alertmanager is ready")
        wait(lambda: infra.prometheus_target_up(f"http://127.0.0.1:{prom_port}", "es-doctor"), 40,
             "Prometheus scrapes serve")
        yield Rig(urls[0], f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}", work,
                  work / "es-doctor.yaml", notes, urls)
    finally:
        for child in procs:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
        sink.shutdown()
        log.close()
        print((work / "serve.log").read_text()[-3000:])
        print((work / "am.log").read_text()[-2000:])
