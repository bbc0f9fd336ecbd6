"""The ``remediation:`` section: which cures an Alertmanager alert may start in ``es-doctor serve``, and the
limits on them (the decisions are :mod:`es_doctor.remediation.policy`'s)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["auto", "approve", "never"]


class RemediationConfig(BaseModel):
    """``es-doctor serve``: which cures an alert may start, and the limits on them."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    observe: bool = Field(
        default=False, description="observe mode for the whole daemon: record and notify what would be done, "
        "run nothing (how a team adopts remediation safely)")
    runbooks: dict[str, Mode] = Field(
        default={}, description="per runbook id: auto (run at once), approve (wait for a person), "
        "never (escalate instead). Unset: auto when the runbook declares `unattended: true`, else approve")
    findings: dict[str, Mode] = Field(
        default={}, description="per finding (check) id, as for runbooks; wins over the runbook's mode")
    max_runs_per_hour: int = Field(
        default=3, ge=1, le=100, description="at most this many automatic runs of one cure on one target in "
        "any hour; past it the request is escalated instead")
    not_fixed_hold_s: float = Field(
        default=86400.0, gt=0, description="after a cure ended NOT FIXED on a target, no automatic run of it "
        "there for this long (seconds): the request is escalated with the bundle; an approval still runs it")
    verify_timeout_s: float = Field(
        default=90.0, gt=0, le=3600, description="how long an automatic cure's verification waits for its "
        "findings' checks to pass (seconds) before the run ends NOT FIXED")
    breaker_findings: int = Field(
        default=5, ge=2, le=100, description="when this many different findings are bad at once on a target "
        "(a wider outage), run nothing there and escalate")
    approval_expiry_s: float = Field(
        default=3600.0, gt=0, description="a request waiting for an approval longer than this (seconds) is "
        "escalated, never run")
    escalate_level: int = Field(
        default=1, ge=1, le=3, description="the guide's escalation level told of remediation (a cure FIXED, "
        "NOT FIXED, refused or waiting), when cures.py names none for the finding")
    max_alerts: int = Field(
        default=100, ge=1, le=10000, description="alerts one webhook call may carry; a bigger group is refused "
        "whole (413) and recorded")
    max_body_bytes: int = Field(
        default=262144, ge=1024, le=16 * 2**20, description="size cap of a webhook or approval body (bytes)")
