"""The runner with the real checks on fakes: SKIP on a failed prerequisite and on an absent component."""

from __future__ import annotations

from fakes import Answer, FakeContext, FakeQdrant, api, collection_info, exposition, refused

from es_doctor.checks.registry import REGISTRY
from es_doctor.config import Target
from es_doctor.findings import Finding, Status
from es_doctor.runner import run_checks, with_prerequisites


def run(ctx: FakeContext, *check_ids: str) -> dict[str, Finding]:
    specs = with_prerequisites([REGISTRY[i] for i in check_ids], REGISTRY)
    report = run_checks(specs, ctx, timeout=5, deadline_s=10)
    return {f.id: f for f in report.findings}


def test_qdrant_down_skips_the_collection_checks_with_the_root_cause() -> None:
    """Qdrant stopped: one CRIT with its cure; the collection checks are SKIP and suggest nothing
    (least of all the destructive recreate or dimension fix)."""
    findings = run(FakeContext(qdrant=FakeQdrant(names=refused("http://localhost:6333"))), "vectors.search")
    assert set(findings) == {"vectors.qdrant", "vectors.collection", "vectors.dimensions", "vectors.search"}
    assert findings["vectors.qdrant"].status is Status.CRIT
    assert findings["vectors.qdrant"].runbook == "dependency-restart"
    assert findings["vectors.qdrant"].runbook_params == {"component": "qdrant"}
    for dependant in ("vectors.collection", "vectors.dimensions", "vectors.search"):
        assert findings[dependant].status is Status.SKIP, dependant
        assert findings[dependant].runbook is None
    assert "prerequisite vectors.qdrant is CRIT" in findings["vectors.collection"].summary
    # the root cause is carried down the chain, not 'prerequisite vectors.collection is SKIP'
    assert findings["vectors.search"].summary == findings["vectors.collection"].summary


def test_metrics_endpoint_down_skips_the_window_checks(listening_port: int) -> None:
    target = Target(service={"api_url": f"http://127.0.0.1:{listening_port}"})  # type: ignore[arg-type]
    ctx = FakeContext(target, routes={api("/health", target): Answer(200, {"status": "ok"})}, metrics=refused())
    findings = run(ctx, "performance.latency", "performance.error-rate", "vectors.insert-errors",
                   "inter-manager.event-bus")
    assert findings["monitoring.metrics-endpoint"].status is Status.CRIT
    assert findings["monitoring.metrics-endpoint"].runbook == "metrics-endpoint-enable"
    for dependant in ("performance.latency", "performance.error-rate", "vectors.insert-errors",
                      "inter-manager.event-bus"):
        assert findings[dependant].status is Status.SKIP, dependant
        assert "prerequisite monitoring.metrics-endpoint is CRIT" in findings[dependant].summary


def test_absent_component_is_skip_and_never_probed() -> None:
    qdrant = FakeQdrant(names=refused())
    target = Target(absent={"qdrant": "no Qdrant on staging"})
    findings = run(FakeContext(target, qdrant=qdrant), "startup.qdrant", "vectors.search")
    for check_id in ("startup.qdrant", "vectors.qdrant", "vectors.collection", "vectors.dimensions",
                     "vectors.search"):
        assert findings[check_id].status is Status.SKIP, check_id
        assert "no Qdrant on staging" in findings[check_id].summary
        assert findings[check_id].runbook is None
    assert qdrant.calls == []


def test_a_warn_prerequisite_lets_dependants_run() -> None:
    """WARN passes: the dependants run (here: a collection that is yellow, whose search still works)."""
    qdrant = FakeQdrant(infos={"task_vectors": collection_info(status="yellow")})
    findings = run(FakeContext(qdrant=qdrant), "vectors.search")
    assert findings["vectors.dimensions"].status is Status.WARN
    assert findings["vectors.search"].status is Status.OK


def test_the_report_carries_the_cause_its_cure_and_the_escalation_level() -> None:
    """What es_doctor.cures says reaches the finding: cause-picked cure with params; level when no cure;
    nothing for an UNKNOWN that names no cause."""
    target = Target(absent={"postgres": "none", "docker": "none"})
    ctx = FakeContext(target, qdrant=FakeQdrant(names=["other"]), metrics=(ops(0, 0), ops(900, 100)))
    findings = run(ctx, "vectors.insert-errors", "performance.error-rate", "performance.latency")
    insert = findings["vectors.insert-errors"]
    assert (insert.status, insert.cause, insert.runbook, insert.escalate) == (
        Status.WARN, "collection-missing", "qdrant-collection-recreate", None)
    errors = findings["performance.error-rate"]
    assert (errors.status, errors.cause, errors.runbook, errors.escalate) == (Status.CRIT, None, None, 1)
    latency = findings["performance.latency"]
    assert (latency.status, latency.runbook, latency.escalate) == (Status.UNKNOWN, None, None)


def ops(ok: int, failed: int) -> str:
    return exposition({'email_sender_vector_operations_total{op="insert",result="ok"}': ok,
                       'email_sender_vector_operations_total{op="insert",result="error"}': failed,
                       'email_sender_http_requests_total{status="200"}': ok,
                       'email_sender_http_requests_total{status="500"}': failed})
