"""A step stuck in a Docker SDK call stops when it is cancelled (issue 24 item 9): on the lab's real Docker
engine, ``docker.exec`` of a program that runs for 20 s in the Qdrant container, with a step timeout of
2 s, is stopped (the call's connection shut down), reported as timed out, not "could not be stopped",
and the rollback runs after it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from es_doctor.runbooks.audit import AuditLog
from es_doctor.runbooks.engine import Engine, RunOutcome, plan
from es_doctor.runbooks.loader import load_runbook_file

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def test_a_step_stuck_in_a_docker_call_is_stopped_and_rolled_back(healthy_lab: Any, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from es_doctor.runbooks import stepper as stepper_module

    target = healthy_lab.target
    marker = tmp_path / "marker"
    path = tmp_path / "rb.yaml"
    path.write_text(f"""
id: test-docker-stuck
title: an exec that outlives its step
description: busybox sleep 20 in the Qdrant container, with a step timeout of 2 s
class: deploy
steps:
  - name: stuck
    action: docker.exec
    timeout: 2
    inputs: {{container: {target.qdrant.container}, argv: [busybox, sleep, "20"]}}
rollback:
  - name: undo
    action: shell
    inputs: {{argv: [sh, -c, "echo ROLLBACK >> {marker}"]}}
""")
    runbook = load_runbook_file(path)
    said: list[str] = []
    engine = Engine(target, "lab", AuditLog(tmp_path / "audit.jsonl", []), tmp_path / "state",
                    confirm=lambda _q: True, say=said.append)
    # a grace shorter than the exec: a step the cancel could not reach would be reported "could not be stopped"
    monkeypatch.setattr(stepper_module, "STOP_GRACE_S", 6.0)
    started = time.monotonic()
    result = engine.run(plan(runbook, target, "lab"), yes=True)
    took = time.monotonic() - started
    step = result.steps[0]
    assert step.status == "timeout", (step.status, step.error, said)
    assert "could not be stopped" not in (step.error or "")
    assert marker.read_text() == "ROLLBACK\n", "the rollback ran once the step had stopped"
    assert result.outcome in (RunOutcome.ROLLED_BACK, RunOutcome.FAILED), result.message
    assert "no rollback was started" not in result.message
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["event"] == "fix.step"]
    assert [(r["phase"], r["status"]) for r in steps] == [("steps", "timeout"), ("rollback", "ok")]
    assert took < 20, f"the run waited for the exec to end ({took:.1f} s)"
