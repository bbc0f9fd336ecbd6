"""Class 1, 'Service ne Démarre Pas': port, health, container, port owner, GO_ENV, config, dependencies."""

from __future__ import annotations

from typing import Any

import yaml

from es_doctor import cures
from es_doctor.checks.common import from_failure, service_mode
from es_doctor.checks.context import CheckContext
from es_doctor.checks.registry import Outcome, check, counted, crit, ev, ok, skip, unknown, warn
from es_doctor.findings import Status
from es_doctor.probes import ports
from es_doctor.probes.http import as_json
from es_doctor.probes.result import FailureKind, Result, failed, success

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


@check("startup.api-port", description="The API port accepts TCP connections.",
       components=("service",))
def api_port(ctx: CheckContext) -> Outcome:
    host, port = ctx.api_port()
    result = ports.port_open(host, port, timeout=ctx.timeout)
    if result.failure is not None:
        return crit(f"API port {host}:{port}: {result.failure.message}", ev("port", port))
    if not result.value:
        return crit(f"nothing accepts connections on {host}:{port} (connection refused)", ev("port", port))
    return ok(f"API port {host}:{port} accepts connections", ev("port", port))


@check("startup.health", description="GET /health and GET /ready answer 200.",
       requires=("startup.api-port",), components=("service",))
def health(ctx: CheckContext) -> Outcome:
    api = ctx.service()
    live = api.health()
    if live.failure is not None:
        return from_failure(live.failure, "/health")
    if live.unwrap().status_code != 200:
        return crit(f"/health answered {live.unwrap().status_code}: {live.unwrap().reason}",
                    ev("/health", live.unwrap().status_code), ev("reason", live.unwrap().reason))
    ready = api.ready()
    if ready.failure is not None:
        if ready.failure.status_code == 404:
            return unknown("/health OK; /ready is not served by this version of the service (404)",
                           ev("/health", 200), ev("/ready", 404))
        return from_failure(ready.failure, "/ready")
    state = ready.unwrap()
    if not state.ready:
        waiting = state.waiting_for
        return Outcome(Status.CRIT, f"service is live but not ready, waiting for: {', '.join(waiting) or '?'}",
                       [ev("/health", 200), ev("/ready", state.status_code),
                        ev("waiting for", ", ".join(waiting) or "?")], _readiness_cause(waiting))
    return ok("/health and /ready answer 200", ev("/health", 200), ev("/ready", 200),
              ev("latency", round(live.elapsed_ms, 1), unit="ms"))


def _readiness_cause(waiting: list[str]) -> str | None:
    """What the service waits for decides the cure: its config, or one of its dependencies."""
    words = {w.strip().lower() for w in waiting}
    if words & {"config", "configuration", "go_env", "env"}:
        return cures.CONFIG
    if "postgres" in words or "postgresql" in words or "database" in words:
        return cures.POSTGRES_DOWN
    if "qdrant" in words or "vectors" in words:
        return cures.QDRANT_DOWN
    return None


@check("startup.docker-engine", description="The Docker engine answers (docker ps works).", components=("docker",))
def docker_engine(ctx: CheckContext) -> Outcome:
    version = ctx.docker().ping()
    if version.failure is not None:
        out = from_failure(version.failure, f"Docker engine ({ctx.target.docker.host or '$DOCKER_HOST'})")
        return Outcome(out.status if out.status is not Status.UNKNOWN else Status.CRIT, out.summary, [
            *out.evidence, ev("hint", "start dockerd, fix docker.host, or mark docker absent in the target")])
    return ok(f"Docker engine {version.unwrap()} answers")


@check("startup.container", description="The service container exists and runs (state, exit code, restarts, OOM).",
       requires=("startup.docker-engine",), components=("docker", "service"))
def container(ctx: CheckContext) -> Outcome:
    name = ctx.target.service.container
    info = ctx.container(name)
    if info.failure is not None:
        if info.failure.kind is FailureKind.NOT_FOUND:
            return crit(f"container {name} does not exist", ev("container", name))
        return from_failure(info.failure, "Docker engine")
    c = info.unwrap()
    evidence = [ev("state", c.state), ev("exit_code", c.exit_code), ev("restart_count", c.restart_count),
                ev("oom_killed", c.oom_killed), ev("image", c.image)]
    if not c.running:
        logs = ctx.docker().logs(name, tail=10)
        if logs.ok:
            lines = [line for line in logs.unwrap().splitlines() if line.strip()][-5:]
            evidence.append(ev("last log lines", lines))
        why = "killed: out of memory" if c.oom_killed else f"exit code {c.exit_code}"
        return crit(f"container {name} is {c.state} ({why})", *evidence)
    if c.health == "unhealthy":
        return crit(f"container {name} runs but its healthcheck says unhealthy", *evidence)
    if c.restart_count >= 3:
        return warn(f"container {name} runs but restarted {c.restart_count} times", *evidence)
    return ok(f"container {name} is running", *evidence)


def _service_pids(ctx: CheckContext) -> set[int]:
    """The service's own processes: the container's process tree when Docker knows it."""
    import psutil

    present, _ = ctx.target.is_present("docker")
    if not present:
        return set()
    info = ctx.container(ctx.target.service.container)
    if not info.ok or not info.unwrap().pid:
        return set()
    try:
        root = psutil.Process(info.unwrap().pid)
        return {root.pid, *(p.pid for p in root.children(recursive=True))}
    except psutil.Error:
        return set()


@check("startup.port-owner", description="When the API port is held by another program: which (pid, command). "
       "A holder that answers HTTP at all (the service refusing es-doctor's credentials, another web server) "
       "is never called a squatter.", components=("service",))
def port_owner(ctx: CheckContext) -> Outcome:
    host, port = ctx.api_port()
    if host not in LOCAL_HOSTS and not host.startswith("127."):
        return skip(f"skipped: the API is on a remote host ({host}); port owners are only visible locally")
    holders = ports.listeners(port, ports.host_addresses(host))
    if holders.failure is not None:
        return unknown(f"cannot tell who holds port {port}", ev("error", str(holders.failure)))
    procs = holders.unwrap()
    if not procs:
        return ok(f"port {port} is free on {host} (no process listens on it there)", ev("port", port))
    ours = _service_pids(ctx)
    strangers = [p for p in procs if p.pid not in ours]
    if strangers:
        answer = as_json(ctx.http().get(ctx.api("/health"), accept=(503,)))
        if answer.ok and isinstance(answer.value, dict) and "status" in answer.value:
            strangers = []
    if not strangers:
        return ok(f"port {port} is held by the service itself", ev("pid", [p.pid for p in procs]))
    first = strangers[0]
    who = (ev("pid", first.pid), ev("name", first.name), ev("command", first.command), ev("user", first.username),
           ev("port", port))
    status = ctx.http().status_of(ctx.api("/health"))
    if status in (401, 403):
        return ok(f"port {port} is held by pid {first.pid} ({first.name}), which answers HTTP {status}: the "
                  "service, refusing es-doctor's credentials (check service.api_key); not a squatter", *who,
                  ev("http_status", status))
    if status is not None:
        return Outcome(Status.WARN, f"port {port} is held by pid {first.pid} ({first.name}), which answers HTTP "
                       f"{status} but not as the service's /health: a web server to show the operator, never "
                       "ended by es-doctor", [*who, ev("http_status", status)], cause=cures.WEB_SERVER)
    return crit(f"port {port} is held by another program: pid {first.pid} ({first.name})", *who)


def _container_env(ctx: CheckContext) -> Result[dict[str, str]]:
    present, _ = ctx.target.is_present("docker")
    if present:
        info = ctx.container(ctx.target.service.container)
        if info.failure is not None:
            return Result(failure=info.failure)
        return success(info.unwrap().env)
    _, port = ctx.api_port()
    holders = ports.listeners(port)
    if holders.failure is not None or not holders.unwrap():
        return failed(FailureKind.UNAVAILABLE, "no Docker and no process listens on the API port")
    return ports.process_environ(holders.unwrap()[0].pid)


@check("startup.go-env", description="GO_ENV (and the other required variables) are set in the service's container.",
       components=("service",))
def go_env(ctx: CheckContext) -> Outcome:
    env = _container_env(ctx)
    if env.failure is not None:
        if env.failure.kind is FailureKind.NOT_FOUND:
            return crit(f"container {ctx.target.service.container} does not exist")
        return unknown(f"cannot read the service's environment: {env.failure.message}")
    values = env.unwrap()
    missing = [name for name in ctx.target.service.required_env if not values.get(name)]
    safe = set(ctx.target.service.show_env)  # other values may be secrets: shown as set/unset only
    shown = {name: (values.get(name) if name in safe else "set" if values.get(name) else "unset")
             for name in ctx.target.service.required_env}
    if missing:
        return crit(f"required environment variable(s) not set: {', '.join(missing)}", ev("env", shown))
    return ok(f"environment set: {', '.join(f'{k}={v}' for k, v in shown.items())}", ev("env", shown))


def _read_config(ctx: CheckContext) -> Result[str]:
    svc = ctx.target.service
    present, _ = ctx.target.is_present("docker")
    if present:
        in_container = ctx.docker().read_file(svc.container, svc.config_path)
        failure = in_container.failure
        if failure is None or failure.kind is FailureKind.NOT_FOUND or not svc.config_file:
            return in_container
        # the engine could not copy the file out (e.g. a storage-driver error): read it where the
        # deployment keeps it on this host, when the target names that place
    if svc.config_file:
        from pathlib import Path

        path = Path(svc.config_file).expanduser()
        if not path.is_file():
            return failed(FailureKind.NOT_FOUND, f"{path} does not exist")
        return success(path.read_text(encoding="utf-8", errors="replace"))
    return failed(FailureKind.UNAVAILABLE, "no Docker and no service.config_file configured")


@check("startup.config-file", description="The service's config.yaml is present (in its container) and valid YAML.",
       components=("service",))
def config_file(ctx: CheckContext) -> Outcome:
    path = ctx.target.service.config_path
    text = _read_config(ctx)
    if text.failure is not None:
        if text.failure.kind is FailureKind.NOT_FOUND:
            return crit(f"config file {path} is missing", ev("path", path), ev("error", text.failure.message))
        if text.failure.kind is FailureKind.UNAVAILABLE:
            return skip(f"skipped: {text.failure.message}")
        return unknown(f"cannot read {path}: {text.failure.message}")
    try:
        data: Any = yaml.safe_load(text.unwrap())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        return crit(f"config file {path} is not valid YAML (line {line})", ev("error", str(exc).splitlines()[0]))
    if not isinstance(data, dict):
        return crit(f"config file {path} is not a YAML mapping", ev("type", type(data).__name__))
    return ok(f"config file {path} is valid YAML ({counted(len(data), 'section')})",
              ev("sections", sorted(map(str, data))))


@check("startup.qdrant", description="Qdrant answers (collections list).",
       components=("qdrant",))
def qdrant(ctx: CheckContext) -> Outcome:
    result = ctx.memo("qdrant:collections", lambda: ctx.qdrant().collections())
    if result.failure is not None:
        return from_failure(result.failure, f"Qdrant at {ctx.target.qdrant.url}")
    return ok(f"Qdrant answers ({counted(len(result.unwrap()), 'collection')})", ev("collections", result.unwrap()),
              ev("latency", round(result.elapsed_ms, 1), unit="ms"))


@check("startup.postgres", description="PostgreSQL answers SELECT 1.",
       components=("postgres",))
def postgres(ctx: CheckContext) -> Outcome:
    result = ctx.memo("postgres:select-one", lambda: ctx.postgres().select_one())
    if result.failure is not None:
        return from_failure(result.failure, "PostgreSQL")
    return ok("PostgreSQL answers SELECT 1", ev("latency", round(result.elapsed_ms, 1), unit="ms"))


@check("startup.service-mode", description="The service is not in read-only or maintenance mode "
       "(GET /api/v1/maintenance): in either mode it refuses every write.", requires=("startup.api-port",),
       components=("service",))
def mode(ctx: CheckContext) -> Outcome:
    result = service_mode(ctx)
    if result.failure is not None:
        if result.failure.kind is FailureKind.NOT_FOUND:
            return skip("skipped: this version of the service does not report its mode (/api/v1/maintenance 404)")
        # the mode is unknown; whether the service is down is the other startup checks' finding
        return unknown(f"cannot read the service's mode: {result.failure}")
    state = result.unwrap()
    evidence = [ev("read-only", "on" if state.readonly else "off"),
                ev("maintenance", "on" if state.maintenance else "off")]
    on = [word for word, flag in (("read-only", state.readonly), ("maintenance", state.maintenance)) if flag]
    if on:
        return warn(f"{' and '.join(on)} mode is on: the service refuses every write (503) until it is lifted",
                    *evidence)
    return ok("read-only and maintenance modes are off: writes are accepted", *evidence)
