"""Class 5, 'Erreurs de Déploiement': containers, image drift, deployment/migration logs, volumes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fakes import FakeContext, FakeDocker, container_info, covers, engine_down, evidence, expect, log_line, write_log

from es_doctor.config import Target
from es_doctor.findings import Status
from es_doctor.probes.result import Failure, FailureKind

STACK = ["postgres", "redis", "qdrant", "email-sender-go", "prometheus", "grafana"]


def stack(**changes: dict[str, object]) -> FakeDocker:
    """Every container of the default stack running; ``changes`` per container (name with '_' for '-')."""
    return FakeDocker(containers={name: container_info(name, **changes.get(name.replace("-", "_"), {}))
                                  for name in STACK})


# --------------------------------------------------------------------------- deploy.containers


@covers("deploy.containers", Status.OK)
def test_containers_all_running() -> None:
    out = expect(FakeContext(docker=stack(qdrant={"health": "healthy"})), "deploy.containers", Status.OK,
                 "all 6 containers running")
    assert evidence(out)["containers"]["qdrant"] == "healthy"


@covers("deploy.containers", Status.CRIT)
def test_containers_missing_stopped_or_unhealthy() -> None:
    docker = stack(redis={"state": "exited", "exit_code": 1}, qdrant={"health": "unhealthy"})
    del docker.containers["grafana"]
    out = expect(FakeContext(docker=docker), "deploy.containers", Status.CRIT,
                 "3 of 6 containers not running", "redis (exited)", "qdrant (unhealthy)", "grafana (missing)",
                 cure="stack-restart")
    assert evidence(out)["containers"]["postgres"] == "running"


@covers("deploy.containers", Status.WARN, Status.CRIT)
def test_a_running_container_still_starting_warns() -> None:
    """Right after a restart the healthcheck has not passed yet: WARN, not 'not running'; a container
    that really is down still makes it CRIT."""
    expect(FakeContext(docker=stack(qdrant={"health": "starting"})), "deploy.containers", Status.WARN,
           "1 of 6 containers still starting", "qdrant", cure="stack-restart")
    out = expect(FakeContext(docker=stack(qdrant={"health": "starting"}, redis={"state": "exited"})),
                 "deploy.containers", Status.CRIT, "1 of 6 containers not running: redis (exited)",
                 cure="stack-restart")
    assert evidence(out)["containers"]["qdrant"] == "starting"


@covers("deploy.containers", Status.OK)
def test_containers_of_absent_components_are_not_expected() -> None:
    docker = stack()
    del docker.containers["grafana"], docker.containers["redis"]
    target = Target(absent={"grafana": "no Grafana on staging", "redis": "no cache"})
    expect(FakeContext(target, docker=docker), "deploy.containers", Status.OK, "all 4 containers running")


@covers("deploy.containers", Status.CRIT)
def test_containers_uses_the_configured_names() -> None:
    target = Target(service={"container": "esg-prod"}, absent={"grafana": "none"})  # type: ignore[arg-type]
    docker = stack()  # has email-sender-go, not esg-prod
    expect(FakeContext(target, docker=docker), "deploy.containers", Status.CRIT, "esg-prod (missing)",
           cure="stack-restart")


@covers("deploy.containers", Status.UNKNOWN)
def test_containers_engine_error() -> None:
    expect(FakeContext(docker=FakeDocker(down=engine_down())), "deploy.containers", Status.UNKNOWN, "Docker engine")


# --------------------------------------------------------------------------- deploy.image-drift


def image(**changes: object) -> FakeContext:
    return FakeContext(docker=FakeDocker(containers={"email-sender-go": container_info(**changes)}))


@covers("deploy.image-drift", Status.OK)
@pytest.mark.parametrize("changes", [
    {"image": "email-sender-go:latest"},
    {"image": "email-sender-go"},  # no tag is :latest
    {"image": "sha256:0123abcd", "image_tags": ["email-sender-go:latest"]},  # created from an id
])
def test_image_as_configured(changes: dict[str, object]) -> None:
    out = expect(image(**changes), "deploy.image-drift", Status.OK, "as configured")
    assert evidence(out)["configured"] == "email-sender-go:latest"


@covers("deploy.image-drift", Status.WARN)
@pytest.mark.parametrize("running", ["email-sender-go:v1.2.2", "registry:5000/email-sender-go"])
def test_image_drift(running: str) -> None:
    out = expect(image(image=running, image_tags=[running]), "deploy.image-drift", Status.WARN,
                 f"runs {running}, the configuration says email-sender-go:latest", cure="redeploy-image")
    assert evidence(out)["running"] == running


@covers("deploy.image-drift", Status.UNKNOWN)
def test_image_drift_without_a_container() -> None:
    expect(FakeContext(docker=FakeDocker()), "deploy.image-drift", Status.UNKNOWN, "does not exist")
    expect(FakeContext(docker=FakeDocker(down=engine_down())), "deploy.image-drift", Status.UNKNOWN, "Docker engine")


# --------------------------------------------------------------------------- deploy.deployment-log, migration-log

LOGS = [("deploy.deployment-log", "deployment", "deploy-rollback"),
        ("deploy.migration-log", "migration", "data-migration-rollback")]


def log_dir(target: Target) -> Path:
    return Path(target.service.log_dir)


@covers("deploy.deployment-log", Status.OK)
@covers("deploy.migration-log", Status.OK)
def test_no_deployment_or_migration_log(target: Target) -> None:
    for check_id, what, _ in LOGS:
        expect(FakeContext(target), check_id, Status.OK, f"no {what} log")


@pytest.mark.parametrize(("check_id", "what", "cure"), [
    pytest.param(*LOGS[0], marks=covers(LOGS[0][0], Status.OK, Status.CRIT)),
    pytest.param(*LOGS[1], marks=covers(LOGS[1][0], Status.OK, Status.CRIT)),
])
def test_latest_log_decides(target: Target, check_id: str, what: str, cure: str) -> None:
    """Only the newest log counts: an old failed run followed by a clean one is OK, and the reverse CRIT."""
    old = write_log(log_dir(target) / f"{what}-20250613.log",
                    [log_line(90000, "INFO", "step 1"), log_line(89000, "ERROR", "step 2 failed: exit 1")])
    new = write_log(log_dir(target) / f"{what}-20250614.log", [log_line(60, "INFO", "step 1"),
                                                                log_line(50, "INFO", "done")])
    os.utime(old, (1_700_000_000, 1_700_000_000))
    out = expect(FakeContext(target), check_id, Status.OK, f"{new.name} has no errors")
    assert evidence(out)["log"] == str(new)
    write_log(new, [log_line(60, "INFO", "step 1"), log_line(50, "FATAL", "image pull failed"),
                    log_line(40, "ERROR", "rollback needed")])
    out = expect(FakeContext(target), check_id, Status.CRIT, f"latest {what} log {new.name} has 2 error line(s)",
                 cure=cure)
    assert evidence(out)["errors"] == 2
    assert "rollback needed" in evidence(out)["latest"][-1]


@pytest.mark.parametrize(("check_id", "what", "cure"), [
    pytest.param(*LOGS[0], marks=covers(LOGS[0][0], Status.UNKNOWN)),
    pytest.param(*LOGS[1], marks=covers(LOGS[1][0], Status.UNKNOWN)),
])
def test_unreadable_log(target: Target, check_id: str, what: str, cure: str) -> None:
    """UNKNOWN: nothing says what is wrong, so no cure (not the rollback)."""
    (log_dir(target) / f"{what}-20250614.log").mkdir(parents=True)  # a directory where the log should be
    expect(FakeContext(target), check_id, Status.UNKNOWN, "cannot read", cure=None)


@covers("deploy.deployment-log", Status.CRIT)
def test_log_globs_are_configurable(target: Target) -> None:
    target.logs.deployment_glob = "deploy_*.txt"
    write_log(log_dir(target) / "deployment-1.log", [log_line(1, "ERROR", "not this one")])
    expect(FakeContext(target), "deploy.deployment-log", Status.OK, "no deployment log")
    write_log(log_dir(target) / "deploy_1.txt", ["2025-06-14 ERROR: helm upgrade failed"])
    expect(FakeContext(target), "deploy.deployment-log", Status.CRIT, "deploy_1.txt", cure="deploy-rollback")


# --------------------------------------------------------------------------- deploy.volumes


@covers("deploy.volumes", Status.OK)
def test_volumes_present() -> None:
    expect(FakeContext(docker=FakeDocker(volume_names=["x", "postgres_data", "qdrant_data"])), "deploy.volumes",
           Status.OK, "qdrant_data, postgres_data")


@covers("deploy.volumes", Status.CRIT)
def test_volume_missing() -> None:
    out = expect(FakeContext(docker=FakeDocker(volume_names=["postgres_data"])), "deploy.volumes", Status.CRIT,
                 "missing: qdrant_data", cure="volumes-recover")
    assert evidence(out)["missing"] == ["qdrant_data"]


@covers("deploy.volumes", Status.UNKNOWN)
def test_volumes_engine_error() -> None:
    expect(FakeContext(docker=FakeDocker(down=Failure(FailureKind.TIMEOUT, "read timed out"))), "deploy.volumes",
           Status.UNKNOWN, "read timed out")
