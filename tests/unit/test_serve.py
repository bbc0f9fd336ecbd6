"""es-doctor serve, the parts that need no stack: the scheduler, the store, the exposition (promtool),
the bearer-token refusal, SIGHUP with a bad config, the page, the fleet files and multi-target diagnose."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from es_doctor.config import Target, load_targets
from es_doctor.errors import ConfigError, ExitStatus
from es_doctor.findings import MULTI_REPORT_SCHEMA_VERSION, REPORT_SCHEMA_VERSION, Evidence, Finding, Report, Status
from es_doctor.serve.daemon import Daemon, Settings, settings_from
from es_doctor.serve.scheduler import Scheduler, Timing
from es_doctor.serve.store import Store
from support import eventually, require


def make_report(target: str, statuses: dict[str, Status], summary: str = "measured") -> Report:
    return Report(tool_version="test", target=target, started_at=dt.datetime.now(dt.UTC), duration_ms=12.0,
                  findings=[Finding(id=check, check_class=check.split(".")[0], status=status, summary=summary,
                                    evidence=[Evidence(name="value", value=1.5, unit="ms")], duration_ms=3.0)
                            for check, status in statuses.items()])


# --------------------------------------------------------------------------- scheduler


def test_a_slow_target_never_overlaps_itself_nor_delays_the_others() -> None:
    active: dict[str, int] = {"fast": 0, "slow": 0}
    peak: dict[str, int] = {"fast": 0, "slow": 0}
    starts: dict[str, list[float]] = {"fast": [], "slow": []}
    lock = threading.Lock()

    def run(name: str, item: float) -> str:
        with lock:
            active[name] += 1
            peak[name] = max(peak[name], active[name])
            starts[name].append(time.monotonic())
        time.sleep(item)
        with lock:
            active[name] -= 1
        return name

    scheduler: Scheduler[float, str] = Scheduler(run, lambda n, r: None, Timing(0.3, 10))
    scheduler.set_targets({"fast": 0.01, "slow": 1.5})
    time.sleep(2.2)
    scheduler.stop(wait_s=3)
    assert peak == {"fast": 1, "slow": 1}  # never two runs of one target at once
    # the slow target (1.5 s per run, interval 0.3 s) ran back to back, at most twice
    assert 1 <= len(starts["slow"]) <= 2
    # the fast one kept its cadence: every 0.3 s ± 10 % (+ scheduling slack)
    gaps = [b - a for a, b in zip(starts["fast"], starts["fast"][1:], strict=False)]
    assert len(gaps) >= 5
    assert all(0.26 <= g <= 0.6 for g in gaps), gaps
    assert len({round(g, 3) for g in gaps}) > 1  # jittered, not in lockstep


def test_scheduler_adds_and_removes_targets() -> None:
    seen: list[str] = []
    scheduler: Scheduler[int, str] = Scheduler(lambda n, i: n, lambda n, r: seen.append(r), Timing(0.2, 0))
    scheduler.set_targets({"a": 1})
    time.sleep(0.5)
    scheduler.set_targets({"b": 1})
    assert scheduler.names() == ["b"]
    seen.clear()
    time.sleep(0.5)
    scheduler.stop(wait_s=1)
    assert "b" in seen and "a" not in seen


def test_a_run_that_raises_keeps_the_schedule() -> None:
    calls = []

    def run(name: str, item: int) -> str:
        calls.append(name)
        raise RuntimeError("boom")

    scheduler: Scheduler[int, str] = Scheduler(run, lambda n, r: None, Timing(0.1, 0))
    scheduler.set_targets({"a": 1})
    time.sleep(0.45)
    stats = scheduler.stats()["a"]
    scheduler.stop(wait_s=1)
    assert len(calls) >= 3 and stats.failures >= 3 and stats.runs == 0


# --------------------------------------------------------------------------- store


def test_store_is_private_and_records_only_changes(tmp_path: Path) -> None:
    path = tmp_path / "state" / "serve" / "serve.db"
    store = Store(path, retention_days=1)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    first = store.record(make_report("t", {"startup.api-port": Status.OK, "vectors.qdrant": Status.OK}), now=1000)
    assert {(c["check"], c["from"], c["to"]) for c in first} == {("startup.api-port", None, "OK"),
                                                                   ("vectors.qdrant", None, "OK")}
    assert store.record(make_report("t", {"startup.api-port": Status.OK, "vectors.qdrant": Status.OK}),
                        now=1010) == []
    changed = store.record(make_report("t", {"startup.api-port": Status.OK, "vectors.qdrant": Status.CRIT}),
                           now=1020)
    assert [(c["check"], c["from"], c["to"]) for c in changed] == [("vectors.qdrant", "OK", "CRIT")]
    assert store.since("t") == {"startup.api-port": 1000, "vectors.qdrant": 1020}
    assert store.latest("t")["findings"][1]["status"] == "CRIT"  # type: ignore[index]
    # a day and more later: old changes are pruned but each check's latest stays (it says "since when")
    store.record(make_report("t", {"startup.api-port": Status.OK, "vectors.qdrant": Status.OK}), now=1000 + 90000)
    history = store.history("t")
    assert [(h["check"], h["to"]) for h in history] == [("vectors.qdrant", "OK"), ("startup.api-port", "OK")]
    store.close()


# --------------------------------------------------------------------------- exposition


class _Source:
    def __init__(self, reports: dict[str, Report]) -> None:
        self._reports = reports

    def reports(self) -> dict[str, Report]:
        return self._reports

    def run_counts(self) -> dict[str, tuple[int, int]]:
        return dict.fromkeys(self._reports, (3, 0))

    def reload_state(self) -> tuple[bool, float]:
        return True, 1.0


def _series(text: str, name: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))] = sample.value
    return out


def test_exposition_passes_promtool_with_one_numeric_series_per_check() -> None:
    require("promtool")
    from es_doctor.serve.exposition import exposition, registry_for

    reports = {"prod": make_report("prod", {"startup.api-port": Status.OK, "vectors.qdrant": Status.CRIT,
                                            "performance.latency": Status.WARN, "monitoring.alerts": Status.UNKNOWN,
                                            "monitoring.grafana": Status.SKIP}),
               "staging": make_report("staging", {"startup.api-port": Status.CRIT})}
    text = b"".join(exposition(r) for r in registry_for(_Source(reports))).decode()
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    status = _series(text, "es_doctor_check_status")
    assert status == {
        "check=startup.api-port,class=startup,target=prod": 0, "check=vectors.qdrant,class=vectors,target=prod": 2,
        "check=performance.latency,class=performance,target=prod": 1,
        "check=monitoring.alerts,class=monitoring,target=prod": 3,
        "check=monitoring.grafana,class=monitoring,target=prod": -1,
        "check=startup.api-port,class=startup,target=staging": 2}
    assert _series(text, "es_doctor_target_up") == {"target=prod": 1, "target=staging": 0}
    assert _series(text, "es_doctor_runs_total") == {"target=prod": 3, "target=staging": 3}
    assert "process_resident_memory_bytes" in text and "es_doctor_last_run_timestamp_seconds" in text


# --------------------------------------------------------------------------- settings, auth, reload


def _config(path: Path, targets: dict[str, int], extra: str = "") -> Path:
    lines = [f"state_dir: {path.parent / 'state'}", "serve:", "  interval_s: 1", "  jitter_pct: 0", extra, "targets:"]
    for name, port in targets.items():
        lines += [f"  {name}:", "    service:", f"      api_url: http://127.0.0.1:{port}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def fake_run(name: str, target: Target) -> Report:
    return make_report(name, {"startup.api-port": Status.OK, "vectors.qdrant": Status.WARN},
                       summary=f"api at {target.service.api_url}")


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[object]:
    made: list[Daemon] = []

    def make(config: Path, listen: str = "127.0.0.1:0") -> Daemon:
        daemon = Daemon(lambda: settings_from(load_targets(str(config), [], True), listen), run=fake_run,
                        widgets=False)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.stop()


def test_refuses_to_listen_off_loopback_without_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(tmp_path / "c.yaml", {"a": 1})
    with pytest.raises(ConfigError, match="without a bearer token"):
        settings_from(load_targets(str(config), [], True), "0.0.0.0:9109")
    # the CLI exits 78 and binds nothing
    from es_doctor.cli.main import main

    assert main(["-c", str(config), "serve", "--all-targets", "--listen", "0.0.0.0:9109"]) == ExitStatus.CONFIG
    # a token named but not set is refused too
    tokened = _config(tmp_path / "t.yaml", {"a": 1}, "  token: env:ESD_TEST_TOKEN")
    monkeypatch.delenv("ESD_TEST_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="not set"):
        settings_from(load_targets(str(tokened), [], True), "0.0.0.0:9109")
    monkeypatch.setenv("ESD_TEST_TOKEN", "s3cret-token")
    settings = settings_from(load_targets(str(tokened), [], True), "0.0.0.0:9109")
    assert settings.token == "s3cret-token"


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_every_path_but_healthz_needs_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                daemon_factory: object) -> None:
    from es_doctor.serve.http import Server

    monkeypatch.setenv("ESD_TEST_TOKEN", "s3cret-token")
    config = _config(tmp_path / "c.yaml", {"a": 1}, "  token: env:ESD_TEST_TOKEN")
    daemon: Daemon = daemon_factory(config)  # type: ignore[operator]
    server = Server(daemon)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    status, body = _get(f"{base}/ready", "s3cret-token")
    assert (status, json.loads(body)) == (503, {"ready": False, "waiting_for": ["a"]})  # not diagnosed yet
    assert _get(f"{base}/api/v1/targets/a/report", "s3cret-token")[0] == 503
    daemon.start()
    try:
        eventually(lambda: daemon.ready()[0], 10, 0.05)
        assert _get(f"{base}/ready", "s3cret-token")[0] == 200
        assert _get(f"{base}/api/v1/targets/nope/report", "s3cret-token")[0] == 404
        assert _get(f"{base}/healthz") == (200, b"ok\n")
        for path in ("/", "/metrics", "/ready", "/assets/style.css", "/api/v1/targets", "/api/v1/targets/a/report",
                     "/api/v1/targets/a/history", "/nonexistent"):
            assert _get(base + path)[0] == 401, path
            assert _get(base + path, "wrong-token")[0] == 401, path
        status, body = _get(f"{base}/api/v1/targets/a/report", "s3cret-token")
        assert status == 200
        assert json.loads(body)["findings"][1]["status"] == "WARN"
        status, page = _get(f"{base}/", "s3cret-token")
        assert status == 200 and b"s3cret-token" not in page
        status, metrics = _get(f"{base}/metrics", "s3cret-token")
        assert status == 200 and b"s3cret-token" not in metrics
        assert b"s3cret-token" not in daemon.store.path.read_bytes()
        # read-only
        request = urllib.request.Request(f"{base}/api/v1/targets/a/report", method="POST", data=b"",
                                         headers={"Authorization": "Bearer s3cret-token"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 405
    finally:
        server.shutdown()
        server.server_close()


def test_sighup_with_a_bad_config_keeps_the_old_one(tmp_path: Path, daemon_factory: object) -> None:
    config = _config(tmp_path / "c.yaml", {"a": 8080})
    daemon: Daemon = daemon_factory(config)  # type: ignore[operator]
    daemon.start()
    previous = signal.getsignal(signal.SIGHUP)
    daemon.install_sighup()
    try:
        eventually(lambda: daemon.ready()[0], 10, 0.05)
        config.write_text(config.read_text().replace("api_url", "api_ulr"))  # an unknown key: refused
        os.kill(os.getpid(), signal.SIGHUP)
        eventually(lambda: daemon.reload_state()[0] is False, 10, 0.05)
        assert daemon.names() == ["a"]
        runs = daemon.run_counts()["a"][0]
        eventually(lambda: daemon.run_counts()["a"][0] > runs, 10, 0.05)  # still diagnosing with the old config
        assert daemon.reports()["a"].findings[0].summary == "api at http://127.0.0.1:8080"
        _config(config, {"a": 8080, "b": 9090})  # a good one: applied
        os.kill(os.getpid(), signal.SIGHUP)
        eventually(lambda: daemon.names() == ["a", "b"] and daemon.reload_state()[0], 10, 0.05)
        eventually(lambda: "b" in daemon.reports(), 10, 0.05)
        assert daemon.reports()["b"].findings[0].summary == "api at http://127.0.0.1:9090"
    finally:
        signal.signal(signal.SIGHUP, previous)


# --------------------------------------------------------------------------- page, fleet files


def test_page_reads_without_colour_and_escapes_everything() -> None:
    from es_doctor.serve.page import TargetView, render_page
    from es_doctor.serve.widgets import Widget

    report = make_report("prod", {"vectors.qdrant": Status.CRIT, "startup.api-port": Status.OK},
                         summary="<script>alert(1)</script>")
    page = render_page([TargetView("prod", report, {"vectors.qdrant": time.time() - 120},
                                   [Widget("latency", "API response time", "p95 40 ms", trend=[1, 2, 3])])], 30)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "✗ CRIT" in page and "✓ OK" in page  # symbol and word, not colour alone
    assert 'data-check="vectors.qdrant" data-status="CRIT"' in page
    assert "2 min ago" in page and "▁" in page
    assert "http://" not in page and "https://" not in page  # nothing from another host


def test_serve_rules_and_scrape_config_pass_promtool(tmp_path: Path) -> None:
    require("promtool")
    import yaml

    from es_doctor.serve.fleet import render_serve_rules, scrape_config

    rules = tmp_path / "rules.yml"
    rules.write_text(render_serve_rules(30))
    result = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "es_doctor_check_status == 2" in rules.read_text()
    settings = Settings("0.0.0.0", 9109, 30, 10, "tok", "env:TOKEN", 30, tmp_path)
    text = scrape_config(settings)
    assert "tok\n" not in text and "env:TOKEN" in text
    (tmp_path / "es-doctor.token").write_text("x")
    job = yaml.safe_load(text)
    job["scrape_configs"][0]["authorization"]["credentials_file"] = str(tmp_path / "es-doctor.token")
    job["rule_files"] = [str(rules)]
    (tmp_path / "prom.yml").write_text(yaml.safe_dump(job))
    result = subprocess.run(["promtool", "check", "config", str(tmp_path / "prom.yml")], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_serve_one_target_with_the_root_option_prints_its_scrape_job(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from es_doctor.cli.main import main

    config = _config(tmp_path / "c.yaml", {"a": 1, "b": 2})
    assert main(["-c", str(config), "-t", "b", "serve", "--listen", "127.0.0.1:9200", "--interval", "20s",
                 "--print-scrape-config"]) == ExitStatus.OK
    out = capsys.readouterr().out
    assert "127.0.0.1:9200" in out and "scrape_interval: 20s" in out and "authorization" not in out
    assert main(["-c", str(config), "serve", "--interval", "soon", "--print-scrape-config"]) == ExitStatus.USAGE
    settings = settings_from(load_targets(str(config), ["b"]))
    assert list(settings.targets) == ["b"]


# --------------------------------------------------------------------------- multi-target diagnose


def test_diagnose_several_targets_json_is_schema_2_and_exits_with_the_worst(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from es_doctor.cli.main import main

    config = _config(tmp_path / "c.yaml", {"one": 9, "two": 9})
    rc = main(["-c", str(config), "diagnose", "-t", "one", "-t", "two", "--class", "startup", "--format", "json",
               "--deadline", "10"])
    data = json.loads(capsys.readouterr().out)
    assert data["schema_version"] == MULTI_REPORT_SCHEMA_VERSION == "2.2"
    assert [r["target"] for r in data["reports"]] == ["one", "two"]
    assert all(r["schema_version"] == REPORT_SCHEMA_VERSION for r in data["reports"])
    assert rc == data["exit_code"] == ExitStatus.CRITICAL  # nothing listens on port 9
    # one target: the report as it is
    rc_one = main(["-c", str(config), "diagnose", "-t", "one", "--class", "startup", "--format", "json"])
    single = json.loads(capsys.readouterr().out)
    assert single["schema_version"] == REPORT_SCHEMA_VERSION and single["target"] == "one"
    assert rc_one == ExitStatus.CRITICAL
    # the table ends with one summary line per target
    main(["-c", str(config), "diagnose", "--all-targets", "--class", "startup"])
    out = capsys.readouterr().out
    assert "targets:" in out and "✗ one" in out and "✗ two" in out


def test_shipped_multi_report_schema_is_current() -> None:
    from es_doctor.render.json_report import multi_report_schema

    shipped = json.loads((Path(__file__).parents[2] / "docs" / "reports.schema.json").read_text())
    assert shipped == multi_report_schema(), "regenerate docs/reports.schema.json (see README)"
