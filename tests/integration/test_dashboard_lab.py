"""es-doctor dashboard against the lab's real Prometheus: every panel's PromQL query, as the dashboard
carries it, returns data; the dashboard written for the lab target round-trips through the SDK's model."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from es_doctor.dashboard import from_json, queries, to_json

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def instant(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """The query's answer now; Grafana's ``$__rate_interval`` stands for a minute (Grafana replaces it)."""
    expr = expr.replace("$__rate_interval", "1m")
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_every_panel_query_returns_data_from_the_labs_prometheus(healthy_lab: Any, tmp_path: Path) -> None:
    out = tmp_path / "lab-dashboard.json"
    env = {**os.environ, "ES_DOCTOR_LAB_DIR": str(healthy_lab.lab_dir)}
    result = subprocess.run([sys.executable, "-m", "es_doctor", "-t", "lab", "dashboard", "--out", str(out)],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert json.loads(to_json(from_json(text))) == json.loads(text)
    data = json.loads(text)
    exprs = queries(data)
    assert {title for title, _ in exprs} == {p["title"] for p in data["panels"]}

    prometheus = healthy_lab.target.prometheus.url
    # Prometheus scrapes the lab every second: rates over 5 min need two scrapes of the service's current
    # process (an earlier test may just have restarted it), the manager grid every manager's series
    deadline = time.monotonic() + 60
    while True:
        empty = {}
        for title, expr in exprs:
            series = instant(prometheus, expr)
            values = [float(s["value"][1]) for s in series]
            if not values or not all(math.isfinite(v) for v in values):
                empty[f"{title}: {expr}"] = values
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    assert empty == {}, "panel queries without data"

    by_title = dict(exprs)  # (the last query of a panel: the ones read below have one)
    assert [float(s["value"][1]) for s in instant(prometheus, by_title["Service status"])] == [1.0]
    managers = instant(prometheus, by_title["Manager status"])
    assert len(managers) > 5 and all(s["metric"]["manager"] for s in managers)
    assert all(float(s["value"][1]) == 1.0 for s in managers)
    [uptime] = instant(prometheus, by_title["Uptime (30s)"])
    assert 0.0 <= float(uptime["value"][1]) <= 1.0
    states = {s["metric"]["state"] for s in instant(prometheus, by_title["Database connections"])}
    assert states == {"active", "idle"}
    latency = [e for t, e in exprs if t.startswith("API response time")]
    assert len(latency) == 3
