"""The remediation policy's decisions (pure logic), the runbooks declared unattended, and the webhook
payload's parsing and mapping (through cures.py only)."""

from __future__ import annotations

import json

import pytest

from es_doctor.remediation.alerts import Alert, PayloadError, map_alert, parse_time, parse_webhook, request_id
from es_doctor.remediation.policy import Action, Facts, RemediationConfig, decide, mode_of
from es_doctor.runbooks.loader import load_runbooks


def facts(**kw: object) -> Facts:
    base: dict[str, object] = {"finding": "inter-manager.discovery", "runbook": "manager-discovery-restart",
                               "unattended": True, "destructive": False, "runs_last_hour": 0,
                               "not_fixed_ago_s": None, "bad_findings": 1}
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


def test_defaults_run_only_what_declares_itself_unattended() -> None:
    config = RemediationConfig()
    assert decide(config, facts()).action is Action.RUN
    assert decide(config, facts(unattended=False)).action is Action.WAIT
    assert mode_of(config, "x.y", "rb", False) == ("approve", "runbook rb is not declared unattended")


def test_finding_mode_wins_over_runbook_mode() -> None:
    config = RemediationConfig(runbooks={"manager-discovery-restart": "never"},
                               findings={"inter-manager.discovery": "approve"})
    assert decide(config, facts()).action is Action.WAIT
    assert decide(config, facts(finding="inter-manager.status")).action is Action.ESCALATE


def test_auto_on_a_destructive_runbook_not_declared_unattended_waits_for_a_person() -> None:
    config = RemediationConfig(runbooks={"qdrant-collection-recreate": "auto"})
    got = decide(config, facts(runbook="qdrant-collection-recreate", unattended=False, destructive=True))
    assert got.action is Action.WAIT and "destructive" in got.reason


def test_observe_mode_runs_nothing_and_says_what_it_would_do() -> None:
    got = decide(RemediationConfig(observe=True), facts())
    assert got.action is Action.OBSERVE and "would run manager-discovery-restart" in got.reason
    assert decide(RemediationConfig(observe=True), facts(approved=True)).action is Action.OBSERVE


def test_rate_limit_and_not_fixed_escalate_automatic_runs_only() -> None:
    config = RemediationConfig(max_runs_per_hour=2)
    assert decide(config, facts(runs_last_hour=1)).action is Action.RUN
    limited = decide(config, facts(runs_last_hour=2))
    assert limited.action is Action.ESCALATE and "rate limit" in limited.reason
    again = decide(config, facts(not_fixed_ago_s=60.0))
    assert again.action is Action.ESCALATE and "NOT FIXED" in again.reason
    assert decide(config, facts(not_fixed_ago_s=config.not_fixed_hold_s + 1)).action is Action.RUN
    # a person's approval is the decision: it runs despite both
    assert decide(config, facts(runs_last_hour=9, not_fixed_ago_s=1.0, approved=True)).action is Action.RUN


def test_breaker_stops_everything_even_an_approved_run() -> None:
    config = RemediationConfig(breaker_findings=3)
    assert decide(config, facts(bad_findings=2)).action is Action.RUN
    got = decide(config, facts(bad_findings=3, approved=True))
    assert got.action is Action.ESCALATE and got.mode == "breaker"


def test_the_unattended_runbooks_are_the_guides_restarts_and_purges_and_touch_no_data() -> None:
    runbooks = load_runbooks().runbooks
    unattended = {rb_id for rb_id, rb in runbooks.items() if rb.unattended}
    assert unattended == {"service-restart", "event-bus-purge", "manager-discovery-restart", "monitoring-restart",
                          "dependency-restart"}
    data_actions = ("backup.", "postgres.", "qdrant.", "config.", "shell", "process.")
    for rb_id in unattended:
        for _, steps in runbooks[rb_id].sections():
            for step in steps:
                assert not step.action.startswith(data_actions), (rb_id, step.action)
    for rb_id in ("data-migration-rollback", "qdrant-collection-restore", "qdrant-collection-recreate",
                  "volumes-recover", "deploy-rollback"):
        assert not runbooks[rb_id].unattended


# --------------------------------------------------------------------------- the webhook payload


def payload(alerts: list[dict[str, object]], **kw: object) -> bytes:
    body: dict[str, object] = {"version": "4", "groupKey": "{}:{finding=\"x\"}", "truncatedAlerts": 0,
                               "status": "firing", "receiver": "es-doctor", "groupLabels": {}, "commonLabels": {},
                               "commonAnnotations": {}, "externalURL": "http://am", "alerts": alerts}
    body.update(kw)
    return json.dumps(body).encode()


def alert(labels: dict[str, str], starts: str = "2026-12-07T03:00:00.123456789Z", status: str = "firing",
          fingerprint: str = "abcd") -> dict[str, object]:
    return {"status": status, "labels": labels, "annotations": {}, "startsAt": starts,
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": fingerprint}


def test_payloads_refused_whole_say_why() -> None:
    with pytest.raises(PayloadError) as bad:
        parse_webhook(b"{not json", 100)
    assert bad.value.status == 400
    with pytest.raises(PayloadError) as old:
        parse_webhook(payload([], version="3"), 100)
    assert old.value.status == 422 and "version '3'" in old.value.reason
    with pytest.raises(PayloadError) as many:
        parse_webhook(payload([alert({"finding": "a.b"})] * 1000), 100)
    assert many.value.status == 413 and "1000 alerts" in many.value.reason
    with pytest.raises(PayloadError) as shape:
        parse_webhook(payload([{**alert({}), "labels": {"finding": 3}}]), 100)
    assert shape.value.status == 422 and "alerts.0.labels" in shape.value.reason
    with pytest.raises(PayloadError) as extra:
        parse_webhook(payload([], surprise=1), 100)
    assert extra.value.status == 422
    with pytest.raises(PayloadError) as when:
        parse_webhook(payload([alert({}, starts="yesterday")]), 100)
    assert when.value.status == 422 and "RFC 3339" in when.value.reason
    assert len(parse_webhook(payload([alert({"finding": "a.b"})]), 100).alerts) == 1


def test_request_identity_is_derived_from_the_alert_alone() -> None:
    one = Alert.model_validate(alert({"finding": "inter-manager.discovery"}))
    same = Alert.model_validate(alert({"finding": "inter-manager.discovery", "extra": "x"},
                                      starts="2026-12-07T04:00:00.123456+01:00"))
    later = Alert.model_validate(alert({"finding": "inter-manager.discovery"}, starts="2026-12-07T03:05:00Z"))
    assert request_id("lab", "inter-manager.discovery", one) == request_id("lab", "inter-manager.discovery", same)
    assert request_id("lab", "inter-manager.discovery", one) != request_id("lab", "inter-manager.discovery", later)
    assert request_id("lab", "inter-manager.discovery", one) != request_id("prod", "inter-manager.discovery", one)
    assert parse_time("2026-12-07T03:00:00.123456789Z") is not None


def test_alerts_map_to_cures_through_cures_py_only() -> None:
    checks = {"inter-manager.discovery", "inter-manager.event-bus", "monitoring.uptime"}
    runbooks = {"manager-discovery-restart", "event-bus-purge"}

    def ask(labels: dict[str, str], targets: list[str] | None = None) -> tuple[str | None, str | None]:
        got = map_alert(Alert.model_validate(alert(labels)), targets or ["lab"], checks, runbooks)
        return got.runbook, got.refused

    assert ask({"finding": "inter-manager.discovery"}) == ("manager-discovery-restart", None)
    assert ask({"check": "inter-manager.event-bus", "target": "lab"}) == ("event-bus-purge", None)
    assert "unknown target" in str(ask({"finding": "inter-manager.discovery", "target": "prod"})[1])
    assert "no target label" in str(ask({"finding": "inter-manager.discovery"}, ["a", "b"])[1])
    assert "unknown finding" in str(ask({"finding": "nope.nope"})[1])
    assert "neither a finding" in str(ask({"alertname": "X"})[1])
    refused = ask({"finding": "inter-manager.discovery", "runbook": "event-bus-purge"})
    assert refused[0] == "event-bus-purge" and "does not cure" in str(refused[1])
    # a finding no runbook cures maps (it will be escalated), a cure not loaded is refused
    assert ask({"finding": "monitoring.uptime"}) == (None, None)
    got = map_alert(Alert.model_validate(alert({"finding": "inter-manager.discovery"})), ["lab"], checks, set())
    assert got.refused is not None and "not among the loaded runbooks" in got.refused
