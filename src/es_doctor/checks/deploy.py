"""Class 5, 'Erreurs de Déploiement': containers, image drift, deployment/migration logs, volumes."""

from __future__ import annotations

from es_doctor.checks.common import excerpt
from es_doctor.checks.context import CheckContext
from es_doctor.checks.registry import Outcome, check, crit, ev, ok, unknown, warn
from es_doctor.probes.logs import newest, tail_lines
from es_doctor.probes.result import FailureKind

ENGINE = "startup.docker-engine"

#: container → the target component it belongs to (absent components are not expected)
COMPONENT_OF = {"email-sender-go": "service", "qdrant": "qdrant", "postgres": "postgres", "redis": "redis",
                "prometheus": "prometheus", "grafana": "grafana"}


def _container_name(ctx: CheckContext, key: str) -> tuple[str, str]:
    component = COMPONENT_OF.get(key, key)
    section = getattr(ctx.target, component, None)
    name = getattr(section, "container", key) if section is not None else key
    return component, str(name)


@check("deploy.containers", description="Every container of the stack is present and running (or healthy).",
       requires=(ENGINE,), components=("docker",))
def containers(ctx: CheckContext) -> Outcome:
    expected = []
    for key in ctx.target.docker.start_order:
        component, name = _container_name(ctx, key)
        present, _ = ctx.target.is_present(component)
        if present:
            expected.append(name)
    states: dict[str, str] = {}
    for name in expected:
        info = ctx.container(name)
        if info.failure is not None:
            if info.failure.kind is not FailureKind.NOT_FOUND:
                return unknown(f"Docker engine: {info.failure.message}")
            states[name] = "missing"
        else:
            c = info.unwrap()
            states[name] = c.health if c.running and c.health else c.state
    bad = {n: s for n, s in states.items() if s not in ("running", "healthy", "starting")}
    starting = [n for n, s in states.items() if s == "starting"]
    if not bad and starting:
        return warn(f"{len(starting)} of {len(states)} containers still starting (healthcheck not passed yet): "
                    + ", ".join(starting), ev("containers", ", ".join(f"{n} ({s})" for n, s in states.items())))
    if bad:
        return crit(f"{len(bad)} of {len(states)} containers not running: "
                    + ", ".join(f"{n} ({s})" for n, s in bad.items()), ev("containers", states))
    return ok(f"all {len(states)} containers running", ev("containers", states))


@check("deploy.image-drift", description="The service runs the image tag that is configured.",
       requires=(ENGINE,), components=("docker", "service"))
def image_drift(ctx: CheckContext) -> Outcome:
    wanted = ctx.target.service.image
    info = ctx.container(ctx.target.service.container)
    if info.failure is not None:
        if info.failure.kind is FailureKind.NOT_FOUND:
            return unknown(f"container {ctx.target.service.container} does not exist: no image to compare")
        return unknown(f"Docker engine: {info.failure.message}")
    c = info.unwrap()
    running = c.image
    if _normal(running) == _normal(wanted) or _normal(wanted) in c.image_tags:
        return ok(f"the service runs {running}, as configured", ev("running", running), ev("configured", wanted))
    return warn(f"image drift: the service runs {running}, the configuration says {wanted}",
                ev("running", running), ev("configured", wanted), ev("image tags", c.image_tags))


def _normal(ref: str) -> str:
    """``name`` → ``name:latest``; a tag or digest is kept."""
    return ref if ":" in ref.rsplit("/", 1)[-1] or "@" in ref else ref + ":latest"


def _log_errors(ctx: CheckContext, pattern: str, what: str) -> Outcome:
    directory = ctx.log_dir()
    latest = newest(directory, pattern)
    if latest.failure is not None:
        if latest.failure.kind is FailureKind.NOT_FOUND:
            return ok(f"no {what} log ({pattern} in {directory})")
        return unknown(f"cannot read {directory}: {latest.failure.message}")
    path = latest.unwrap()
    lines = tail_lines(path, 5000)
    if lines.failure is not None:
        return unknown(f"cannot read {path}: {lines.failure.message}")
    errors = [line for line in lines.unwrap() if line.level in ("ERROR", "FATAL")]
    if errors:
        # the image that ran before, when the deployment log names it (a JSON field previous_image): the
        # rollback's parameter, so that its printed cure is complete (es_doctor.cures, deploy.deployment-log)
        previous = next((line.field("previous_image") for line in reversed(lines.unwrap())
                         if line.field("previous_image")), "")
        return crit(f"latest {what} log {path.name} has {len(errors)} error line(s)", ev("log", str(path)),
                    ev("errors", len(errors)), ev("latest", excerpt(errors)),
                    *([ev("previous image", previous)] if previous else []))
    return ok(f"latest {what} log {path.name} has no errors", ev("log", str(path)))


@check("deploy.deployment-log", description="The latest deployment log has no error.")
def deployment_log(ctx: CheckContext) -> Outcome:
    return _log_errors(ctx, ctx.target.logs.deployment_glob, "deployment")


@check("deploy.migration-log", description="The latest migration log has no error.")
def migration_log(ctx: CheckContext) -> Outcome:
    return _log_errors(ctx, ctx.target.logs.migration_glob, "migration")


@check("deploy.volumes", description="The stack's Docker volumes exist.",
       requires=(ENGINE,), components=("docker",))
def volumes(ctx: CheckContext) -> Outcome:
    result = ctx.docker().volumes()
    if result.failure is not None:
        return unknown(f"Docker engine: {result.failure.message}")
    existing = set(result.unwrap())
    missing = [v for v in ctx.target.docker.volumes if v not in existing]
    if missing:
        return crit(f"volume(s) missing: {', '.join(missing)}", ev("missing", missing))
    return ok(f"volumes present: {', '.join(ctx.target.docker.volumes)}")
