"""Without Prometheus, a diagnose within a minute of the previous one starts its metrics window at the
previous run's last scrape (kept in the state dir), and scrapes twice again once the service restarted
(issue 14). The lab in process mode, without PostgreSQL and Prometheus; es-doctor through its CLI."""

from __future__ import annotations

import json
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from es_doctor.checks.window import FROM_PREVIOUS_RUN, FROM_TWO_SCRAPES
from support import cli_command, isolated_env, started_process_lab

pytestmark = [pytest.mark.integration]

WINDOW_CHECKS = ("performance.latency", "performance.error-rate", "vectors.insert-errors",
                 "vectors.connection-errors", "inter-manager.event-bus")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with started_process_lab(tmp_path_factory.mktemp("wlab")) as stack:
        yield stack


def es_doctor(lab: Any, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = isolated_env(state)
    env.update({"ES_DOCTOR_LAB_DIR": str(lab.lab_dir), "ES_DOCTOR_STATE_DIR": str(state),
                "ES_DOCTOR_AUDIT_LOG": str(state / "audit.jsonl")})
    env.pop("DOCKER_HOST", None)
    return subprocess.run(cli_command("-t", "lab", *args), capture_output=True, text=True,
                          env=env, timeout=300, check=False, stdin=subprocess.DEVNULL)


def windows(lab: Any, state: Path) -> dict[str, tuple[str, float]]:
    """check id → (where its window's first scrape came from, the window's length) of a fresh diagnose."""
    args = [arg for check in WINDOW_CHECKS for arg in ("--check", check)]
    result = es_doctor(lab, state, "diagnose", "--format", "json", *args)
    assert result.returncode in (0, 1), result.stdout[-2000:] + result.stderr
    report = json.loads(result.stdout)
    out = {}
    for finding in report["findings"]:
        evidence = {e["name"]: e["value"] for e in finding["evidence"]}
        if finding["id"] in WINDOW_CHECKS:
            assert finding["status"] == "OK", finding
            out[finding["id"]] = (evidence["window from"], float(evidence.get("window", 0.0)))
    assert set(out) == set(WINDOW_CHECKS)
    return out


def test_a_second_diagnose_reuses_the_first_ones_scrape(lab: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = windows(lab, state)
    assert {source for source, _ in first.values()} == {FROM_TWO_SCRAPES}
    saved = list((state / "scrapes").iterdir())
    assert len(saved) == 1
    assert stat.S_IMODE(saved[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "scrapes").stat().st_mode) == 0o700
    assert b"password" not in saved[0].read_bytes().lower()

    time.sleep(2.5)  # the saved scrape is now older than the window (2 s)
    second = windows(lab, state)
    assert {source for source, _ in second.values()} == {FROM_PREVIOUS_RUN}
    # the window spans from the first run's last scrape to now: at least the 2.5 s slept
    assert all(seconds >= 2.5 for _, seconds in second.values() if seconds), second

    # a restarted service is another process life: its counters started again, so two scrapes again
    result = es_doctor(lab, tmp_path / "fix-state", "fix", "service-restart", "--yes")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    third = windows(lab, state)
    assert {source for source, _ in third.values()} == {FROM_TWO_SCRAPES}


def test_a_fixs_verification_window_starts_after_the_cure(lab: Any, tmp_path: Path) -> None:
    """The engine verifies with ``window_after`` = when its steps ended: a scrape kept from before (the
    previous run's, or Prometheus') never starts the window, so what the service did before the cure
    (events dropped before a purge) is not counted as its result."""
    from es_doctor.runner import diagnose

    def sources(**kwargs: Any) -> set[str]:
        report = diagnose(lab.target, "lab", WINDOW_CHECKS, scrapes_dir=tmp_path / "scrapes", **kwargs)
        return {next(e.value for e in f.evidence if e.name == "window from") for f in report.findings
                if f.id in WINDOW_CHECKS}

    assert sources() == {FROM_TWO_SCRAPES}
    time.sleep(2.5)  # the kept scrape is older than the window: reusable...
    cured_at = time.time()
    assert sources(window_after=cured_at) == {FROM_TWO_SCRAPES}  # ...but taken before the cure
    time.sleep(2.5)
    assert sources(window_after=cured_at) == {FROM_PREVIOUS_RUN}  # the verification's own earlier scrape
    assert sources() == {FROM_PREVIOUS_RUN}
