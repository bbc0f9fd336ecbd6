"""The remediation policy (the ``remediation:`` section of the configuration) and its decisions.

Pure logic: :func:`decide` takes what is known (the runbook, the target's recent runs, how many
findings fire at once) and says what to do with one request. Nothing here runs or sends anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from es_doctor.config.remediation import Mode, RemediationConfig

__all__ = ["Action", "Decision", "Facts", "Mode", "RemediationConfig", "decide", "mode_of"]
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
