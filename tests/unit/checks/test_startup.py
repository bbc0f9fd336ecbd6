"""Class 1, 'Service ne Démarre Pas': every startup.* check, healthy and each way it trips."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from fakes import (
    Answer,
    FakeContext,
    FakeDocker,
    FakePostgres,
    FakeQdrant,
    api,
    container_info,
    covers,
    engine_down,
    evidence,
    expect,
    refused,
    timeout,
)

from es_doctor.config import Target
from es_doctor.findings import Status
from es_doctor.probes import ports
from es_doctor.probes.result import Failure, FailureKind, failed

NO_DOCKER = {"docker": "bare-metal host"}
HEALTHY = {api("/health"): Answer(200, {"status": "ok"}), api("/ready"): Answer(200, {"ready": True})}


def local_target(port: int, **changes: object) -> Target:
    return Target(service={"api_url": f"http://127.0.0.1:{port}"}, **changes)  # type: ignore[arg-type]


def docker_with(**changes: object) -> FakeDocker:
    return FakeDocker(containers={"email-sender-go": container_info(**changes)})


# --------------------------------------------------------------------------- startup.api-port


@covers("startup.api-port", Status.OK)
def test_api_port_open(listening_port: int) -> None:
    out = expect(FakeContext(local_target(listening_port)), "startup.api-port", Status.OK, "accepts connections")
    assert evidence(out)["port"] == listening_port


@covers("startup.api-port", Status.CRIT)
def test_api_port_refused(closed_port: int) -> None:
    expect(FakeContext(local_target(closed_port)), "startup.api-port", Status.CRIT, "connection refused",
           str(closed_port), cure="service-restart")


@covers("startup.api-port", Status.CRIT)
def test_api_port_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "port_open",
                        lambda host, port, timeout: failed(FailureKind.TIMEOUT, f"connect to {host}:{port} timed out"))
    expect(FakeContext(), "startup.api-port", Status.CRIT, "timed out", cure="service-restart")


# --------------------------------------------------------------------------- startup.health


@covers("startup.health", Status.OK)
def test_health_and_ready_200() -> None:
    out = expect(FakeContext(routes=HEALTHY), "startup.health", Status.OK, "/health and /ready answer 200")
    assert evidence(out)["/ready"] == 200


@covers("startup.health", Status.CRIT)
def test_health_503_gives_its_reason() -> None:
    routes = {**HEALTHY, api("/health"): Answer(503, {"status": "unhealthy", "reason": "database unreachable"})}
    out = expect(FakeContext(routes=routes), "startup.health", Status.CRIT, "503", "database unreachable",
                 cure="service-restart")
    assert evidence(out)["reason"] == "database unreachable"


@covers("startup.health", Status.CRIT)
@pytest.mark.parametrize("failure", [refused(), timeout(), Failure(FailureKind.HTTP_ERROR, "500", 500)])
def test_health_down(failure: Failure) -> None:
    expect(FakeContext(routes={api("/health"): failure}), "startup.health", Status.CRIT, "/health",
           cure="service-restart")


@covers("startup.health", Status.UNKNOWN)
def test_health_404_is_not_served_by_this_version() -> None:
    expect(FakeContext(routes={api("/health"): Answer(404, "404 page not found")}), "startup.health",
           Status.UNKNOWN, "not served by this version")


@covers("startup.health", Status.UNKNOWN)
def test_health_not_json_breaks_the_contract() -> None:
    expect(FakeContext(routes={api("/health"): Answer(200, "<html>hi</html>")}), "startup.health",
           Status.UNKNOWN, "does not follow the contract")


@covers("startup.health", Status.UNKNOWN)
def test_ready_404_is_unknown_not_down() -> None:
    routes = {**HEALTHY, api("/ready"): Answer(404, "404 page not found")}
    out = expect(FakeContext(routes=routes), "startup.health", Status.UNKNOWN, "/ready is not served")
    assert evidence(out) == {"/health": 200, "/ready": 404}


@covers("startup.health", Status.CRIT)
def test_ready_refused() -> None:
    routes = {**HEALTHY, api("/ready"): refused()}
    expect(FakeContext(routes=routes), "startup.health", Status.CRIT, "/ready", "unreachable", cure="service-restart")


@covers("startup.health", Status.CRIT)
@pytest.mark.parametrize(("waiting", "cause", "cure"), [
    (["config"], "config", "config-missing"),
    (["GO_ENV"], "config", "config-missing"),
    (["qdrant"], "qdrant-down", "dependency-restart component=qdrant"),
    (["Vectors"], "qdrant-down", "dependency-restart component=qdrant"),
    (["qdrant", "postgres"], "postgres-down", "dependency-restart component=postgres"),
    (["database"], "postgres-down", "dependency-restart component=postgres"),
    (["smtp"], None, "service-restart"),
    ([], None, "service-restart"),
])
def test_not_ready_names_the_cure_of_what_it_waits_for(waiting: list[str], cause: str | None, cure: str) -> None:
    routes = {**HEALTHY, api("/ready"): Answer(503, {"ready": False, "waiting_for": waiting})}
    out = expect(FakeContext(routes=routes), "startup.health", Status.CRIT, "live but not ready",
                 ", ".join(waiting) or "?", cause=cause, cure=cure)
    assert evidence(out)["waiting for"] == (", ".join(waiting) or "?")


@covers("startup.health", Status.CRIT)
def test_ready_200_saying_false_is_not_ready() -> None:
    routes = {**HEALTHY, api("/ready"): Answer(200, {"ready": False, "waiting_for": ["qdrant"]})}
    expect(FakeContext(routes=routes), "startup.health", Status.CRIT, "waiting for: qdrant",
           cause="qdrant-down", cure="dependency-restart component=qdrant")


# --------------------------------------------------------------------------- startup.docker-engine


@covers("startup.docker-engine", Status.OK)
def test_docker_engine_answers() -> None:
    expect(FakeContext(docker=FakeDocker(version="27.1.1")), "startup.docker-engine", Status.OK, "27.1.1")


@covers("startup.docker-engine", Status.CRIT)
@pytest.mark.parametrize("failure", [engine_down(), Failure(FailureKind.UNAVAILABLE, "docker SDK not installed"),
                                     Failure(FailureKind.ERROR, "permission denied on the socket")])
def test_docker_engine_down_is_crit_with_a_hint(failure: Failure) -> None:
    """Whatever the failure kind, an engine that does not answer is CRIT (never UNKNOWN); no runbook cures
    it: escalation level 2 (DevOps)."""
    out = expect(FakeContext(docker=FakeDocker(down=failure)), "startup.docker-engine", Status.CRIT,
                 "Docker engine", cure=None, escalate=2)
    assert "mark docker absent" in evidence(out)["hint"]


# --------------------------------------------------------------------------- startup.container


@covers("startup.container", Status.OK)
def test_container_running() -> None:
    out = expect(FakeContext(docker=docker_with()), "startup.container", Status.OK, "is running")
    assert evidence(out)["state"] == "running"


@covers("startup.container", Status.CRIT)
def test_container_missing() -> None:
    expect(FakeContext(docker=FakeDocker()), "startup.container", Status.CRIT, "does not exist",
           cure="service-restart")


@covers("startup.container", Status.CRIT)
def test_container_exited_shows_exit_code_and_last_log_lines() -> None:
    docker = docker_with(state="exited", exit_code=2)
    docker.logs_text = "starting\n\nloading config\npanic: open /app/config/config.yaml: no such file\n"
    out = expect(FakeContext(docker=docker), "startup.container", Status.CRIT, "exited", "exit code 2",
                 cure="service-restart")
    assert evidence(out)["last log lines"][-1].startswith("panic: open /app/config")
    assert "" not in evidence(out)["last log lines"]


@covers("startup.container", Status.CRIT)
def test_container_oom_killed() -> None:
    out = expect(FakeContext(docker=docker_with(state="exited", exit_code=137, oom_killed=True)), "startup.container",
                 Status.CRIT, "out of memory", cure="service-restart")
    assert evidence(out)["oom_killed"] is True


@covers("startup.container", Status.CRIT)
def test_container_unhealthy() -> None:
    expect(FakeContext(docker=docker_with(health="unhealthy")), "startup.container", Status.CRIT,
           "healthcheck says unhealthy", cure="service-restart")


@covers("startup.container", Status.OK, Status.WARN)
def test_container_restart_count_warns_from_three() -> None:
    expect(FakeContext(docker=docker_with(restart_count=2)), "startup.container", Status.OK)
    out = expect(FakeContext(docker=docker_with(restart_count=3)), "startup.container", Status.WARN,
                 "restarted 3 times", cure="service-restart")
    assert evidence(out)["restart_count"] == 3


@covers("startup.container", Status.UNKNOWN)
def test_container_engine_error_is_unknown() -> None:
    docker = FakeDocker(down=Failure(FailureKind.ERROR, "500 Server Error: storage driver"))
    expect(FakeContext(docker=docker), "startup.container", Status.UNKNOWN, "Docker engine")


# --------------------------------------------------------------------------- startup.port-owner


@covers("startup.port-owner", Status.SKIP)
def test_port_owner_skips_a_remote_api() -> None:
    target = Target(service={"api_url": "http://10.1.2.3:8080"})  # type: ignore[arg-type]
    expect(FakeContext(target), "startup.port-owner", Status.SKIP, "remote host (10.1.2.3)")


@covers("startup.port-owner", Status.OK)
def test_port_owner_free_port(closed_port: int) -> None:
    expect(FakeContext(local_target(closed_port)), "startup.port-owner", Status.OK, "is free")


@covers("startup.port-owner", Status.OK)
def test_port_held_by_the_service_container(listening_port: int) -> None:
    """The listener (this test process) is the container's process: the service holds its own port."""
    docker = docker_with(pid=os.getpid())
    expect(FakeContext(local_target(listening_port), docker=docker), "startup.port-owner", Status.OK,
           "held by the service itself")


@covers("startup.port-owner", Status.CRIT)
def test_port_held_by_another_program(listening_port: int,
                                      listener_process: Callable[[dict[str, str]], tuple[int, int]]) -> None:
    """The container's process tree is another process: this test process, holding the port, is a stranger."""
    service_pid, _ = listener_process({})
    out = expect(FakeContext(local_target(listening_port), docker=docker_with(pid=service_pid)),
                 "startup.port-owner", Status.CRIT, "held by another program", f"pid {os.getpid()}",
                 cure="port-in-use")
    assert evidence(out)["pid"] == os.getpid()
    assert evidence(out)["port"] == listening_port


@covers("startup.port-owner", Status.OK, Status.WARN)
def test_port_owner_without_docker_asks_the_holder_whether_it_is_the_service(listening_port: int) -> None:
    """A holder that answers HTTP at all is never a squatter: the service, the service refusing es-doctor's
    credentials (401/403: OK), or a web server to show the operator (WARN, no cure that ends it)."""
    target = local_target(listening_port, absent=NO_DOCKER)
    health = f"http://127.0.0.1:{listening_port}/health"
    expect(FakeContext(target, routes={health: Answer(200, {"status": "ok"})}), "startup.port-owner", Status.OK,
           "held by the service itself")
    expect(FakeContext(target, routes={health: Answer(401, "unauthorized")}), "startup.port-owner", Status.OK,
           "answers HTTP 401", "refusing es-doctor's credentials")
    expect(FakeContext(target, routes={health: Answer(200, "hello from nginx")}), "startup.port-owner",
           Status.WARN, "answers HTTP 200", "never ended by es-doctor", cure=None, cause="web-server", escalate=2)


@covers("startup.port-owner", Status.UNKNOWN)
def test_port_owner_cannot_list_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "listeners",
                        lambda port, addresses=None: failed(FailureKind.ERROR, "cannot list sockets: EPERM"))
    expect(FakeContext(), "startup.port-owner", Status.UNKNOWN, "cannot tell who holds port 8080")


# --------------------------------------------------------------------------- startup.go-env


@covers("startup.go-env", Status.OK)
def test_go_env_set_in_the_container() -> None:
    out = expect(FakeContext(docker=docker_with(env={"GO_ENV": "staging"})), "startup.go-env", Status.OK,
                 "GO_ENV=staging")
    assert evidence(out)["env"] == {"GO_ENV": "staging"}


@covers("startup.go-env", Status.CRIT)
@pytest.mark.parametrize("env", [{}, {"GO_ENV": ""}, {"LOG_LEVEL": "debug"}])
def test_go_env_missing_or_empty(env: dict[str, str]) -> None:
    expect(FakeContext(docker=docker_with(env=env)), "startup.go-env", Status.CRIT, "not set: GO_ENV",
           cure="config-missing")


@covers("startup.go-env", Status.CRIT)
def test_go_env_every_required_variable_is_named() -> None:
    target = Target(service={"required_env": ["GO_ENV", "API_PORT", "METRICS_PORT"]})  # type: ignore[arg-type]
    out = expect(FakeContext(target, docker=docker_with(env={"API_PORT": "8080"})), "startup.go-env", Status.CRIT,
                 "GO_ENV, METRICS_PORT", cure="config-missing")
    # values are shown only for service.show_env (GO_ENV by default); the others read set/unset
    assert evidence(out)["env"] == {"GO_ENV": None, "API_PORT": "set", "METRICS_PORT": "unset"}


@covers("startup.go-env", Status.CRIT)
def test_go_env_container_missing() -> None:
    expect(FakeContext(docker=FakeDocker()), "startup.go-env", Status.CRIT, "does not exist", cure="config-missing")


@covers("startup.go-env", Status.UNKNOWN)
def test_go_env_engine_down_is_unknown() -> None:
    expect(FakeContext(docker=FakeDocker(down=engine_down())), "startup.go-env", Status.UNKNOWN,
           "cannot read the service's environment")


@covers("startup.go-env", Status.OK, Status.CRIT)
def test_go_env_without_docker_reads_the_port_holders_environment(
        listener_process: Callable[[dict[str, str]], tuple[int, int]]) -> None:
    """No Docker: the environment of the process listening on the API port (a real process here)."""
    _, port = listener_process({"GO_ENV": "production", "PATH": os.environ.get("PATH", "")})
    expect(FakeContext(local_target(port, absent=NO_DOCKER)), "startup.go-env", Status.OK, "GO_ENV=production")
    _, port = listener_process({"PATH": os.environ.get("PATH", "")})
    expect(FakeContext(local_target(port, absent=NO_DOCKER)), "startup.go-env", Status.CRIT, "GO_ENV",
           cure="config-missing")


@covers("startup.go-env", Status.UNKNOWN)
def test_go_env_without_docker_and_no_listener(closed_port: int) -> None:
    expect(FakeContext(local_target(closed_port, absent=NO_DOCKER)), "startup.go-env", Status.UNKNOWN,
           "no process listens on the API port")


# --------------------------------------------------------------------------- startup.config-file

CONFIG = "/app/config/config.yaml"
VALID = "vector_cache:\n  max_size: 1000\nconnection_pool:\n  max_connections: 10\nmetrics:\n  enabled: true\n"


def docker_file(content: str | Failure | None) -> FakeDocker:
    docker = docker_with()
    if content is not None:
        docker.files[("email-sender-go", CONFIG)] = content
    return docker


@covers("startup.config-file", Status.OK)
def test_config_file_valid() -> None:
    out = expect(FakeContext(docker=docker_file(VALID)), "startup.config-file", Status.OK, "valid YAML (3 sections)")
    assert evidence(out)["sections"] == ["connection_pool", "metrics", "vector_cache"]


@covers("startup.config-file", Status.CRIT)
def test_config_file_missing() -> None:
    expect(FakeContext(docker=docker_file(None)), "startup.config-file", Status.CRIT, f"{CONFIG} is missing",
           cure="config-missing")


@covers("startup.config-file", Status.CRIT)
def test_config_file_invalid_yaml_names_the_line() -> None:
    expect(FakeContext(docker=docker_file("metrics:\n  enabled: true\n  port: [8081\n")), "startup.config-file",
           Status.CRIT, "not valid YAML", "line ", cure="config-missing")


@covers("startup.config-file", Status.CRIT)
@pytest.mark.parametrize("content", ["- a\n- b\n", "just a string\n", ""])
def test_config_file_not_a_mapping(content: str) -> None:
    expect(FakeContext(docker=docker_file(content)), "startup.config-file", Status.CRIT, "not a YAML mapping",
           cure="config-missing")


@covers("startup.config-file", Status.UNKNOWN)
def test_config_file_unreadable_is_unknown() -> None:
    failure = Failure(FailureKind.ERROR, "storage driver error")
    expect(FakeContext(docker=docker_file(failure)), "startup.config-file", Status.UNKNOWN, "cannot read",
           "storage driver error")


@covers("startup.config-file", Status.OK)
def test_config_file_falls_back_to_the_host_copy(tmp_path: Path) -> None:
    host_copy = tmp_path / "config.yaml"
    host_copy.write_text(VALID, encoding="utf-8")
    target = Target(service={"config_file": str(host_copy)})  # type: ignore[arg-type]
    expect(FakeContext(target, docker=docker_file(Failure(FailureKind.ERROR, "storage driver error"))),
           "startup.config-file", Status.OK, "valid YAML")


@covers("startup.config-file", Status.OK, Status.CRIT)
def test_config_file_without_docker_reads_the_host_file(tmp_path: Path) -> None:
    host_copy = tmp_path / "config.yaml"
    target = Target(service={"config_file": str(host_copy)}, absent=NO_DOCKER)  # type: ignore[arg-type]
    expect(FakeContext(target), "startup.config-file", Status.CRIT, "missing", cure="config-missing")
    host_copy.write_text(VALID, encoding="utf-8")
    expect(FakeContext(target), "startup.config-file", Status.OK, "valid YAML")


@covers("startup.config-file", Status.SKIP)
def test_config_file_nowhere_to_read_it_from() -> None:
    expect(FakeContext(Target(absent=NO_DOCKER)), "startup.config-file", Status.SKIP, "no service.config_file")


# --------------------------------------------------------------------------- startup.qdrant, startup.postgres


@covers("startup.qdrant", Status.OK)
def test_qdrant_answers() -> None:
    out = expect(FakeContext(qdrant=FakeQdrant(names=["task_vectors", "other"])), "startup.qdrant", Status.OK,
                 "2 collections")
    assert evidence(out)["collections"] == ["task_vectors", "other"]


@covers("startup.qdrant", Status.CRIT)
@pytest.mark.parametrize("failure", [refused("http://localhost:6333"), timeout(),
                                     Failure(FailureKind.AUTH, "403 forbidden", 403)])
def test_qdrant_down(failure: Failure) -> None:
    expect(FakeContext(qdrant=FakeQdrant(names=failure)), "startup.qdrant", Status.CRIT,
           "Qdrant at http://localhost:6333", cure="dependency-restart component=qdrant")


@covers("startup.qdrant", Status.UNKNOWN)
def test_qdrant_strange_answer() -> None:
    expect(FakeContext(qdrant=FakeQdrant(names=Failure(FailureKind.BAD_RESPONSE, "not JSON"))), "startup.qdrant",
           Status.UNKNOWN, "does not follow the contract")


@covers("startup.postgres", Status.OK)
def test_postgres_answers() -> None:
    expect(FakeContext(postgres=FakePostgres()), "startup.postgres", Status.OK, "SELECT 1")


@covers("startup.postgres", Status.CRIT)
@pytest.mark.parametrize(("failure", "word"), [
    (Failure(FailureKind.REFUSED, "connection refused"), "unreachable"),
    (Failure(FailureKind.AUTH, "password authentication failed"), "refused our credentials"),
    (Failure(FailureKind.TIMEOUT, "timeout expired"), "not answering"),
])
def test_postgres_down(failure: Failure, word: str) -> None:
    expect(FakeContext(postgres=FakePostgres(failure)), "startup.postgres", Status.CRIT, word,
           cure="dependency-restart component=postgres")


@covers("startup.postgres", Status.UNKNOWN)
def test_postgres_other_error_is_unknown() -> None:
    expect(FakeContext(postgres=FakePostgres(Failure(FailureKind.ERROR, "database email_sender does not exist"))),
           "startup.postgres", Status.UNKNOWN, "PostgreSQL")


# --------------------------------------------------------------------------- startup.service-mode

MODE = api("/api/v1/maintenance")


@covers("startup.service-mode", Status.OK)
def test_service_mode_writes_accepted() -> None:
    out = expect(FakeContext(routes={MODE: Answer(200, {"readonly": False, "maintenance": False, "since": None})}),
                 "startup.service-mode", Status.OK, "modes are off")
    assert evidence(out) == {"read-only": "off", "maintenance": "off"}


@covers("startup.service-mode", Status.WARN)
@pytest.mark.parametrize(("body", "word"), [
    ({"readonly": True, "maintenance": False}, "read-only mode is on"),
    ({"readonly": False, "maintenance": True}, "maintenance mode is on"),
    ({"readonly": True, "maintenance": True}, "read-only and maintenance mode is on"),
    ({"readonly": True}, "read-only mode is on"),  # a missing field is off
])
def test_service_mode_refusing_writes(body: dict[str, bool], word: str) -> None:
    out = expect(FakeContext(routes={MODE: Answer(200, body)}), "startup.service-mode", Status.WARN, word,
                 "refuses every write", cure="service-writes-resume")
    assert evidence(out)["read-only"] == ("on" if body.get("readonly") else "off")


@covers("startup.service-mode", Status.SKIP)
def test_service_mode_not_served_by_this_version() -> None:
    expect(FakeContext(routes={MODE: Answer(404, "404 page not found")}), "startup.service-mode", Status.SKIP,
           "does not report its mode")


@covers("startup.service-mode", Status.UNKNOWN)
@pytest.mark.parametrize("answer", [Answer(500, "boom"), refused(), timeout()])
def test_service_mode_endpoint_fails(answer: Answer | Failure) -> None:
    """The mode is unknown, and resuming writes cannot cure a failing endpoint: no cure."""
    expect(FakeContext(routes={MODE: answer}), "startup.service-mode", Status.UNKNOWN,
           "cannot read the service's mode")


@covers("startup.service-mode", Status.UNKNOWN)
@pytest.mark.parametrize("answer", [Answer(200, "read-only: no"), Answer(200, ["readonly"])])
def test_service_mode_answer_unusable(answer: Answer) -> None:
    expect(FakeContext(routes={MODE: answer}), "startup.service-mode", Status.UNKNOWN, "cannot read the service's mode",
           "bad-response")
