"""Class 4, 'Communication Inter-Managers': manager status, discovery, event bus, EventBus log lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fakes import Answer, FakeContext, api, covers, evidence, expect, exposition, log_line, refused, write_log

from es_doctor.config import Target
from es_doctor.findings import Status

STATUS = api("/api/v1/managers/status")
DISCOVERY = api("/api/v1/managers/discovery")
NAMES = ["config-manager", "cache-manager", "email-manager", "security-manager"]


def managers(**states: str) -> Answer:
    """Every manager of NAMES healthy, but for ``states`` (name with '_' for '-')."""
    items: list[dict[str, Any]] = []
    for name in NAMES:
        item: dict[str, Any] = {"name": name, "status": states.get(name.replace("-", "_"), "healthy"),
                                "last_heartbeat": "2025-06-14T13:45:30Z", "extra": 1}
        if item["status"] == "<none>":
            del item["status"]
        items.append(item)
    return Answer(200, {"managers": items})


# --------------------------------------------------------------------------- inter-manager.status


@covers("inter-manager.status", Status.OK)
@pytest.mark.parametrize("word", ["healthy", "OK", "Up", " running "])
def test_managers_all_healthy(word: str) -> None:
    out = expect(FakeContext(routes={STATUS: managers(cache_manager=word)}), "inter-manager.status", Status.OK,
                 "all 4 managers healthy")
    assert evidence(out)["managers"] == 4


def test_managers_and_the_coordinator_are_counted_apart() -> None:
    """The status list holds the coordinator too; the summary names it apart so that its count of managers
    is the one discovery reports ("25 managers" twice, not 26 beside 25)."""
    answer = managers()
    answer.body["managers"].append({"name": "coordinator", "status": "healthy"})
    out = expect(FakeContext(routes={STATUS: answer}), "inter-manager.status", Status.OK,
                 "all 4 managers and coordinator healthy")
    assert evidence(out)["managers"] == 5


@covers("inter-manager.status", Status.WARN)
@pytest.mark.parametrize("word", ["degraded", "WARN"])
def test_managers_degraded(word: str) -> None:
    out = expect(FakeContext(routes={STATUS: managers(email_manager=word)}), "inter-manager.status", Status.WARN,
                 "1 of 4 managers not healthy: email-manager", cure="manager-discovery-restart")
    assert evidence(out)["not healthy"] == "email-manager (WARN)"


@covers("inter-manager.status", Status.CRIT)
def test_managers_down_is_the_worst() -> None:
    routes = {STATUS: managers(email_manager="degraded", security_manager="stopped")}
    out = expect(FakeContext(routes=routes), "inter-manager.status", Status.CRIT,
                 "2 of 4 managers not healthy: email-manager, security-manager", cure="manager-discovery-restart")
    assert evidence(out)["not healthy"] == "email-manager (WARN), security-manager (CRIT)"


@covers("inter-manager.status", Status.UNKNOWN)
def test_manager_without_a_status_is_unknown() -> None:
    expect(FakeContext(routes={STATUS: managers(cache_manager="<none>")}), "inter-manager.status", Status.UNKNOWN,
           "cache-manager")


@covers("inter-manager.status", Status.UNKNOWN)
@pytest.mark.parametrize(("answer", "word"), [
    (Answer(200, {"status": "ok"}), "does not follow the contract"),
    (Answer(200, ["config-manager"]), "does not follow the contract"),
    (Answer(404, "404 page not found"), "not served by this version"),
    (Answer(200, "managers: all fine"), "does not follow the contract"),
])
def test_managers_answer_unusable(answer: Answer, word: str) -> None:
    expect(FakeContext(routes={STATUS: answer}), "inter-manager.status", Status.UNKNOWN, word)


@covers("inter-manager.status", Status.CRIT)
def test_managers_endpoint_errors() -> None:
    expect(FakeContext(routes={STATUS: Answer(500, "internal error")}), "inter-manager.status", Status.CRIT,
           "answered with an error", cure="manager-discovery-restart")
    expect(FakeContext(routes={STATUS: refused()}), "inter-manager.status", Status.CRIT, "unreachable",
           cure="manager-discovery-restart")


@covers("inter-manager.status", Status.UNKNOWN)
def test_an_empty_managers_list_is_not_healthy() -> None:
    expect(FakeContext(routes={STATUS: Answer(200, {"managers": []})}), "inter-manager.status", Status.UNKNOWN,
           "lists no manager")


# --------------------------------------------------------------------------- inter-manager.discovery


def discovery(expected: list[str], discovered: list[str]) -> dict[str, Answer]:
    return {DISCOVERY: Answer(200, {"expected": expected, "discovered": discovered})}


@covers("inter-manager.discovery", Status.OK)
def test_discovery_complete() -> None:
    out = expect(FakeContext(routes=discovery(NAMES, list(reversed(NAMES)))), "inter-manager.discovery", Status.OK,
                 "sees all 4 managers")
    assert evidence(out) == {"expected": 4, "discovered": 4}


@covers("inter-manager.discovery", Status.CRIT)
def test_discovery_misses_managers() -> None:
    out = expect(FakeContext(routes=discovery(NAMES, NAMES[:2])), "inter-manager.discovery", Status.CRIT,
                 "misses 2 of 4 managers", cure="manager-discovery-restart")
    assert evidence(out)["missing"] == "email-manager, security-manager"


@covers("inter-manager.discovery", Status.UNKNOWN)
@pytest.mark.parametrize(("answer", "word"), [
    (Answer(200, {"expected": NAMES}), "does not follow the contract"),
    (Answer(200, [1, 2]), "does not follow the contract"),
    (Answer(404, "404 page not found"), "not served by this version"),
])
def test_discovery_answer_unusable(answer: Answer, word: str) -> None:
    expect(FakeContext(routes={DISCOVERY: answer}), "inter-manager.discovery", Status.UNKNOWN, word)


@covers("inter-manager.discovery", Status.CRIT)
def test_discovery_unreachable() -> None:
    expect(FakeContext(routes={DISCOVERY: refused()}), "inter-manager.discovery", Status.CRIT, "unreachable",
           cure="manager-discovery-restart")


@covers("inter-manager.discovery", Status.UNKNOWN)
def test_discovery_expecting_no_manager_cannot_be_judged() -> None:
    expect(FakeContext(routes=discovery([], NAMES)), "inter-manager.discovery", Status.UNKNOWN, "expects no manager")


# --------------------------------------------------------------------------- inter-manager.event-bus

DEPTH = "email_sender_event_bus_queue_depth"
CAPACITY = "email_sender_event_bus_capacity"
DROPPED = "email_sender_event_bus_dropped_total"


def bus(depth: float, capacity: float = 1000, dropped: tuple[float, float] = (3, 3)) -> tuple[str, str]:
    return (exposition({DEPTH: 0, CAPACITY: capacity, DROPPED: dropped[0]}),
            exposition({DEPTH: depth, CAPACITY: capacity, DROPPED: dropped[1]}))


@covers("inter-manager.event-bus", Status.OK)
@pytest.mark.parametrize("depth", [0, 100, 800])
def test_event_bus_healthy(depth: float) -> None:
    out = expect(FakeContext(metrics=bus(depth)), "inter-manager.event-bus", Status.OK, f"{depth}/1000",
                 "0 events dropped")
    assert evidence(out)["depth"] == depth


@covers("inter-manager.event-bus", Status.WARN)
def test_event_bus_saturated() -> None:
    expect(FakeContext(metrics=bus(850)), "inter-manager.event-bus", Status.WARN, "850/1000 (85.0 %)",
           cure="event-bus-purge")


@covers("inter-manager.event-bus", Status.CRIT)
def test_event_bus_full() -> None:
    expect(FakeContext(metrics=bus(1000, dropped=(3, 250))), "inter-manager.event-bus", Status.CRIT,
           "(100.0 %), 247 events dropped", cure="event-bus-purge")


@covers("inter-manager.event-bus", Status.WARN)
def test_event_bus_drops_warn_even_when_not_saturated() -> None:
    out = expect(FakeContext(metrics=bus(10, dropped=(3, 4))), "inter-manager.event-bus", Status.WARN,
                 "1 event dropped", cure="event-bus-purge")
    assert evidence(out)["dropped in window"] == 1


@covers("inter-manager.event-bus", Status.UNKNOWN)
@pytest.mark.parametrize(("metrics", "word"), [
    ((exposition({DROPPED: 0}), exposition({DROPPED: 0})), f"exposes no {DEPTH}/{CAPACITY}"),
    (bus(0, capacity=0), f"exposes no {DEPTH}/{CAPACITY}"),
    (refused(), "cannot read the event bus metrics"),
])
def test_event_bus_unmeasurable(metrics: tuple[str, str], word: str) -> None:
    expect(FakeContext(metrics=metrics), "inter-manager.event-bus", Status.UNKNOWN, word)


# --------------------------------------------------------------------------- inter-manager.eventbus-log


def main_log(target: Target, lines: list[str]) -> Path:
    return write_log(Path(target.service.log_dir) / target.service.main_log, lines)


@covers("inter-manager.eventbus-log", Status.OK)
def test_eventbus_log_quiet(target: Target) -> None:
    main_log(target, [log_line(10, "INFO", "published 120 events", component="EventBus"),
                      log_line(5, "ERROR", "smtp: connection reset", component="EmailManager"),
                      log_line(600, "ERROR", "buffer full, event dropped", component="EventBus")])  # too old
    expect(FakeContext(target), "inter-manager.eventbus-log", Status.OK, "no EventBus errors")


@covers("inter-manager.eventbus-log", Status.WARN)
def test_eventbus_log_errors(target: Target) -> None:
    main_log(target, [log_line(20, "ERROR", "buffer full, event dropped", component="EventBus"),
                      log_line(10, "warn", "slow subscriber cache-manager", component="EventBus"),
                      "2025-06-14 13:45:30 FATAL EventBus: worker pool exhausted"])  # not JSON: kept, level in text
    out = expect(FakeContext(target), "inter-manager.eventbus-log", Status.WARN,
                 "3 EventBus error/warning lines in the last 60 s of the log", "the latest 10 s ago",
                 "OK again in 50 s unless another comes", cure="event-bus-tune")
    assert evidence(out)["latest"][-1] == "2025-06-14 13:45:30 FATAL EventBus: worker pool exhausted"
    assert evidence(out)["window"] == 60 and evidence(out)["latest line age"] == pytest.approx(10, abs=1)


@covers("inter-manager.eventbus-log", Status.WARN)
def test_eventbus_log_says_it_reports_the_past(target: Target) -> None:
    """After a cure the check stays WARN until its lines leave the window: the summary says how long."""
    main_log(target, [log_line(42, "ERROR", "buffer full, event dropped", component="EventBus")])
    expect(FakeContext(target), "inter-manager.eventbus-log", Status.WARN,
           "1 EventBus error/warning line in the last 60 s of the log, the latest 42 s ago "
           "(OK again in 18 s unless another comes)", cure="event-bus-tune")


@covers("inter-manager.eventbus-log", Status.UNKNOWN)
def test_eventbus_log_missing(target: Target) -> None:
    expect(FakeContext(target), "inter-manager.eventbus-log", Status.UNKNOWN, "cannot read the service log")
