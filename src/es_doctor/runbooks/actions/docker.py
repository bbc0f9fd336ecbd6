"""Docker: containers, images, the stack, volumes and their archives, the service's restart."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from es_doctor.config import Target
from es_doctor.runbooks.actions.base import (
    RUN_ENV,
    ActionContext,
    ActionError,
    Inputs,
    NoInputs,
    action,
    argv_words,
    run_program,
    stamp,
    tool_call,
    unwrap,
)


class ContainerInputs(Inputs):
    container: str = Field(min_length=1, description="the container's name")


class ExecInputs(ContainerInputs):
    argv: list[str | int | float] = Field(min_length=1, description="the program and its arguments")
    allow_failure: bool = Field(default=False, description="a non-zero exit does not fail the step")


class LogsInputs(ContainerInputs):
    tail: int = Field(default=50, gt=0, le=100_000, description="how many of the last lines")


class TimeoutInputs(Inputs):
    timeout: float = Field(default=120.0, gt=0, description="seconds the restart command may take")


class ComposeInputs(Inputs):
    project: str = Field(min_length=1, description="the compose project (label com.docker.compose.project)")
    service: str | None = Field(default=None, description="only this compose service")


class RebuildInputs(Inputs):
    context: str = Field(min_length=1, description="the build context (a directory)")
    tag: str = Field(min_length=1, description="the image tag to build")
    nocache: bool = Field(default=True, description="build without the layer cache")


class RecreateInputs(ContainerInputs):
    image: str | None = Field(default=None, description="the image to run (default: the container's own)")
    env: dict[str, str | int | float | bool] = Field(default_factory=dict, description="variables to set")
    unset: list[str] = Field(default_factory=list, description="variables to remove")


class StackRestartInputs(Inputs):
    order: list[str] = Field(min_length=1, description="the containers in dependency order (started in it, "
                             "stopped in reverse)")
    stop_timeout: int = Field(default=10, ge=0, description="seconds Docker waits before killing on stop")
    each_timeout: float = Field(default=30.0, gt=0, description="seconds each container may take to be up")


class VolumeInputs(Inputs):
    volume: str = Field(min_length=1, description="the Docker volume")
    image: str | None = Field(default=None, description="the helper container's image (default: one the "
                              "stack runs)")


class VolumeRestoreInputs(VolumeInputs):
    archive: str = Field(min_length=1, description="the tar archive to restore from")


class ArchiveInputs(Inputs):
    archive: str = Field(min_length=1, description="the tar archive to read")


@action("docker.restart", lambda i: f"restart container {i.get('container')}", ContainerInputs)
def docker_restart(inputs: ContainerInputs, ctx: ActionContext) -> dict[str, Any]:
    name = inputs.container
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
                                      "where Docker does not run it)", TimeoutInputs, preview=_restart_preview)
def service_restart(inputs: TimeoutInputs, ctx: ActionContext) -> dict[str, Any]:
    """The service restarted by what runs it: Docker, else the target's own supervisor command."""
    target = ctx.target
    if target.is_present("docker")[0]:
        return docker_restart(ContainerInputs(container=target.service.container), ctx)
    argv = [str(a) for a in target.service.restart_command or []]
    if not argv:
        raise ActionError(f"cannot restart the service: no Docker ({target.is_present('docker')[1]}) and no "
                          "service.restart_command in the target")
    # the service it starts is not a step's program: it must not carry the run's id (nor outlive it as one)
    env = {k: v for k, v in os.environ.items() if k != RUN_ENV}
    output = run_program(argv, env, inputs.timeout, ctx)
    return {"command": argv, "output": output[-2000:]}


@action("docker.start", lambda i: f"start container {i.get('container')} (if stopped)", ContainerInputs)
def docker_start(inputs: ContainerInputs, ctx: ActionContext) -> dict[str, Any]:
    name = inputs.container
    return {"container": name, "result": unwrap(ctx.docker().start(name), f"start {name}")}


@action("docker.stop", lambda i: f"stop container {i.get('container')}", ContainerInputs,
        destructive=True)
def docker_stop(inputs: ContainerInputs, ctx: ActionContext) -> dict[str, Any]:
    name = inputs.container
    return {"container": name, "result": unwrap(ctx.docker().stop(name), f"stop {name}")}


@action("docker.exec", lambda i: f"run {argv_words(i.get('argv'))} in container {i.get('container')}",
        ExecInputs)
def docker_exec(inputs: ExecInputs, ctx: ActionContext) -> dict[str, Any]:
    name, argv = inputs.container, inputs.argv
    result = unwrap(ctx.docker().exec(name, [str(a) for a in argv]), f"exec in {name}")
    if result.exit_code != 0 and not inputs.allow_failure:
        raise ActionError(f"{argv[0]} exited {result.exit_code} in {name}: {result.output[-300:]}")
    return {"exit_code": result.exit_code, "output": result.output[-4000:]}


@action("docker.logs", lambda i: f"show the last {i.get('tail', 50)} log lines of {i.get('container')}",
        LogsInputs)
def docker_logs(inputs: LogsInputs, ctx: ActionContext) -> dict[str, Any]:
    name = inputs.container
    text = unwrap(ctx.docker().logs(name, inputs.tail), f"logs of {name}")
    ctx.say(text)
    return {"logs": text}


@action("docker.prune", lambda _i: "remove dangling images and stopped helper containers", NoInputs,
        destructive=True)
def docker_prune(_inputs: NoInputs, ctx: ActionContext) -> dict[str, Any]:
    return dict(unwrap(ctx.docker().prune(), "prune"))


@action("docker.compose-restart",
        lambda i: f"restart the containers of compose project {i.get('project')}"
                  + (f", service {i['service']}" if i.get("service") else ""), ComposeInputs)
def docker_compose_restart(inputs: ComposeInputs, ctx: ActionContext) -> dict[str, Any]:
    project = inputs.project
    docker = ctx.docker()
    names = unwrap(docker.compose_containers(project, inputs.service), f"containers of {project}")
    if not names:
        raise ActionError(f"no container carries the label com.docker.compose.project={project}")
    for name in names:
        info = unwrap(docker.container(name), name)
        unwrap(docker.restart(name) if info.running else docker.start(name), f"restart {name}")
    return {"containers": names}


@action("docker.rebuild", lambda i: f"rebuild image {i.get('tag')} from {i.get('context')} without cache",
        RebuildInputs)
def docker_rebuild(inputs: RebuildInputs, ctx: ActionContext) -> dict[str, Any]:
    context, tag = inputs.context, inputs.tag
    image_id = unwrap(ctx.docker().build(context, tag, nocache=inputs.nocache), f"build {tag}")
    return {"image": tag, "id": image_id}


@action("docker.recreate", lambda i: f"recreate container {i.get('container')}"
        + (f" from image {i['image']}" if i.get("image") else "")
        + (f" with {sorted(i['env'])}" if i.get("env") else "")
        + (f" without {i['unset']}" if i.get("unset") else ""), RecreateInputs, destructive=True)
def docker_recreate(inputs: RecreateInputs, ctx: ActionContext) -> dict[str, Any]:
    name = inputs.container
    env = {k: str(v) for k, v in inputs.env.items()}
    before = unwrap(ctx.docker().container(name), f"container {name}").image
    result = ctx.docker().recreate(name, image=inputs.image or None, env_set=env,
                                   env_unset=inputs.unset)
    out = {"container": name, "result": unwrap(result, f"recreate {name}"), "previous_image": before}
    if inputs.image and inputs.image != before and name == ctx.target.service.container:
        record_deployment(ctx, before, inputs.image)
    return out


def record_deployment(ctx: ActionContext, previous: str, image: str) -> None:
    import json

    ctx.deployments.parent.mkdir(parents=True, exist_ok=True)
    with ctx.deployments.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                              "previous": previous, "image": image}) + "\n")


@action("deploy.current", lambda _i: "record the image the service runs now (what a rollback goes back to)",
        NoInputs)
def deploy_current(_inputs: NoInputs, ctx: ActionContext) -> dict[str, Any]:
    info = unwrap(ctx.docker().container(ctx.target.service.container), "the service container")
    return {"image": info.image, "image_id": info.image_id}


@action("deploy.previous", lambda _i: "find the image the service ran before its current one (deployment record)",
        NoInputs)
def deploy_previous(_inputs: NoInputs, ctx: ActionContext) -> dict[str, Any]:
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
        StackRestartInputs, destructive=True)
def docker_stack_restart(inputs: StackRestartInputs, ctx: ActionContext) -> dict[str, Any]:
    """The guide's `docker-compose down && up`: stop in reverse dependency order, start in order."""
    docker = ctx.docker()
    order = inputs.order
    present = [n for n in order if docker.container(n).ok]
    if not present:
        raise ActionError(f"none of {order} exists on this engine")
    for name in reversed(present):
        unwrap(docker.stop(name, timeout=inputs.stop_timeout), f"stop {name}")
    started = []
    for name in present:
        unwrap(docker.start(name), f"start {name}")
        deadline = time.monotonic() + inputs.each_timeout
        while True:
            info = unwrap(docker.container(name), name)
            if info.running and info.health in (None, "healthy"):
                break
            if time.monotonic() > deadline or info.state == "exited":
                raise ActionError(f"{name} is {info.state} ({info.health or 'no healthcheck'}) after start")
            ctx.sleep(0.5)
        started.append(name)
    return {"stopped": list(reversed(present)), "started": started}


def _helper_image(inputs: VolumeInputs, ctx: ActionContext) -> str:
    """The image of the volume helper container: the step's ``image``, else one the stack runs."""
    from es_doctor.backup import helper_image

    if inputs.image:
        return inputs.image
    return str(tool_call(lambda: helper_image(ctx.probes)))


@action("docker.volume-backup", lambda i: f"back up volume {i.get('volume')} to a tar in the run's directory",
        VolumeInputs)
def volume_backup(inputs: VolumeInputs, ctx: ActionContext) -> dict[str, Any]:
    volume = inputs.volume
    dest = ctx.work_dir / f"volume-{volume}-{stamp()}.tar"
    return dict(unwrap(ctx.docker().volume_backup(volume, str(dest), _helper_image(inputs, ctx)), f"backup {volume}"))


@action("docker.volume-restore", lambda i: f"restore volume {i.get('volume')} from {i.get('archive')}",
        VolumeRestoreInputs, destructive=True)
def volume_restore(inputs: VolumeRestoreInputs, ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import check_archive

    volume, archive = inputs.volume, inputs.archive
    if not Path(archive).is_file():
        raise ActionError(f"no archive {archive}")
    tool_call(lambda: check_archive(Path(archive)))  # read to its end before it goes into the volume
    return {"result": unwrap(ctx.docker().volume_restore(volume, archive, _helper_image(inputs, ctx)),
                             f"restore {volume}")}


@action("archive.verify", lambda i: f"read archive {i.get('archive')} to its end (readable, no member outside "
                                   "the volume)", ArchiveInputs)
def archive_verify(inputs: ArchiveInputs, ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import check_archive

    archive = Path(inputs.archive)
    if not archive.is_file():
        raise ActionError(f"no archive {archive}")
    return {"archive": str(archive), "members": tool_call(lambda: check_archive(archive))}


@action("docker.volume-recreate", lambda i: f"delete and recreate volume {i.get('volume')} (empty)", VolumeInputs,
        destructive=True)
def volume_recreate(inputs: VolumeInputs, ctx: ActionContext) -> dict[str, Any]:
    volume = inputs.volume
    return {"result": unwrap(ctx.docker().volume_recreate(volume, _helper_image(inputs, ctx)), f"recreate {volume}")}
