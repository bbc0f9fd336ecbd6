"""es-doctor load against the lab (process mode, with a real PostgreSQL): a healthy run is OK and leaves no
test data, a latency fault is graded, Ctrl-C prints a partial result and exits 130, and the safety rules
(not the lab without --yes, over the caps, an API that does not answer) refuse before anything is sent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import require, started_process_lab

pytestmark = [pytest.mark.integration]
LAB_TOKEN = "lab-token"  # the lab's well-known token (es_doctor.lab.api.LAB_TOKEN)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from es_doctor.lab import infra

    require("PostgreSQL", infra.availability()["postgres"])
    with started_process_lab(tmp_path_factory.mktemp("loadlab"), postgres=True) as stack:
        yield stack


def env_for(lab: Any, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ES_DOCTOR_")}
    env.update({"ES_DOCTOR_LAB_DIR": str(lab.lab_dir), "ES_DOCTOR_STATE_DIR": str(tmp_path / "state"),
                "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "COLUMNS": "200",
                "ESD_LOAD_PGPW": lab.target.postgres.password or "", "ESD_LOAD_TOKEN": LAB_TOKEN})
    env.pop("DOCKER_HOST", None)
    return env


def es_doctor(lab: Any, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "es_doctor", *args], capture_output=True, text=True,
                          env=env_for(lab, tmp_path), timeout=120, check=False, stdin=subprocess.DEVNULL,
                          cwd=tmp_path)


def marked_left(lab: Any, marker: str, pattern: str = "{} %") -> tuple[int, int]:
    """(rows, points) of the lab still carrying ``marker``, read from PostgreSQL and Qdrant themselves."""
    from es_doctor.probes.session import ProbeSession

    target = lab.target
    with ProbeSession(target, timeout=10) as session:
        rows = session.postgres().query("SELECT count(*) FROM tasks WHERE title LIKE %s", (pattern.format(marker),))
        points = session.qdrant().count_marked(target.qdrant.collection, target.qdrant.task_id_key, [], "title",
                                               marker)
    assert rows.failure is None and points.failure is None, (rows.failure, points.failure)
    return int(rows.unwrap()[0][0]), int(points.value or 0)


def test_a_short_run_at_a_low_rate_is_ok_and_removes_its_test_data(lab: Any, tmp_path: Path) -> None:
    """Up to three runs: the machine is shared, and a run during a burst of other work can rightly read
    WARN or UNKNOWN; one must read OK, and every run must remove its test data whatever its grade."""
    seen: list[str] = []
    for _attempt in range(3):
        result = es_doctor(lab, tmp_path, "-t", "lab", "load", "--scenario", "mixed", "--rps", "10", "--duration",
                           "3s", "--format", "json")
        assert result.returncode in (0, 1, 3), result.stdout[-3000:] + result.stderr[-2000:]
        data = json.loads(result.stdout)
        assert data["exit_code"] == result.returncode and not data["interrupted"]
        test_data = data["test_data"]
        created = test_data["tasks_created"]
        assert created == 6 and test_data["left"] == []
        assert test_data["removed"] == {"qdrant": created, "postgres": created}
        assert marked_left(lab, test_data["marker"]) == (0, 0)
        seen.append(f"{data['status']}: {data['summary']}")
        if result.returncode == 0:
            break
    assert result.returncode == 0, f"a healthy lab at 10 req/s never read OK: {seen}; load {os.getloadavg()}"
    assert data["status"] == "OK" and data["errors"] == 0
    assert data["scheduled"] == data["completed"] == 30 and 5 < data["throughput_rps"] < 12
    assert {op["op"] for op in data["operations"]} == {"health", "managers", "mode", "create", "search"}
    assert all(op["outcomes"] == {"201": 6} if op["op"] == "create" else set(op["outcomes"]) == {"200"}
               for op in data["operations"])


def test_a_run_during_a_latency_fault_is_graded_critical(lab: Any, tmp_path: Path) -> None:
    from es_doctor.lab import faults

    faults.add(lab, "slow-api-crit")
    try:
        result = es_doctor(lab, tmp_path, "-t", "lab", "load", "--rps", "10", "--duration", "3s", "--concurrency",
                           "32", "--format", "json")
        table = es_doctor(lab, tmp_path, "-t", "lab", "load", "--rps", "5", "--duration", "1s", "--concurrency", "16")
    finally:
        faults.clear(lab, None, wait=60)
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-2000:]
    data = json.loads(result.stdout)
    latency = next(g for g in data["grades"] if g["name"] == "latency p95")
    assert latency["status"] == "CRIT" and latency["value"] > 500
    assert data["late_for_slot"] == 0  # 32 connections were enough: the latency is the server's
    assert marked_left(lab, data["test_data"]["marker"]) == (0, 0)
    assert table.returncode == 2, table.stdout + table.stderr
    assert "✗ latency p95" in table.stdout and table.stdout.rstrip().endswith("exit 2")


def test_ctrl_c_mid_run_prints_a_partial_result_removes_the_test_data_and_exits_130(lab: Any,
                                                                                    tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "es_doctor", "-t", "lab", "load", "--scenario", "vectors",
                             "--rps", "20", "--duration", "60s", "--format", "json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env_for(lab, tmp_path), stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while marked_left(lab, "es-doctor-load", "{}-%")[0] == 0:  # the run is under way once its first task exists
            assert proc.poll() is None and time.monotonic() < deadline, "the load test never started"
            time.sleep(0.2)
        time.sleep(1)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert time.monotonic() - sent < 15  # the run stops at once; removing the test data takes a moment
    assert "interrupted: stopped after" in err and "Traceback" not in err
    data = json.loads(out)
    assert data["interrupted"] and data["exit_code"] == 130
    assert data["completed"] >= 5 and data["elapsed_s"] < 30 and data["scheduled"] < 1200
    assert data["summary"].startswith("interrupted after")
    test_data = data["test_data"]
    assert test_data["tasks_created"] > 0
    unanswered = test_data["creations_without_id"]
    if unanswered == 0:
        assert test_data["left"] == [] and marked_left(lab, test_data["marker"]) == (0, 0)
    else:  # creations cut by Ctrl-C: never deleted by marker alone (issue 24 item 1), reported for the operator
        assert test_data["left"] and all("no id the API answered" in line for line in test_data["left"]), test_data
        rows, points = marked_left(lab, test_data["marker"])
        assert rows <= unanswered and points <= unanswered, (rows, points, unanswered)
        _remove_by_marker(lab, test_data["marker"])


def _remove_by_marker(lab: Any, marker: str) -> None:
    """The test's own cleanup of what the run reported and kept (the lab is shared by this module's tests)."""
    from es_doctor.probes.session import ProbeSession

    with ProbeSession(lab.target, timeout=10) as session:
        session.postgres().query("DELETE FROM tasks WHERE title LIKE %s", (f"{marker} %",))
        qdrant = session.qdrant()
        client = qdrant.client().unwrap()
        client.delete(lab.target.qdrant.collection, points_selector=qdrant.marked_filter(
            lab.target.qdrant.task_id_key, [], "title", marker), wait=True)


def write_config(tmp_path: Path, lab: Any, api_url: str | None = None, load: dict[str, Any] | None = None) -> str:
    """A config file whose target ``prod`` is the lab's own target (its stores, so test data is removed) without
    the lab's mark, or with ``load`` instead; ``api_url`` points its API elsewhere."""
    import yaml

    target: dict[str, Any] = lab.target.model_dump(mode="json")
    target["postgres"]["password"] = "env:ESD_LOAD_PGPW"  # the secret stays in the environment, not in the file
    target["service"]["api_key"] = "env:ESD_LOAD_TOKEN"  # the lab's bearer token: a wrong one is a 401
    target["load"] = load or {}
    if api_url is not None:
        target["service"]["api_url"] = api_url
    path = tmp_path / "es-doctor.yaml"
    path.write_text(yaml.safe_dump({"targets": {"prod": target}}), encoding="utf-8")
    return str(path)


def test_a_target_that_is_not_the_lab_is_refused_without_yes(lab: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path, lab)
    refused = es_doctor(lab, tmp_path, "-c", config, "-t", "prod", "load", "--rps", "5", "--duration", "1s")
    assert refused.returncode == 64, refused.stdout + refused.stderr
    assert "target 'prod' is not the lab" in refused.stderr and "--yes" in refused.stderr
    assert refused.stdout == "" and "Traceback" not in refused.stderr
    # the same target with --yes runs, and removes its test data like on the lab
    allowed = es_doctor(lab, tmp_path, "-c", config, "-t", "prod", "load", "--rps", "5", "--duration", "1s", "--yes",
                        "--format", "json")
    assert allowed.returncode in (0, 1, 3), allowed.stdout + allowed.stderr  # graded (a busy machine may WARN)
    data = json.loads(allowed.stdout)
    assert data["completed"] == 5 and data["test_data"]["left"] == []
    assert "401" not in data["outcomes"]  # the bearer token was sent
    output = allowed.stdout + allowed.stderr
    assert LAB_TOKEN not in output and (lab.target.postgres.password or "\0") not in output
    assert marked_left(lab, data["test_data"]["marker"]) == (0, 0)
    # a target marked as the lab whose API is not the lab's (the lab's Qdrant answers there) is refused too
    qdrant = lab.target.qdrant.url
    marked = write_config(tmp_path, lab, qdrant, {"lab": True})
    fake = es_doctor(lab, tmp_path, "-c", marked, "-t", "prod", "load", "--rps", "5", "--duration", "1s")
    assert fake.returncode == 64, fake.stdout + fake.stderr
    assert "does not answer GET /_lab/faults like the lab" in fake.stderr


def test_over_the_caps_and_an_api_that_does_not_answer_are_refused(lab: Any, tmp_path: Path) -> None:
    over_rate = es_doctor(lab, tmp_path, "-t", "lab", "load", "--rps", "201")
    assert over_rate.returncode == 64 and "load.max_rps" in over_rate.stderr, over_rate.stderr
    over_time = es_doctor(lab, tmp_path, "-t", "lab", "load", "--duration", "6m")
    assert over_time.returncode == 64 and "load.max_duration_s" in over_time.stderr, over_time.stderr
    config = write_config(tmp_path, lab, None, {"max_rps": 5, "lab": True})
    capped = es_doctor(lab, tmp_path, "-c", config, "-t", "prod", "load", "--rps", "6")
    assert capped.returncode == 64 and "cap of target 'prod': 5 requests/s" in capped.stderr, capped.stderr
    from es_doctor.lab.infra import free_port

    dead = write_config(tmp_path, lab, f"http://127.0.0.1:{free_port()}")
    down = es_doctor(lab, tmp_path, "-c", dead, "-t", "prod", "load", "--rps", "5", "--duration", "1s", "--yes")
    assert down.returncode == 69, down.stdout + down.stderr
    assert "does not answer /health" in down.stderr and "Traceback" not in down.stderr
