"""Two ``serve`` instances (two state dirs and audit logs, as on two hosts) watch the lab; Alertmanager sends
every alert to both (one webhook each, as Alertmanager in HA does). Both derive the same request id; the cure
runs once: the other instance records that it ran elsewhere, or finds the finding cleared."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from remediation_rig import Rig, start_rig, wait

pytestmark = [pytest.mark.integration, pytest.mark.docker]


@pytest.fixture(scope="module")
def twins(lab_stack: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with start_rig(lab_stack, tmp_path_factory.mktemp("remediation-twins"), serves=2) as got:
        yield got


def test_two_serves_one_cure(twins: Rig, healthy_lab: Any) -> None:
    since = time.time()
    healthy_lab.add_fault("discovery-broken")
    first, second = twins.serves

    def judged(serve: str) -> dict[str, Any] | None:
        got = twins.latest_for("inter-manager.discovery", since, serve)
        return got if got and got["state"] not in ("queued", "running", "approved") else None

    a = wait(lambda: judged(first), 120, "the first serve judges its request")
    b = wait(lambda: judged(second), 120, "the second serve judges its request")
    assert a["id"] == b["id"]  # one identity, derived alike
    assert a["runs"] + b["runs"] == 1, (a, b)
    assert sorted([a["state"], b["state"]]) in (["cleared", "fixed"], ["fixed", "run-elsewhere"]), (a, b)
    audits = [(twins.work / name).read_text() for name in ("audit.jsonl", "audit-1.jsonl")
              if (twins.work / name).exists()]
    assert sum(text.count('"event": "fix.start"') for text in audits) == 1
