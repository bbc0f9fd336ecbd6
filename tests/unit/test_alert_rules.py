"""The generated alert rules carry the guide's thresholds and pass promtool."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from es_doctor.alert_rules import render_rules
from es_doctor.config import Target, Thresholds


def test_rules_carry_the_guide_thresholds() -> None:
    rules = yaml.safe_load(render_rules(Target()))["groups"][0]["rules"]
    by_name = {r["alert"]: r for r in rules}
    assert by_name["EmailSenderLatencyP95Warning"]["expr"].endswith("> 0.1")
    assert by_name["EmailSenderLatencyP95Critical"]["expr"].endswith("> 0.5")
    assert by_name["EmailSenderErrorRateWarning"]["expr"].endswith("> 0.01")
    assert by_name["EmailSenderErrorRateCritical"]["expr"].endswith("> 0.05")
    assert by_name["EmailSenderMemoryWarning"]["expr"].endswith("> 0.85")
    assert by_name["EmailSenderVectorInsertErrors"]["expr"].endswith("> 0.001")
    assert by_name["EmailSenderVectorSearchSlow"]["expr"].endswith("> 0.05")
    assert by_name["EmailSenderQdrantConnectionErrors"]["labels"]["severity"] == "critical"
    custom = yaml.safe_load(render_rules(Target(thresholds=Thresholds(latency_p95_warn_ms=250))))
    assert any(r["expr"].endswith("> 0.25") for r in custom["groups"][0]["rules"])


@pytest.mark.skipif(shutil.which("promtool") is None and os.environ.get("CI") != "true", reason="no promtool")
def test_rules_pass_promtool(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(render_rules(Target()))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout


def test_every_rule_links_its_runbook_or_the_escalation_page() -> None:
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    rules = yaml.safe_load(render_rules(Target()))["groups"][0]["rules"]
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        labels = rule["labels"]
        page = f"{labels['runbook']}.yaml" if "runbook" in labels else "ESCALATION.md"
        assert url.startswith("file://") and url.endswith("/" + page), (rule["alert"], url)
        assert Path(url2pathname(urlsplit(url).path)).is_file(), url  # the default links the shipped file
        assert rule["annotations"]["description"]
    assert any("escalate" in r["labels"] for r in rules)  # the escalation page is linked too


def test_the_runbook_base_url_is_configurable_and_checked() -> None:
    from es_doctor.cli.main import main
    from es_doctor.errors import ExitStatus

    base = "https://git.example.com/ops/es-doctor/-/blob/main/runbooks/"
    rules = yaml.safe_load(render_rules(Target(), base))["groups"][0]["rules"]
    by_name = {r["alert"]: r for r in rules}
    assert by_name["EmailSenderMemoryWarning"]["annotations"]["runbook_url"] == base + "go-gc-tune.yaml"
    assert by_name["EmailSenderErrorRateWarning"]["annotations"]["runbook_url"] == base + "ESCALATION.md"
    for bad in ("ftp://x/runbooks", "runbooks/", "https://"):
        with pytest.raises(ValueError, match="runbook-base-url"):
            render_rules(Target(), bad)
    assert main(["alert-rules", "--runbook-base-url", "nope"]) == ExitStatus.USAGE


@pytest.mark.skipif(shutil.which("promtool") is None and os.environ.get("CI") != "true", reason="no promtool")
@pytest.mark.parametrize("base", [None, "https://git.example.com/ops/es-doctor/-/blob/main/runbooks"])
def test_rules_with_runbook_urls_pass_promtool(base: str | None, tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(render_rules(Target(), base))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout
    assert path.read_text().count("runbook_url:") == 12


@pytest.mark.parametrize(("seconds", "duration"), [(86_400, "1d"), (30, "30s"), (3600, "1h"), (5400, "90m"),
                                                   (90.5, "90s")])
def test_uptime_rules_watch_monitoring_uptime_over_its_window(tmp_path: Path, seconds: float, duration: str) -> None:
    target = Target(thresholds=Thresholds(uptime_window_s=seconds))
    by_name = {r["alert"]: r for r in yaml.safe_load(render_rules(target))["groups"][0]["rules"]}
    warning, critical = by_name["EmailSenderUptimeWarning"], by_name["EmailSenderUptimeCritical"]
    assert warning["expr"] == f'avg_over_time(up{{job=~"email-sender|email-sender-go"}}[{duration}]) < 0.999'
    assert critical["expr"].endswith(f"[{duration}]) < 0.99")
    # no runbook gives lost availability back: the alert names the guide's level 1, like the check
    assert warning["labels"]["finding"] == critical["labels"]["finding"] == "monitoring.uptime"
    assert warning["labels"]["escalate"] == "1" and "runbook" not in warning["labels"]
    if shutil.which("promtool") is not None or os.environ.get("CI") == "true":
        path = tmp_path / "rules.yml"
        path.write_text(render_rules(target))
        result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True,
                                check=False)
        assert result.returncode == 0, result.stdout + result.stderr
