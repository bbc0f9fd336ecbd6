"""The generated alert rules: the guide's thresholds, each signal's PromQL (es_doctor.signals), promtool's
``check rules`` and ``test rules`` (every annotation renders with the labels its expression keeps), runbook
URLs from --runbook-base-url only, commands with -t, the target label, and escaped label values."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from es_doctor.alert_rules import FINDINGS, KEEPS_INSTANCE, RuleOptions, render_rules
from es_doctor.config import MetricNames, PrometheusConfig, Target, Thresholds, parse_size
from es_doctor.errors import ConfigError

BASE = "https://git.example.com/ops/es-doctor/-/blob/main/runbooks"


def promtool() -> str:
    """promtool is installed here and in CI (scripts/install-test-deps.sh): its absence is a failure."""
    path = shutil.which("promtool")
    assert path is not None, "promtool is not installed (scripts/install-test-deps.sh installs it)"
    return path


def rules_of(target: Target, opts: RuleOptions | None = None) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(render_rules(target, opts or RuleOptions("prod")))
    return {r["alert"]: r for r in doc["groups"][0]["rules"]}


def check_rules(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False,
                          timeout=60)


def test_rules_carry_the_guide_thresholds() -> None:
    by_name = rules_of(Target())
    assert "> 0.1 and" in by_name["EmailSenderLatencyP95Warning"]["expr"]
    assert "> 0.5 and" in by_name["EmailSenderLatencyP95Critical"]["expr"]
    assert "> 0.01 and" in by_name["EmailSenderErrorRateWarning"]["expr"]
    assert "> 0.05 and" in by_name["EmailSenderErrorRateCritical"]["expr"]
    assert by_name["EmailSenderMemoryWarning"]["expr"].endswith("> 0.85")
    assert "> 0.001 and" in by_name["EmailSenderVectorInsertErrors"]["expr"]
    assert "> 0.05 and" in by_name["EmailSenderVectorSearchSlow"]["expr"]
    assert by_name["EmailSenderQdrantConnectionErrors"]["labels"]["severity"] == "critical"
    custom = rules_of(Target(thresholds=Thresholds(latency_p95_warn_ms=250)))
    assert "> 0.25 and" in custom["EmailSenderLatencyP95Warning"]["expr"]


def test_rates_carry_the_sample_rule_and_leave_the_probe_routes_out() -> None:
    """The error rate: Wilson lower bound over the signal window, on at least min_requests, the probe
    routes left out (like the check, the dashboard and the widgets)."""
    by_name = rules_of(Target(thresholds=Thresholds(min_requests=250, signal_window_s=120)))
    expr = by_name["EmailSenderErrorRateWarning"]["expr"]
    assert "sqrt(" in expr and ">= 250" in expr and "[2m]" in expr
    assert 'route!~"/health|/ready|/metrics"' in expr
    assert 'route!~"/health|/ready|/metrics"' in by_name["EmailSenderLatencyP95Warning"]["expr"]
    assert ">= 10" in by_name["EmailSenderLatencyP95Warning"]["expr"]  # min_observations


def test_rules_pass_promtool(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(render_rules(Target(), RuleOptions("prod", BASE, "prod")))
    result = check_rules(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(FINDINGS)} rules found" in result.stdout


def test_runbook_urls_only_from_the_base_url_given() -> None:
    """No default file:// of the generating machine: without --runbook-base-url, no runbook_url."""
    for rule in rules_of(Target()).values():
        assert "runbook_url" not in rule["annotations"], rule["alert"]
        assert rule["annotations"]["description"]
    by_name = rules_of(Target(), RuleOptions("prod", BASE + "/"))
    assert by_name["EmailSenderMemoryWarning"]["annotations"]["runbook_url"] == BASE + "/go-gc-tune.yaml"
    assert by_name["EmailSenderErrorRateWarning"]["annotations"]["runbook_url"] == BASE + "/ESCALATION.md"
    for rule in by_name.values():
        page = f"{rule['labels']['runbook']}.yaml" if "runbook" in rule["labels"] else "ESCALATION.md"
        assert rule["annotations"]["runbook_url"] == f"{BASE}/{page}"


@pytest.mark.parametrize("bad", ["file:///home/me/es-doctor/runbooks", "/home/me/runbooks", "runbooks/",
                                 "ftp://x/runbooks", "https://"])
def test_a_local_or_bad_runbook_base_url_is_refused(bad: str) -> None:
    from es_doctor.cli.main import main
    from es_doctor.errors import ExitStatus

    with pytest.raises(ValueError, match="runbook-base-url"):
        render_rules(Target(), RuleOptions("prod", bad))
    assert main(["alert-rules", "--runbook-base-url", bad]) == ExitStatus.USAGE


def test_commands_in_annotations_name_the_target() -> None:
    for rule in rules_of(Target(), RuleOptions("prod west")).values():
        description = rule["annotations"]["description"]
        assert "`es-doctor -t 'prod west' diagnose --check " + rule["labels"]["finding"] + "`" in description
        assert "es-doctor diagnose" not in description and "es-doctor fix" not in description


def test_target_label_on_every_rule_when_asked() -> None:
    assert all("target" not in r["labels"] for r in rules_of(Target()).values())
    assert all(r["labels"]["target"] == "lab" for r in rules_of(Target(), RuleOptions("lab", None, "lab")).values())


def test_cli_target_label_and_runbook_base_url(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from es_doctor.cli.main import main

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert main(["alert-rules", "--target-label", "prod", "--runbook-base-url", BASE]) == 0
    out = capsys.readouterr()
    rules = yaml.safe_load(out.out)["groups"][0]["rules"]
    assert all(r["labels"]["target"] == "prod" for r in rules)
    assert all(r["annotations"]["runbook_url"].startswith(BASE + "/") for r in rules)
    assert main(["alert-rules"]) == 0
    assert "no --runbook-base-url" in capsys.readouterr().err


# --------------------------------------------------------------------------- promtool test rules


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"')
    body = ",".join(f'{k}="{esc(v)}"' for k, v in labels.items())
    return {"series": f"{name}{{{body}}}", "values": values}


def _all_bad_series(target: Target, job: str, instance: str) -> list[dict[str, str]]:
    """Series under which every guide rule fires (interval 15 s)."""
    m, where = target.metrics, {"job": job, "instance": instance}
    limit = parse_size(target.service.memory_limit)
    out = [_series("up", where, "0x60"),
           _series(m.requests_total, {**where, "route": "/api/v1/tasks", "status": "200"}, "0+50x60"),
           _series(m.requests_total, {**where, "route": "/api/v1/tasks", "status": "500"}, "0+50x60"),
           _series(m.resident_memory, where, f"{int(limit * 0.99)}x60"),
           _series(m.vector_operations, {**where, "op": "insert", "result": "ok"}, "0+10x60"),
           _series(m.vector_operations, {**where, "op": "insert", "result": "error"}, "0+10x60"),
           _series(m.qdrant_connection_errors, where, "0+5x60"),
           _series(m.event_bus_depth, where, "99x60"),
           _series(m.event_bus_capacity, where, "100x60")]
    for hist, extra in ((m.request_duration, {"route": "/api/v1/tasks"}), (m.vector_search_duration, {})):
        for le, values in (("0.05", "0x60"), ("1", "0+20x60"), ("+Inf", "0+20x60")):
            out.append(_series(f"{hist}_bucket", {**where, **extra, "le": le}, values))
        out.append(_series(f"{hist}_count", {**where, **extra}, "0+20x60"))
    return out


def _expected(rule: dict[str, Any], job: str, instance: str) -> dict[str, Any]:
    labels = dict(rule["labels"])
    annotations = dict(rule["annotations"])
    if rule["alert"] in KEEPS_INSTANCE:
        labels.update(job=job, instance=instance)
    annotations = {k: v.replace("{{ $labels.instance }}", instance) for k, v in annotations.items()}
    return {"exp_labels": labels, "exp_annotations": annotations}


def run_promtool_test(tmp_path: Path, target: Target, opts: RuleOptions, job: str,
                      expect_firing: bool = True) -> subprocess.CompletedProcess[str]:
    rules = tmp_path / "rules.yml"
    rules.write_text(render_rules(target, opts))
    by_name = {r["alert"]: r for r in yaml.safe_load(rules.read_text())["groups"][0]["rules"]}
    instance = "10.0.0.7:8081"
    tests = {"rule_files": [str(rules)], "evaluation_interval": "15s",
             "tests": [{"interval": "15s", "input_series": _all_bad_series(target, job, instance),
                        "alert_rule_test": [{"eval_time": "10m", "alertname": name,
                                             "exp_alerts": [_expected(rule, job, instance)] if expect_firing
                                             else []}
                                            for name, rule in by_name.items()]}]}
    path = tmp_path / "tests.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    return subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True, text=True, check=False,
                          timeout=120)


def test_every_annotation_renders_with_the_labels_its_expression_keeps(tmp_path: Path) -> None:
    """promtool evaluates each rule on series that make it fire and compares its labels and its rendered
    annotations: a description templating a label the aggregation dropped renders "" and fails here."""
    result = run_promtool_test(tmp_path, Target(), RuleOptions("prod", BASE, "prod"), "email-sender")
    assert result.returncode == 0, result.stdout + result.stderr
    for rule in rules_of(Target()).values():
        if rule["alert"] not in KEEPS_INSTANCE:
            assert "$labels" not in yaml.safe_dump(rule["annotations"]), rule["alert"]


INJECTION = 'email"} or vector(1) or up{job="x'


@pytest.mark.parametrize("job", [INJECTION, "back\\slash", "dots.and|bars"])
def test_job_names_are_escaped_label_values(tmp_path: Path, job: str) -> None:
    """A job name is matched as itself: the rules pass promtool, fire on that job's series, and do not
    fire on another job's (the injection would make them always fire)."""
    target = Target(prometheus=PrometheusConfig(jobs=[job]))
    path = tmp_path / "rules.yml"
    path.write_text(render_rules(target, RuleOptions("prod")))
    result = check_rules(path)
    assert result.returncode == 0, result.stdout + result.stderr
    (tmp_path / "own").mkdir()
    own = run_promtool_test(tmp_path / "own", target, RuleOptions("prod"), job)
    assert own.returncode == 0, own.stdout + own.stderr
    (tmp_path / "other").mkdir()
    other = run_promtool_test(tmp_path / "other", target, RuleOptions("prod"), "x", expect_firing=False)
    assert other.returncode == 0, other.stdout + other.stderr


@pytest.mark.parametrize("name", ["email_sender_x{job=\"a\"}", "email sender", "a\\b", "1abc", 'x"} or vector(1)'])
def test_a_metric_name_that_is_not_one_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="not a Prometheus metric name"):
        render_rules(Target(metrics=MetricNames(requests_total=name)), RuleOptions("prod"))


@pytest.mark.parametrize(("seconds", "duration"), [(86_400, "1d"), (30, "30s"), (3600, "1h"), (5400, "90m"),
                                                   (90.5, "90s")])
def test_uptime_rules_watch_monitoring_uptime_over_its_window(tmp_path: Path, seconds: float, duration: str) -> None:
    target = Target(thresholds=Thresholds(uptime_window_s=seconds))
    by_name = rules_of(target)
    warning, critical = by_name["EmailSenderUptimeWarning"], by_name["EmailSenderUptimeCritical"]
    assert warning["expr"] == f'avg_over_time(up{{job=~"email-sender|email-sender-go"}}[{duration}]) < 0.999'
    assert critical["expr"].endswith(f"[{duration}]) < 0.99")
    # no runbook gives lost availability back: the alert names the guide's level 1, like the check
    assert warning["labels"]["finding"] == critical["labels"]["finding"] == "monitoring.uptime"
    assert warning["labels"]["escalate"] == "1" and "runbook" not in warning["labels"]
    path = tmp_path / "rules.yml"
    path.write_text(render_rules(target, RuleOptions("prod")))
    result = check_rules(path)
    assert result.returncode == 0, result.stdout + result.stderr
