"""#21 item 9: the lab says what it is doing (progress on stderr for ``up``, ``fault clear`` and ``down``,
whether stderr is a terminal or not), warns when a fault it injects is neutralised by an earlier cure (and
how to reset), and a target 'lab' that is not running exits 69 (EX_UNAVAILABLE), not 78."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PY = sys.executable


def _run(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "es_doctor", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def test_the_lab_says_what_it_does_and_warns_of_a_neutralised_fault(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ES_DOCTOR_")}
    env.update({"ES_DOCTOR_LAB_DIR": str(tmp_path / "lab"), "ES_DOCTOR_STATE_DIR": str(tmp_path / "state"),
                "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)})
    absent = _run(env, "-t", "lab", "diagnose")
    assert absent.returncode == 69, absent.stderr
    assert "target 'lab' is not running" in absent.stderr
    try:
        up = _run(env, "lab", "up", "--mode", "process", "--no-prometheus", "--no-postgres")
        assert up.returncode == 0, up.stderr
        steps = [line for line in up.stderr.splitlines() if line.startswith("lab: ")]
        assert "lab: starting qdrant… (" in up.stderr and "lab: starting email-sender-go… (" in up.stderr
        assert any("healthy" in line for line in steps), steps
        assert "lab: " not in up.stdout  # the result on stdout, the steps on stderr
        # a cure that makes the lab immune to a fault: the next injection of that fault is said to do nothing
        cure = _run(env, "-t", "lab", "fix", "vector-cache-tune", "--yes")
        assert cure.returncode == 0, cure.stdout + cure.stderr
        added = _run(env, "lab", "fault", "add", "slow-api-crit")
        assert added.returncode == 0, added.stderr
        assert "fault slow-api-crit is injected but has no effect: an earlier cure changed the lab" in added.stderr
        assert "lab down && " in added.stderr and "lab up && " in added.stderr
        cleared = _run(env, "lab", "fault", "clear")
        assert cleared.returncode == 0, cleared.stderr
        assert "lab: restoring the lab's baseline" in cleared.stderr and "healthy" in cleared.stderr
    finally:
        down = _run(env, "lab", "down", "--volumes")
    assert down.returncode == 0, down.stderr
    assert "lab: stopping qdrant… (" in down.stderr and "lab: removing the lab's data… (" in down.stderr
