"""es-doctor dashboard: the guide's widgets as a Grafana dashboard, through grafana-foundation-sdk's model."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from es_doctor import cures
from es_doctor.checks.registry import load_all
from es_doctor.cli.main import main
from es_doctor.config import MetricNames, Target, Thresholds
from es_doctor.dashboard import build, from_json, panels_for, queries, to_json
from es_doctor.errors import ConfigError, ExitStatus

#: the guide's "Dashboard Recommandé", in its order, and the availability row's uptime
WIDGETS = ["Service status", "API response time", "Error rate", "Memory / CPU", "Vector operations/s",
           "Manager status", "Event bus throughput", "Database connections", "Uptime"]


def board(target: Target | None = None, name: str = "default") -> dict[str, Any]:
    data: dict[str, Any] = json.loads(to_json(build(target or Target(), name)))
    return data


def panel(data: dict[str, Any], title: str) -> dict[str, Any]:
    [found] = [p for p in data["panels"] if p["title"].startswith(title)]
    return found


def steps(found: dict[str, Any]) -> list[tuple[float | None, str]]:
    return [(s["value"], s["color"]) for s in found["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def test_the_json_round_trips_through_the_sdk_model_without_loss() -> None:
    text = to_json(build(Target(), "default"))
    again = to_json(from_json(text))
    assert json.loads(again) == json.loads(text)
    assert again == text  # same keys, same order (sorted), same values


def test_the_eight_widgets_and_the_uptime_are_there() -> None:
    data = board()
    titles = [p["title"] for p in data["panels"]]
    for widget in WIDGETS:
        assert any(t.startswith(widget) for t in titles), (widget, titles)
    assert len(titles) == len(WIDGETS)
    assert len({p["id"] for p in data["panels"]}) == len(titles)
    assert data["uid"] == "es-doctor-default" and data["title"] == "EMAIL_SENDER_1: default"
    # the datasource is the importer's choice: a variable, not an address of ours
    assert data["templating"]["list"][0]["type"] == "datasource"
    assert {p["datasource"]["uid"] for p in data["panels"]} == {"${datasource}"}
    assert {p["type"] for p in data["panels"]} == {"stat", "timeseries"}


def test_each_panel_names_the_finding_and_its_cure_from_the_cure_table() -> None:
    checks = load_all()
    for spec in panels_for(Target()):
        found = panel(board(), spec.title)
        assert spec.findings, spec.title
        for finding in spec.findings:
            assert finding in checks
            assert f"es-doctor diagnose --check {finding}" in found["description"]
            remedy = cures.remedy_for(finding)
            if remedy is None:
                assert f"level {cures.escalation_for(finding)}" in found["description"]
            else:
                assert f"es-doctor fix {finding}` (runbook {remedy.runbook})" in found["description"]
    assert "(runbook service-restart)" in panel(board(), "Service status")["description"]
    assert "(runbook vector-cache-tune)" in panel(board(), "API response time")["description"]
    assert "(runbook go-gc-tune)" in panel(board(), "Memory / CPU")["description"]
    assert "(runbook event-bus-purge)" in panel(board(), "Event bus")["description"]


def test_the_guide_thresholds_are_the_panel_thresholds() -> None:
    data = board()
    assert steps(panel(data, "API response time")) == [(None, "green"), (0.1, "orange"), (0.5, "red")]
    assert steps(panel(data, "Error rate")) == [(None, "green"), (0.01, "orange"), (0.05, "red")]
    assert steps(panel(data, "Memory / CPU")) == [(None, "green"), (0.85, "orange"), (0.95, "red")]
    assert steps(panel(data, "Uptime")) == [(None, "red"), (0.99, "orange"), (0.999, "green")]
    assert steps(panel(data, "Service status")) == [(None, "red"), (1, "green")]
    assert panel(data, "API response time")["fieldConfig"]["defaults"]["unit"] == "s"
    assert panel(data, "API response time")["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"


def test_thresholds_window_and_limit_come_from_the_target() -> None:
    target = Target(thresholds=Thresholds(latency_p95_warn_ms=250, latency_p95_crit_ms=900, uptime_warn_pct=99.5,
                                          uptime_window_s=3600, memory_warn_pct=70),
                    service={"memory_limit": "512M"})  # type: ignore[arg-type]
    data = board(target)
    assert steps(panel(data, "API response time"))[1:] == [(0.25, "orange"), (0.9, "red")]
    assert steps(panel(data, "Memory / CPU"))[1] == (0.7, "orange")
    uptime = panel(data, "Uptime")
    assert uptime["title"] == "Uptime (1h)" and steps(uptime)[2] == (0.995, "green")
    assert uptime["targets"][0]["expr"].endswith("[1h]))")
    assert f"/ {512 * 2**20}" in panel(data, "Memory / CPU")["targets"][0]["expr"]


def test_queries_use_the_target_metric_names_and_jobs() -> None:
    target = Target(metrics=MetricNames(requests_total="acme_http_total", managers_up="acme_managers_up",
                                        db_connections="acme_db_conns"),
                    prometheus={"jobs": ["acme"]})  # type: ignore[arg-type]
    exprs = dict(queries(board(target)))
    everything = " ".join(e for _, e in queries(board(target)))
    assert "acme_http_total" in exprs["Error rate (1 h, 24 h)"] and "email_sender_http_requests_total" not in everything
    assert exprs["Manager status"] == 'min by (manager) (acme_managers_up{job=~"acme"})'
    assert exprs["Database connections"] == 'sum by (state) (acme_db_conns{job=~"acme"})'
    # every query selects the service's job
    assert all('job=~"acme"' in e for _, e in queries(board(target))), everything
    # probe routes are not the users' errors (as performance.error-rate counts them)
    assert 'route!~"/health|/ready|/metrics"' in exprs["Error rate (1 h, 24 h)"]


def test_every_panel_has_a_promql_query_and_a_description() -> None:
    data = board()
    for found in data["panels"]:
        assert found["targets"], found["title"]
        assert all(t["expr"] and t["refId"] for t in found["targets"])
        assert "es-doctor (target default)" in found["description"]
    error_rate = panel(data, "Error rate")
    assert [t["legendFormat"] for t in error_rate["targets"]] == ["1 h", "24 h"]
    assert [t["legendFormat"] for t in panel(data, "API response time")["targets"]] == ["p50", "p95", "p99"]


@pytest.mark.parametrize("name", ['requests{le="x"}', "a b", "", "9lives"])
def test_a_metric_name_that_is_not_one_is_refused(name: str) -> None:
    target = Target(metrics=MetricNames(requests_total=name))
    with pytest.raises(ConfigError, match=r"metrics\.requests_total"):
        build(target, "default")


def test_no_secret_or_address_reaches_the_dashboard() -> None:
    target = Target(prometheus={"url": "http://admin:pr0m-s3cret@prom.internal:9090"},  # type: ignore[arg-type]
                    service={"api_url": "http://svc:api-s3cret@svc.internal:8080", "api_key": "k3y-s3cret"},
                    postgres={"dsn": "postgresql://u:pg-s3cret@db/email_sender"})
    text = to_json(build(target, "production"))
    for secret in ("s3cret", "prom.internal", "svc.internal", "@"):
        assert secret not in text


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ES_DOCTOR_")}
    env.update({"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "ES_DOCTOR_LAB_DIR": str(tmp_path / "nolab"),
                "HOME": str(tmp_path)})
    return subprocess.run([sys.executable, "-m", "es_doctor", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120, check=False)


def test_cli_prints_the_dashboard(tmp_path: Path) -> None:
    result = _run(["dashboard"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == board()


def test_cli_out_writes_atomically_0644_and_replaces(tmp_path: Path) -> None:
    out = tmp_path / "dash.json"
    out.write_text("old")
    out.chmod(0o600)
    result = _run(["dashboard", "--out", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stderr and "9 panels" in result.stderr
    assert json.loads(out.read_text()) == board()
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dash.json")] == []  # no temporary left


@pytest.mark.parametrize(("where", "code", "words"), [
    ("missing/dash.json", ExitStatus.CANT_CREATE, "cannot write"),
    (".", ExitStatus.USAGE, "is a directory"),
])
def test_cli_out_that_cannot_be_written_is_a_clear_error(tmp_path: Path, where: str, code: int, words: str) -> None:
    result = _run(["dashboard", "--out", str(tmp_path / where)], tmp_path)
    assert result.returncode == code, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr


def test_cli_bad_metric_name_is_a_config_error(tmp_path: Path) -> None:
    config = "targets:\n  default:\n    metrics:\n      managers_up: 'up or vector(1)'\n"
    (tmp_path / "es-doctor.yaml").write_text(config)
    result = _run(["dashboard"], tmp_path)
    assert result.returncode == ExitStatus.CONFIG, result.stderr
    assert "metrics.managers_up" in result.stderr and "Traceback" not in result.stderr


def test_help_does_not_import_the_grafana_sdk() -> None:
    code = ("import sys\nfrom es_doctor.cli.main import main\nrc = main(['--help'])\n"
            "print('SDK=' + str('grafana_foundation_sdk' in sys.modules))\nsys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "SDK=False" in result.stdout
    assert main(["dashboard", "--help"]) == ExitStatus.OK


def test_the_grid_stays_within_24_columns_without_overlaps() -> None:
    data = board()
    cells: set[tuple[int, int]] = set()
    for found in data["panels"]:
        pos = found["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, (found["title"], pos)
        mine = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & mine, f"{found['title']} overlaps another panel"
        cells |= mine


def test_time_series_rates_follow_grafanas_rate_interval() -> None:
    for title, expr in queries(board()):
        assert "[5m]" not in expr, (title, expr)
        if "rate(" in expr:
            assert "[$__rate_interval]" in expr, (title, expr)


def test_cpu_has_its_own_unit_and_axis_not_the_memory_percent() -> None:
    memory = panel(board(), "Memory / CPU")
    assert memory["fieldConfig"]["defaults"]["unit"] == "percentunit"
    [override] = memory["fieldConfig"]["overrides"]
    cpu_ref = next(t["refId"] for t in memory["targets"] if "process_cpu_seconds_total" in t["expr"])
    assert override["matcher"] == {"id": "byFrameRefID", "options": cpu_ref}
    assert {p["id"]: p["value"] for p in override["properties"]} == {"unit": "short", "custom.axisPlacement": "right"}


def test_the_dashboard_queries_are_the_signals() -> None:
    """The latency and error-rate panels are the signals' PromQL (the alert rules' and the checks' definitions)."""
    from es_doctor.signals import API_LATENCY, ERROR_RATE

    target = Target()
    exprs = dict(queries(board(target)))
    assert exprs["Error rate (1 h, 24 h)"] == ERROR_RATE.ratio_promql(target, "24h")
    latency = [e for t, e in queries(board(target)) if t.startswith("API response time")]
    assert latency[1] == API_LATENCY.quantile_promql(target, 0.95, "$__rate_interval")
