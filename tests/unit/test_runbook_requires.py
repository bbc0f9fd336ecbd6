"""Every shipped runbook declares what its actions need of the target (``requires:``), and the plan
refuses a target that lacks it, with the reason."""

from __future__ import annotations

import pytest

from es_doctor.config import ServiceConfig, Target
from es_doctor.runbooks.engine import missing_requirements, plan
from es_doctor.runbooks.loader import load_runbooks
from es_doctor.runbooks.model import REQUIREMENTS, Runbook

#: an action (by prefix) and what it cannot work without
IMPLIED = [("service.restart", "restart"),
           ("docker.", "docker"), ("env.", "docker"), ("deploy.", "docker"), ("config.", "config-file"),
           ("process.", "local"), ("postgres.", "postgres"), ("qdrant.", "qdrant")]
SHIPPED = load_runbooks().runbooks


def implied(rb: Runbook) -> set[str]:
    out: set[str] = set()
    for _section, steps in rb.sections():
        for step in steps:
            if step.when and "target.absent" in step.when:
                continue  # the step runs only where the target has what it needs
            out.update(need for prefix, need in IMPLIED if step.action.startswith(prefix))
            if step.action == "http" and str(step.inputs.get("url", "")).startswith("/"):
                out.add("service")
    return out


@pytest.mark.parametrize("runbook_id", sorted(SHIPPED))
def test_shipped_runbook_declares_what_its_actions_need(runbook_id: str) -> None:
    rb = SHIPPED[runbook_id]
    assert implied(rb) <= set(rb.requires), f"{runbook_id} requires {rb.requires}, its actions need {implied(rb)}"
    assert set(rb.requires) <= set(REQUIREMENTS)


def test_plan_names_every_missing_requirement() -> None:
    rb = SHIPPED["vector-cache-tune"]
    no_docker = Target(absent={"docker": "bare-metal host"})
    assert missing_requirements(rb, no_docker) == [
        "needs a way to restart the service: no Docker (bare-metal host) and no service.restart_command",
        "needs the service's config file on this host (service.config_file is not set)"]
    supervised = Target(absent={"docker": "bare-metal host"},
                        service=ServiceConfig(config_file="/tmp/c.yaml", restart_command=["systemctl", "restart", "x"]))
    assert missing_requirements(rb, supervised) == []
    assert missing_requirements(SHIPPED["config-missing"], supervised) == ["needs docker: bare-metal host"]
    the_plan = plan(rb, no_docker, "t")
    assert the_plan.missing and the_plan.steps  # the steps are still shown, the plan says it is refused
    ready = Target(service=ServiceConfig(config_file="/tmp/config.yaml"))
    assert missing_requirements(rb, ready) == []
    remote = Target(service=ServiceConfig(api_url="http://10.255.255.1:8080"))
    assert missing_requirements(SHIPPED["port-in-use"], remote) == [
        "needs the service on this host: 10.255.255.1 is not an address of this host"]
