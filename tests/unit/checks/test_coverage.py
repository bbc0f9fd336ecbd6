"""Every registered check has unit tests for each status it can reach.

``REACHABLE`` says which statuses each check can return when called (read from its code; SKIP by the
runner for an absent component or a failed prerequisite is tested once, in test_runner_skips.py).
The test modules declare what they cover with ``@covers(check_id, *statuses)``, and conftest.py
verifies after each test that it really ran the check and saw those statuses. So a new check, a
check that gains a status, or a test that stops exercising what it declares, fails here.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest
from fakes import DECLARED

from es_doctor.checks.registry import load_all
from es_doctor.findings import Status

OK, WARN, CRIT, UNKNOWN, SKIP = Status.OK, Status.WARN, Status.CRIT, Status.UNKNOWN, Status.SKIP

REACHABLE: dict[str, set[Status]] = {
    "startup.api-port": {OK, CRIT},
    "startup.health": {OK, CRIT, UNKNOWN},
    "startup.docker-engine": {OK, CRIT},
    "startup.container": {OK, WARN, CRIT, UNKNOWN},
    "startup.port-owner": {OK, WARN, CRIT, UNKNOWN, SKIP},
    "startup.go-env": {OK, CRIT, UNKNOWN},
    "startup.config-file": {OK, CRIT, UNKNOWN, SKIP},
    "startup.qdrant": {OK, CRIT, UNKNOWN},
    "startup.postgres": {OK, CRIT, UNKNOWN},
    "startup.service-mode": {OK, WARN, UNKNOWN, SKIP},
    "performance.latency": {OK, WARN, CRIT, UNKNOWN},
    "performance.error-rate": {OK, WARN, CRIT, UNKNOWN},
    "performance.memory": {OK, WARN, CRIT, UNKNOWN},
    "performance.slow-log": {OK, WARN, UNKNOWN},
    "vectors.qdrant": {OK, CRIT, UNKNOWN},
    "vectors.collection": {OK, CRIT, UNKNOWN},
    "vectors.dimensions": {OK, WARN, CRIT, UNKNOWN},
    "vectors.search": {OK, WARN, CRIT, UNKNOWN},
    "vectors.insert-errors": {OK, WARN, UNKNOWN},
    "vectors.connection-errors": {OK, CRIT, UNKNOWN},
    "vectors.coverage": {OK, CRIT, UNKNOWN},
    "inter-manager.status": {OK, WARN, CRIT, UNKNOWN},
    "inter-manager.discovery": {OK, CRIT, UNKNOWN},
    "inter-manager.event-bus": {OK, WARN, CRIT, UNKNOWN},
    "inter-manager.eventbus-log": {OK, WARN, UNKNOWN},
    "deploy.containers": {OK, WARN, CRIT, UNKNOWN},
    "deploy.image-drift": {OK, WARN, UNKNOWN},
    "deploy.deployment-log": {OK, CRIT, UNKNOWN},
    "deploy.migration-log": {OK, CRIT, UNKNOWN},
    "deploy.volumes": {OK, CRIT, UNKNOWN},
    "monitoring.metrics-endpoint": {OK, CRIT, UNKNOWN},
    "monitoring.prometheus": {OK, CRIT, UNKNOWN},
    "monitoring.prometheus-target": {OK, CRIT, UNKNOWN},
    "monitoring.alerts": {OK, WARN, CRIT, UNKNOWN},
    "monitoring.uptime": {OK, WARN, CRIT, UNKNOWN},
}

#: what a check's own source says it can return (a lower bound: helpers are not read)
SIGNS = {WARN: (r"\bwarn\(", r"Status\.WARN", r"\bgrade\("), CRIT: (r"\bcrit\(", r"Status\.CRIT", r"\bfrom_failure\("),
         UNKNOWN: (r"\bunknown\(", r"Status\.UNKNOWN", r"\bfrom_failure\("), SKIP: (r"\bskip\(", r"Status\.SKIP")}
#: statuses the source mentions but the check cannot return, with why (verified by a test)
MENTIONED_ONLY: dict[str, set[Status]] = {
    "startup.docker-engine": {UNKNOWN},  # a failure read as UNKNOWN is turned into CRIT
}


def _declared() -> set[tuple[str, Status]]:
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        importlib.import_module(path.stem)
    return DECLARED


def test_every_registered_check_is_in_the_table() -> None:
    registered = set(load_all())
    assert registered - set(REACHABLE) == set(), "new check(s): list their statuses in REACHABLE and test them"
    assert set(REACHABLE) - registered == set(), "REACHABLE lists check(s) that no longer exist"


@pytest.mark.parametrize("check_id", sorted(REACHABLE))
def test_every_reachable_status_of_every_check_is_tested(check_id: str) -> None:
    covered = {status for cid, status in _declared() if cid == check_id}
    missing = REACHABLE[check_id] - covered
    assert not missing, f"{check_id}: no unit test covers {sorted(missing)}"


@pytest.mark.parametrize("check_id", sorted(REACHABLE))
def test_the_table_knows_what_the_code_can_return(check_id: str) -> None:
    source = inspect.getsource(load_all()[check_id].fn)
    seen = {status for status, patterns in SIGNS.items() if any(re.search(p, source) for p in patterns)}
    seen -= MENTIONED_ONLY.get(check_id, set())
    assert seen <= REACHABLE[check_id], f"{check_id} can return {sorted(seen - REACHABLE[check_id])}: update REACHABLE"
