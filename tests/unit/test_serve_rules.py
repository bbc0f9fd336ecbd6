"""The --serve alert rules: summary, description and (with a base URL) runbook_url on each, and each
annotation renders (promtool test rules) with a command that names its target."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from es_doctor.serve.fleet import render_serve_rules, serve_rules

BASE = "https://git.example.com/ops/es-doctor/-/blob/main/runbooks"


def test_every_serve_rule_has_a_description_and_a_runbook_url_when_given_a_base() -> None:
    for rule in serve_rules(30)["groups"][0]["rules"]:
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert "runbook_url" not in rule["annotations"]
    for rule in serve_rules(30, BASE + "/")["groups"][0]["rules"]:
        assert rule["annotations"]["runbook_url"].startswith(BASE + "/"), rule["alert"]


def test_serve_rule_annotations_render_with_the_target(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is not installed (scripts/install-test-deps.sh installs it)"
    rules = tmp_path / "rules.yml"
    rules.write_text(render_serve_rules(30, BASE))
    by_name = {r["alert"]: r for r in yaml.safe_load(rules.read_text())["groups"][0]["rules"]}
    series = ('es_doctor_check_status{job="es-doctor",instance="h:9109",target="prod",class="vectors",'
              'check="vectors.qdrant"}')
    critical = by_name["EsDoctorCheckCritical"]
    labels = {**critical["labels"], "job": "es-doctor", "instance": "h:9109", "target": "prod", "class": "vectors",
              "check": "vectors.qdrant"}
    annotations = {k: v.replace("{{ $labels.target }}", "prod").replace("{{ $labels.check }}", "vectors.qdrant")
                   for k, v in critical["annotations"].items()}
    assert "`es-doctor -t prod fix vectors.qdrant`" in annotations["description"]
    tests = {"rule_files": [str(rules)], "evaluation_interval": "15s",
             "tests": [{"interval": "15s", "input_series": [{"series": series, "values": "2x20"}],
                        "alert_rule_test": [{"eval_time": "3m", "alertname": "EsDoctorCheckCritical",
                                             "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}]}]}]}
    path = tmp_path / "tests.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
