"""The command printed under a finding: a cure the target can run, complete, for that target.

Every place that prints a cure (the table's hint, JSON ``fix_command``, Nagios' long text, the status
page, a fix's "next:" line) prints ``Finding.fix_command()`` or ``Finding.escalate_command``, set here
once per finding by the runner. A printed command

- names the target it was printed for (``-t NAME``) and the config file when es-doctor would not find
  it by default (``-c FILE``): pasted elsewhere it cannot act on another stack;
- carries every parameter its runbook needs (a parameter the finding's evidence gives, such as the
  image to roll back to, is filled in; without it the runbook is not offered) and no placeholder;
- is one the target can run: a runbook whose ``requires:`` the target lacks (Docker in process mode)
  is not printed; the lab's own restart of that component is (``es-doctor lab restart postgres``), or
  else the escalation (``es-doctor -t NAME escalate --level N --severity S --issue "…"``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from es_doctor import cures
from es_doctor.findings import Finding, Status

if TYPE_CHECKING:
    from es_doctor.config import LoadedConfig, Target

#: the lab target's name (es-doctor -t lab)
LAB = "lab"
#: runbooks the lab's supervisor can stand in for when the target cannot run them (process mode has no
#: Docker): runbook → the component `es-doctor lab restart` restarts (a parameter's name, or a fixed one)
LAB_RESTARTS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "dependency-restart": ("param", "component"),
    "monitoring-restart": ("fixed", "prometheus"),
})


@dataclass(frozen=True)
class RunbookFacts:
    """What printing a runbook's command needs to know: what it requires of the target, and which
    parameters it cannot run without."""

    requires: tuple[str, ...]
    required_params: tuple[str, ...]


@functools.cache
def shipped_facts() -> Mapping[str, RunbookFacts]:
    """The shipped runbooks' ``requires:`` and required parameters (read once, without validating the
    whole runbook: diagnose prints cures, it does not run them; ``fix`` validates)."""
    import yaml

    out: dict[str, RunbookFacts] = {}
    root = Path(str(resources.files("es_doctor") / "data" / "runbooks"))
    for path in sorted(root.glob("*.yaml")):
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "id" not in data:
            continue
        params = data.get("params") or {}
        required = tuple(name for name, spec in params.items()
                         if isinstance(spec, dict) and spec.get("required") and spec.get("default") is None)
        out[str(data["id"])] = RunbookFacts(tuple(data.get("requires") or ()), required)
    return MappingProxyType(out)


def printed_config(loaded: LoadedConfig) -> str | None:
    """The config file a printed command must name: None when es-doctor finds it by default (no
    ``-c``: ``$ES_DOCTOR_CONFIG``, ./es-doctor.yaml, the user config dir), else its absolute path."""
    from es_doctor.config import find_config_file
    from es_doctor.errors import ConfigError

    if loaded.source is None:
        return None
    try:
        default = find_config_file(None)
    except ConfigError:
        default = None
    if default is not None and Path(default).resolve() == Path(loaded.source).resolve():
        return None
    return str(Path(loaded.source).resolve())


def severity_of(status: Status) -> str:
    """The ``escalate --severity`` a finding of this status gets."""
    return "high" if status is Status.CRIT else "medium"


def escalate_command(finding: Finding, level: int, target: str | None, config: str | None) -> str:
    """``es-doctor -t NAME escalate --level N --severity S --issue "<id>: <summary>"`` (complete)."""
    issue = " ".join(f"{finding.id}: {finding.summary}".split())[:300]
    return cures.es_doctor("escalate", "--level", str(level), "--severity", severity_of(finding.status),
                           "--issue", issue, target=target, config=config)


def lab_restart(runbook: str, params: Mapping[str, str]) -> str | None:
    how = LAB_RESTARTS.get(runbook)
    if how is None:
        return None
    kind, value = how
    component = params.get(value, "qdrant") if kind == "param" else value
    return cures.es_doctor("lab", "restart", component)


def prescribe(finding: Finding, target: Target, target_name: str, config: str | None = None) -> Finding:
    """``finding`` with the commands to print: its cure as a complete command the target can run
    (``fix_command``), or the escalation (``escalate_command``). A runbook that cannot run here (or lacks
    a parameter the evidence should give) stays named in ``runbook`` (what cures it where it can run) but
    is not printed: the lab's restart, or the escalation, is."""
    from es_doctor.capabilities import missing_requirements

    if not finding.is_problem:
        return finding
    update: dict[str, Any] = {}
    runbook, params = finding.runbook, dict(finding.runbook_params)
    command: str | None = None
    level = finding.escalate
    if runbook is not None:
        facts = shipped_facts().get(runbook)
        lacking = [p for p in (facts.required_params if facts else ()) if p not in params]
        missing = missing_requirements(facts.requires, target) if facts else []
        if lacking or missing:
            lab = lab_restart(runbook, params) if target_name == LAB and not lacking else None
            if lab is not None:
                command = lab
            else:
                level = cures.cure_of(finding.id).escalate or 1
        else:
            command = cures.Remedy(runbook, MappingProxyType(params)).command(target_name, config)
    if command is None and level is not None:
        update["escalate"] = level
        update["escalate_command"] = escalate_command(finding, level, target_name, config)
    update["cure_command"] = command
    return finding.model_copy(update=update)


def evidence_params(remedy: cures.Remedy, finding_evidence: Mapping[str, Any]) -> dict[str, str]:
    """The remedy's parameters, with those its finding's evidence gives filled in."""
    params = dict(remedy.params)
    for param, evidence_name in remedy.from_evidence.items():
        value = finding_evidence.get(evidence_name)
        if isinstance(value, str) and value:
            params[param] = value
    return params
