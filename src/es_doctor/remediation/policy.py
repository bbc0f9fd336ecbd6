"""The remediation policy (the ``remediation:`` section of the configuration) and its decisions.

Pure logic: :func:`decide` takes what is known (the runbook, the target's recent runs, how many
findings fire at once) and says what to do with one request. Nothing here runs or sends anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
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
        default_factory=dict, description="per runbook id: auto (run at once), approve (wait for a person), "
        "never (escalate instead). Unset: auto when the runbook declares `unattended: true`, else approve")
    findings: dict[str, Mode] = Field(
        default_factory=dict, description="per finding (check) id, as for runbooks; wins over the runbook's mode")
    max_runs_per_hour: int = Field(
        default=3, ge=1, le=100, description="at most this many automatic runs of one cure on one target in "
        "any hour; past it the request is escalated instead")
    not_fixed_hold_s: float = Field(
        default=86400.0, gt=0, description="after a cure ended NOT FIXED on a target, no automatic run of it "
        "there for this long (seconds): the request is escalated with the bundle; an approval still runs it")
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


class Action(StrEnum):
    RUN = "run"
    WAIT = "wait-approval"
    ESCALATE = "escalate"
    OBSERVE = "observe"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    #: the policy's mode for this request (auto, approve, never)
    mode: str


def mode_of(config: RemediationConfig, finding: str, runbook: str, unattended: bool) -> tuple[Mode, str]:
    """The configured mode (finding first, then runbook, then the runbook's own declaration) and where it
    came from."""
    if finding in config.findings:
        return config.findings[finding], f"remediation.findings.{finding}"
    if runbook in config.runbooks:
        return config.runbooks[runbook], f"remediation.runbooks.{runbook}"
    if unattended:
        return "auto", f"runbook {runbook} declares itself unattended"
    return "approve", f"runbook {runbook} is not declared unattended"


@dataclass(frozen=True)
class Facts:
    """What the policy needs to know about one request, read from the store and the runbook."""

    finding: str
    runbook: str
    unattended: bool
    destructive: bool
    #: automatic runs of this runbook on this target in the last hour
    runs_last_hour: int
    #: seconds since this runbook last ended NOT FIXED on this target (None: never, or long ago)
    not_fixed_ago_s: float | None
    #: different findings bad now on the target
    bad_findings: int
    #: a person approved this request
    approved: bool = False


def decide(config: RemediationConfig, facts: Facts) -> Decision:
    """What to do with one live request (its finding checked bad now)."""
    if facts.bad_findings >= config.breaker_findings:
        return Decision(Action.ESCALATE, f"breaker: {facts.bad_findings} different findings are bad on the target "
                        f"(limit {config.breaker_findings}): a wider outage, nothing runs", "breaker")
    mode, why = mode_of(config, facts.finding, facts.runbook, facts.unattended)
    if mode == "never":
        return Decision(Action.ESCALATE, f"policy never ({why})", mode)
    if config.observe:
        return Decision(Action.OBSERVE, f"observe mode: would {'run' if mode == 'auto' else 'ask for approval of'} "
                        f"{facts.runbook} ({why}); nothing runs", mode)
    if facts.approved:
        return Decision(Action.RUN, "approved", mode)
    if mode == "auto" and facts.destructive and not facts.unattended:
        mode, why = "approve", f"runbook {facts.runbook} is destructive and not declared unattended"
    if mode == "approve":
        return Decision(Action.WAIT, f"waiting for an approval ({why})", mode)
    if facts.not_fixed_ago_s is not None and facts.not_fixed_ago_s < config.not_fixed_hold_s:
        return Decision(Action.ESCALATE, f"{facts.runbook} ended NOT FIXED on this target "
                        f"{facts.not_fixed_ago_s:.0f} s ago: no second automatic try", mode)
    if facts.runs_last_hour >= config.max_runs_per_hour:
        return Decision(Action.ESCALATE, f"rate limit: {facts.runs_last_hour} automatic run(s) of {facts.runbook} "
                        f"on this target in the last hour (limit {config.max_runs_per_hour})", mode)
    return Decision(Action.RUN, f"policy auto ({why})", mode)
