"""The operator-facing outputs on the real lab (docker mode: real containers, PostgreSQL, Prometheus) with a
fault: Nagios' status line, perfdata and long text; the textfile written with --output and read by
promtool; the alert rules with their runbook_url loaded by the lab's real Prometheus."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from es_doctor.findings import Status
from support import cli_command, isolated_env

pytestmark = [pytest.mark.integration, pytest.mark.docker]

NUM = r"-?[0-9]+(?:\.[0-9]+)?"
PERFDATA = re.compile(rf"'[a-z0-9_.-]+'={NUM}(?:s|ms|%|B)?;(?:{NUM}:?)?;(?:{NUM}:?)?;(?:{NUM})?;(?:{NUM})?")


def es_doctor(lab: Any, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = isolated_env(tmp_path, {"ES_DOCTOR_LAB_DIR": str(lab.lab_dir),
                                  "ES_DOCTOR_STATE_DIR": str(tmp_path / "state")})
    return subprocess.run(cli_command("-t", "lab", *args), capture_output=True, text=True,
                          env=env, timeout=180, check=False)


def _tripped(lab: Any, check_id: str, timeout: float = 45.0) -> None:
    from es_doctor.runner import diagnose

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finding = next(f for f in diagnose(lab.target, "lab", [check_id]).findings if f.id == check_id)
        if finding.status in (Status.WARN, Status.CRIT):
            return
        time.sleep(1.0)
    raise AssertionError(f"{check_id} did not trip")


def test_nagios_on_the_lab_with_a_fault(healthy_lab: Any, tmp_path: Path) -> None:
    healthy_lab.add_fault("memory-pressure")
    _tripped(healthy_lab, "performance.memory")
    result = es_doctor(healthy_lab, tmp_path, "diagnose", "--format", "nagios")
    assert result.returncode in (1, 2), result.stdout + result.stderr
    first, *long_text = result.stdout.rstrip("\n").split("\n")
    status, perf = first.split(" | ")
    assert status.startswith(("ES-DOCTOR WARNING: ", "ES-DOCTOR CRITICAL: "))
    items = perf.split(" ")
    for item in items:
        assert PERFDATA.fullmatch(item), item
    labels = [item.split("=", 1)[0] for item in items]
    assert len(labels) == len(set(labels)) and not any("._" in label for label in labels)
    usage = next(i for i in items if i.startswith("'performance.memory.usage'="))
    assert re.fullmatch(r"'performance\.memory\.usage'=[0-9]+B;;;0;[0-9]+", usage), usage
    assert any(line.startswith("WARN performance.memory: ") and "(fix: es-doctor -t lab fix go-gc-tune)" in line
               for line in long_text), long_text
    assert all(re.match(r"(WARN|CRIT|UNKNOWN) [a-z-]+\.[a-z-]+: ", line) for line in long_text), long_text


def test_prometheus_textfile_on_the_lab_passes_promtool(healthy_lab: Any, tmp_path: Path) -> None:
    healthy_lab.add_fault("memory-pressure")
    _tripped(healthy_lab, "performance.memory")
    out = tmp_path / "textfile" / "es_doctor.prom"
    out.parent.mkdir()
    for _ in range(2):  # a second run replaces the first
        result = es_doctor(healthy_lab, tmp_path, "diagnose", "-f", "prometheus", "-o", str(out))
        assert result.returncode in (1, 2) and result.stdout == "", result.stdout + result.stderr
    text = out.read_text(encoding="utf-8")
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert re.search(r'es_doctor_check_status\{check="performance.memory",class="performance",target="lab"\} 1', text)
    assert [p.name for p in out.parent.iterdir()] == ["es_doctor.prom"]


def test_the_labs_prometheus_loads_the_rules_es_doctor_writes(healthy_lab: Any) -> None:
    import yaml

    from es_doctor.alert_rules import RuleOptions, render_rules

    written = yaml.safe_load(render_rules(healthy_lab.target, RuleOptions("lab", target_label="lab")))
    expected = {r["alert"] for g in written["groups"] for r in g["rules"]}
    url = healthy_lab.target.prometheus.url
    groups = httpx.get(f"{url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [r for g in groups for r in g["rules"] if r["type"] == "alerting"]
    assert {r["name"] for r in rules} == expected
    for rule in rules:
        assert rule["labels"]["target"] == "lab", rule  # an alert names its target (for Alertmanager's receiver)
        assert rule["annotations"]["description"], rule
        # no --runbook-base-url: no link to a path on the machine that wrote the rules
        assert "runbook_url" not in rule["annotations"], rule
