"""Docker: containers, images, the stack, volumes and their archives, the service's restart."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

from es_doctor.config import Target
from es_doctor.runbooks.actions.base import (
    RUN_ENV,
    ActionContext,
    ActionError,
    action,
    argv_words,
    need,
    run_program,
    stamp,
    tool_call,
    unwrap,
)


@action("docker.restart", lambda i: f"restart container {i.get('container')}")
def docker_restart(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    name = need(inputs, "container")
    docker = ctx.docker()
    info = unwrap(docker.container(name), f"container {name}")
    result = docker.restart(name) if info.running else docker.start(name)
    return {"container": name, "result": unwrap(result, f"restart {name}")}


def _restart_preview(_inputs: dict[str, Any], target: Target) -> str:
    if target.is_present("docker")[0]:
        return f": container {target.service.container}"
    if target.service.restart_command:
        return f": runs {' '.join(target.service.restart_command)}"
    return " - refused: no Docker and no service.restart_command on this target"


@action("service.restart", lambda _i: "restart the service (its container, or the target's service.restart_command "
                                      "where Docker does not run it)", preview=_restart_preview)
def service_restart(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """The service restarted by what runs it: Docker, else the target's own supervisor command."""
    target = ctx.target
    if target.is_present("docker")[0]:
        return docker_restart({"container": target.service.container}, ctx)
    argv = [str(a) for a in target.service.restart_command or []]
    if not argv:
        raise ActionError(f"cannot restart the service: no Docker ({target.is_present('docker')[1]}) and no "
                          "service.restart_command in the target")
    # the service it starts is not a step's program: it must not carry the run's id (nor outlive it as one)
    env = {k: v for k, v in os.environ.items() if k != RUN_ENV}
    output = run_program(argv, env, float(inputs.get("timeout", 120)), ctx)
    return {"command": argv, "output": output[-2000:]}


@action("docker.start", lambda i: f"start container {i.get('container')} (if stopped)")
def docker_start(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    name = need(inputs, "container")
    return {"container": name, "result": unwrap(ctx.docker().start(name), f"start {name}")}


@action("docker.stop", lambda i: f"stop container {i.get('container')}", destructive=True)
def docker_stop(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    name = need(inputs, "container")
    return {"container": name, "result": unwrap(ctx.docker().stop(name), f"stop {name}")}


@action("docker.exec", lambda i: f"run {argv_words(i.get('argv'))} in container {i.get('container')}")
def docker_exec(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    name, argv = need(inputs, "container"), need(inputs, "argv", list)
    result = unwrap(ctx.docker().exec(name, [str(a) for a in argv]), f"exec in {name}")
    if result.exit_code != 0 and not inputs.get("allow_failure", False):
        raise ActionError(f"{argv[0]} exited {result.exit_code} in {name}: {result.output[-300:]}")
    return {"exit_code": result.exit_code, "output": result.output[-4000:]}


@action("docker.logs", lambda i: f"show the last {i.get('tail', 50)} log lines of {i.get('container')}")
def docker_logs(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    name = need(inputs, "container")
    text = unwrap(ctx.docker().logs(name, int(inputs.get("tail", 50))), f"logs of {name}")
    ctx.say(text)
    return {"logs": text}


@action("docker.prune", lambda _i: "remove dangling images and stopped helper containers", destructive=True)
def docker_prune(_inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    return dict(unwrap(ctx.docker().prune(), "prune"))


@action("docker.compose-restart",
        lambda i: f"restart the containers of compose project {i.get('project')}"
                  + (f", service {i['service']}" if i.get("service") else ""))
def docker_compose_restart(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    project = need(inputs, "project")
    docker = ctx.docker()
    names = unwrap(docker.compose_containers(project, inputs.get("service")), f"containers of {project}")
    if not names:
        raise ActionError(f"no container carries the label com.docker.compose.project={project}")
    for name in names:
        info = unwrap(docker.container(name), name)
        unwrap(docker.restart(name) if info.running else docker.start(name), f"restart {name}")
    return {"containers": names}


@action("docker.rebuild", lambda i: f"rebuild image {i.get('tag')} from {i.get('context')} without cache")
def docker_rebuild(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    context, tag = need(inputs, "context"), need(inputs, "tag")
    image_id = unwrap(ctx.docker().build(context, tag, nocache=bool(inputs.get("nocache", True))), f"build {tag}")
    return {"image": tag, "id": image_id}


@action("docker.recreate", lambda i: f"recreate container {i.get('container')}"
        + (f" from image {i['image']}" if i.get("image") else "")
        + (f" with {sorted(i['env'])}" if i.get("env") else "")
        + (f" without {i['unset']}" if i.get("unset") else ""), destructive=True)
def docker_recreate(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    name = need(inputs, "container")
    env = {str(k): str(v) for k, v in (inputs.get("env") or {}).items()}
    before = unwrap(ctx.docker().container(name), f"container {name}").image
    result = ctx.docker().recreate(name, image=inputs.get("image") or None, env_set=env,
                                   env_unset=[str(u) for u in inputs.get("unset") or []])
    out = {"container": name, "result": unwrap(result, f"recreate {name}"), "previous_image": before}
    if inputs.get("image") and inputs["image"] != before and name == ctx.target.service.container:
        record_deployment(ctx, before, str(inputs["image"]))
    return out


def record_deployment(ctx: ActionContext, previous: str, image: str) -> None:
    import json

    ctx.deployments.parent.mkdir(parents=True, exist_ok=True)
    with ctx.deployments.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                              "previous": previous, "image": image}) + "\n")


@action("deploy.current", lambda _i: "record the image the service runs now (what a rollback goes back to)")
def deploy_current(_inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    info = unwrap(ctx.docker().container(ctx.target.service.container), "the service container")
    return {"image": info.image, "image_id": info.image_id}


@action("deploy.previous", lambda _i: "find the image the service ran before its current one (deployment record)")
def deploy_previous(_inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    import json

    current = unwrap(ctx.docker().container(ctx.target.service.container), "the service container").image
    records = []
    if ctx.deployments.is_file():
        records = [json.loads(line) for line in ctx.deployments.read_text(encoding="utf-8").splitlines() if line]
    for record in reversed(records):
        if record.get("image") == current and record.get("previous") and record["previous"] != current:
            return {"image": record["previous"], "current": current}
    raise ActionError(f"no earlier image recorded for {current} in {ctx.deployments}; name one: --to TAG")


@action("docker.stack-restart",
        lambda i: f"stop {list(reversed(i.get('order') or []))}, then start {i.get('order')} waiting for each",
        destructive=True)
def docker_stack_restart(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """The guide's `docker-compose down && up`: stop in reverse dependency order, start in order."""
    docker = ctx.docker()
    order = [str(n) for n in need(inputs, "order", list)]
    present = [n for n in order if docker.container(n).ok]
    if not present:
        raise ActionError(f"none of {order} exists on this engine")
    for name in reversed(present):
        unwrap(docker.stop(name, timeout=int(inputs.get("stop_timeout", 10))), f"stop {name}")
    started = []
    for name in present:
        unwrap(docker.start(name), f"start {name}")
        deadline = time.monotonic() + float(inputs.get("each_timeout", 30))
        while True:
            info = unwrap(docker.container(name), name)
            if info.running and info.health in (None, "healthy"):
                break
            if time.monotonic() > deadline or info.state == "exited":
                raise ActionError(f"{name} is {info.state} ({info.health or 'no healthcheck'}) after start")
            ctx.sleep(0.5)
        started.append(name)
    return {"stopped": list(reversed(present)), "started": started}


def _helper_image(inputs: dict[str, Any], ctx: ActionContext) -> str:
    """The image of the volume helper container: the step's ``image``, else one the stack runs."""
    from es_doctor.backup import helper_image

    if inputs.get("image"):
        return str(inputs["image"])
    return str(tool_call(lambda: helper_image(ctx.probes)))


@action("docker.volume-backup", lambda i: f"back up volume {i.get('volume')} to a tar in the run's directory")
def volume_backup(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    volume = need(inputs, "volume")
    dest = ctx.work_dir / f"volume-{volume}-{stamp()}.tar"
    return dict(unwrap(ctx.docker().volume_backup(volume, str(dest), _helper_image(inputs, ctx)), f"backup {volume}"))


@action("docker.volume-restore", lambda i: f"restore volume {i.get('volume')} from {i.get('archive')}",
        destructive=True)
def volume_restore(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import check_archive

    volume, archive = need(inputs, "volume"), need(inputs, "archive")
    if not Path(archive).is_file():
        raise ActionError(f"no archive {archive}")
    tool_call(lambda: check_archive(Path(archive)))  # read to its end before it goes into the volume
    return {"result": unwrap(ctx.docker().volume_restore(volume, archive, _helper_image(inputs, ctx)),
                             f"restore {volume}")}


@action("archive.verify", lambda i: f"read archive {i.get('archive')} to its end (readable, no member outside "
                                   "the volume)")
def archive_verify(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import check_archive

    archive = Path(str(need(inputs, "archive")))
    if not archive.is_file():
        raise ActionError(f"no archive {archive}")
    return {"archive": str(archive), "members": tool_call(lambda: check_archive(archive))}


@action("docker.volume-recreate", lambda i: f"delete and recreate volume {i.get('volume')} (empty)", destructive=True)
def volume_recreate(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    volume = need(inputs, "volume")
    return {"result": unwrap(ctx.docker().volume_recreate(volume, _helper_image(inputs, ctx)), f"recreate {volume}")}
