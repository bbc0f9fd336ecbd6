"""An OK on too small a sample is no measurement: it says so in the report (``graded: false``) and a
runbook's verification does not take it as a proof."""

from __future__ import annotations

import datetime as dt

from es_doctor.checks.registry import CheckSpec, Outcome
from es_doctor.findings import Finding, Report, Status
from es_doctor.render.json_report import as_dict
from es_doctor.runbooks.engine import verified
from es_doctor.runner import _finding


def _spec() -> CheckSpec:
    return CheckSpec("performance.latency", "performance", "p95", lambda _ctx: Outcome(Status.OK, "x"))


def test_an_ungraded_ok_does_not_verify_a_fix() -> None:
    thin = _finding(_spec(), Outcome(Status.OK, "API latency not graded: too few requests to grade: 4 (at least 10)",
                                     graded=False), 1.0)
    measured = _finding(_spec(), Outcome(Status.OK, "API p95 latency 29 ms on 472 requests"), 1.0)
    assert not thin.graded and measured.graded
    assert not verified(thin)
    assert verified(measured)
    absent = Finding(id="startup.redis", check_class="startup", status=Status.SKIP, summary="the target has no redis")
    assert verified(absent)


def test_the_json_report_says_which_findings_were_not_graded() -> None:
    thin = _finding(_spec(), Outcome(Status.OK, "not graded", graded=False), 1.0)
    data = as_dict(Report(tool_version="t", target="t", started_at=dt.datetime.now(dt.UTC), duration_ms=1.0,
                          findings=[thin]))
    assert data["findings"][0]["graded"] is False
