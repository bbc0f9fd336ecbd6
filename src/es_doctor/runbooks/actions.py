"""The runbook actions: a registry of idempotent operations, each working through the probes.

Every action has ``describe(inputs)`` (what it would do: the dry-run plan) and ``run(inputs, ctx)``
(do it, return a dict of outputs for later steps' templates). An action signals failure by raising
:class:`ActionError`; the engine turns it into the step's result. Destructive actions say so.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from es_doctor.config import Target
from es_doctor.probes.result import Result
from es_doctor.probes.session import ProbeSession
from es_doctor.runbooks.action_names import ACTION_NAMES
from es_doctor.secrets import MASK, is_secret_key, resolve_secret

#: set (by the engine) for the programs a run's steps start, so that those of a run that died can be found
#: (not ``ES_DOCTOR_…``: an es-doctor started by a step would read that as a configuration override)
RUN_ENV = "ESDOCTOR_RUN_ID"


class ActionError(RuntimeError):
    """A step's action failed (the message says why, with no secret in it). ``retryable=False``: it
    may have taken effect (e.g. a POST sent and no answer read), so the engine does not try again."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after  #: the server asked to wait this long before a retry (capped)


@dataclass
class ActionContext:
    target: Target
    target_name: str
    #: where this run keeps its backups (volume tars, config copies, dumps)
    work_dir: Path
    cancel: threading.Event = field(default_factory=threading.Event)
    say: Callable[[str], None] = lambda _text: None
    #: where `emergency backup` keeps backups (None: ``state_dir/backups``)
    backup_root: Path | None = None
    #: the run's probe session (every client bounded by 60 s; closed by the engine at the end of the run)
    probes: ProbeSession = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.probes = ProbeSession(self.target, timeout=60, docker_timeout=60)

    def docker(self) -> Any:
        return self.probes.docker()

    def qdrant(self) -> Any:
        return self.probes.qdrant()

    def postgres(self) -> Any:
        return self.probes.postgres()

    def service(self) -> Any:
        return self.probes.service()

    @property
    def deployments(self) -> Path:
        """Where the service's image history is kept (``state_dir/deployments/<target>.jsonl``)."""
        return self.work_dir.parents[1] / "deployments" / f"{self.target_name}.jsonl"

    @property
    def backups(self) -> Path:
        return self.backup_root or self.work_dir.parents[1] / "backups"

    def sleep(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise ActionError("interrupted")


@dataclass(frozen=True)
class ActionSpec:
    name: str
    describe: Callable[[dict[str, Any]], str]
    run: Callable[[dict[str, Any], ActionContext], dict[str, Any]]
    destructive: bool = False
    #: may the engine try again after a timeout (which may have happened after the effect)?
    retry_safe: Callable[[dict[str, Any]], bool] = lambda _inputs: True
    #: what the step would act on right now (pids, commands), or why it refuses: shown in the plan
    preview: Callable[[dict[str, Any], Target], str] | None = None


REGISTRY: dict[str, ActionSpec] = {}


def action(name: str, describe: Callable[[dict[str, Any]], str], destructive: bool = False,
           retry_safe: Callable[[dict[str, Any]], bool] = lambda _inputs: True,
           preview: Callable[[dict[str, Any], Target], str] | None = None) -> Callable[
        [Callable[[dict[str, Any], ActionContext], dict[str, Any]]],
        Callable[[dict[str, Any], ActionContext], dict[str, Any]]]:
    if name not in ACTION_NAMES:
        raise ValueError(f"action {name!r} missing from action_names.ACTION_NAMES")

    def register(fn: Callable[[dict[str, Any], ActionContext], dict[str, Any]]) -> Callable[
            [dict[str, Any], ActionContext], dict[str, Any]]:
        REGISTRY[name] = ActionSpec(name, describe, fn, destructive, retry_safe, preview)
        return fn

    return register


def need(inputs: dict[str, Any], key: str, kind: type | tuple[type, ...] = str) -> Any:
    if key not in inputs or inputs[key] is None:
        raise ActionError(f"input {key!r} is required")
    value = inputs[key]
    if kind is int and isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, kind):
        raise ActionError(f"input {key!r} must be {getattr(kind, '__name__', kind)}, not {type(value).__name__}")
    return value


def unwrap(result: Result[Any], what: str) -> Any:
    if result.failure is not None:
        raise ActionError(f"{what}: {result.failure.message}")
    return result.value


def stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


# --------------------------------------------------------------------------- http

HTTP_ACTION_MAX_BODY = 1024 * 1024  #: the largest (decoded) answer an ``http`` step reads


def _url(inputs: dict[str, Any], ctx: ActionContext) -> str:
    url = str(need(inputs, "url"))
    return ctx.target.service.api_url.rstrip("/") + url if url.startswith("/") else url


#: HTTP methods that may be sent again after a timeout (RFC 9110 idempotent methods)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def _http_retry_safe(inputs: dict[str, Any]) -> bool:
    return str(inputs.get("method", "GET")).upper() in IDEMPOTENT_METHODS or bool(inputs.get("idempotent"))


@action("http", lambda i: f"{i.get('method', 'GET')} {i.get('url')} (expect {i.get('expect_status', '2xx')})",
        retry_safe=_http_retry_safe)
def http(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.probes.http import ALL_STATUSES, HttpProbe, parse_json, retry_after

    headers = {}
    token = resolve_secret(ctx.target.service.api_key)
    if token and str(inputs.get("url", "")).startswith("/"):
        headers["Authorization"] = f"Bearer {token}"
    method = str(inputs.get("method", "GET")).upper()
    # bounded: a total deadline (``timeout``), the body capped after decoding, JSON depth limited
    answer = HttpProbe(timeout=float(inputs.get("timeout", 30)), headers=headers, max_body=HTTP_ACTION_MAX_BODY
                       ).request(method, _url(inputs, ctx), json_body=inputs.get("json"), accept=ALL_STATUSES)
    if answer.failure is not None:
        # a request that reached the server may have taken effect: not retried unless idempotent
        sent = answer.meta.get("sent") != "no"
        raise ActionError(answer.failure.message, retryable=not sent or _http_retry_safe(inputs))
    resp = answer.unwrap()
    expected = inputs.get("expect_status")
    ok = resp.status_code == int(expected) if expected is not None else 200 <= resp.status_code < 300
    if not ok:
        wait = retry_after(resp.headers, 0.0) if resp.status_code in (429, 503) else 0.0
        raise ActionError(f"{inputs.get('url')} answered {resp.status_code}: {resp.text[:200]}", retry_after=wait)
    try:
        body: Any = parse_json(resp.text)
    except ValueError:
        body = resp.text[:2000]
    return {"status": resp.status_code, "body": body}


def _mode_describe(i: dict[str, Any]) -> str:
    wanted = [f"{k}={str(i[k]).lower()}" for k in ("readonly", "maintenance") if i.get(k) is not None]
    return ("prove from the service's own state (GET /api/v1/maintenance) that " + " and ".join(wanted)
            if wanted else "read the service's mode (GET /api/v1/maintenance)")


@action("service.mode", _mode_describe)
def service_mode(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """The service's read-only and maintenance mode, as it reports them; with ``readonly``/``maintenance``
    given, the step fails unless the service says so within ``wait`` seconds. No write is attempted:
    proving a mode never writes production data."""
    from es_doctor.probes.http import HttpProbe

    headers = {}
    token = resolve_secret(ctx.target.service.api_key)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    probe = HttpProbe(timeout=float(inputs.get("timeout", 10)), headers=headers)
    url = ctx.target.service.api_url.rstrip("/") + "/api/v1/maintenance"
    wanted = {k: _as_bool(inputs[k]) for k in ("readonly", "maintenance") if inputs.get(k) is not None}
    deadline = time.monotonic() + float(inputs.get("wait", 5))
    while True:
        answer = probe.get_json(url)
        if answer.failure is not None:
            raise ActionError(f"cannot read the service's mode (GET /api/v1/maintenance: {answer.failure.message}); "
                              "without it the mode cannot be proven, and es-doctor proves none by writing")
        state = answer.value if isinstance(answer.value, dict) else {}
        got = {k: state.get(k) for k in ("readonly", "maintenance")}
        if any(not isinstance(v, bool) for v in got.values()):
            raise ActionError(f"GET /api/v1/maintenance answered {str(answer.value)[:200]}: no readonly/maintenance")
        wrong = {k: got[k] for k, v in wanted.items() if got[k] is not v}
        if not wrong:
            writes = "refused" if got["readonly"] or got["maintenance"] else "accepted"
            ctx.say(f"  the service says readonly={str(got['readonly']).lower()} "
                    f"maintenance={str(got['maintenance']).lower()}: writes are {writes}")
            return {**got, "writes": writes}
        if time.monotonic() > deadline:
            raise ActionError("the service says " + ", ".join(f"{k}={str(v).lower()}" for k, v in wrong.items())
                              + ", not " + ", ".join(f"{k}={str(wanted[k]).lower()}" for k in wrong))
        ctx.sleep(0.5)


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in {"true", "1", "yes"}:
        return True
    if str(value).lower() in {"false", "0", "no"}:
        return False
    raise ActionError(f"expected a boolean, not {value!r}")


# --------------------------------------------------------------------------- docker


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
    output = _run(argv, env, float(inputs.get("timeout", 120)), ctx)
    return {"command": argv, "output": output[-2000:]}


@action("docker.start", lambda i: f"start container {i.get('container')} (if stopped)")
def docker_start(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    name = need(inputs, "container")
    return {"container": name, "result": unwrap(ctx.docker().start(name), f"start {name}")}


@action("docker.stop", lambda i: f"stop container {i.get('container')}", destructive=True)
def docker_stop(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    name = need(inputs, "container")
    return {"container": name, "result": unwrap(ctx.docker().stop(name), f"stop {name}")}


@action("docker.exec", lambda i: f"run {i.get('argv')} in container {i.get('container')}")
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
    return str(_backup_call(lambda: helper_image(ctx.probes)))


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
    _backup_call(lambda: check_archive(Path(archive)))  # read to its end before it goes into the volume
    return {"result": unwrap(ctx.docker().volume_restore(volume, archive, _helper_image(inputs, ctx)),
                             f"restore {volume}")}


@action("archive.verify", lambda i: f"read archive {i.get('archive')} to its end (readable, no member outside "
                                   "the volume)")
def archive_verify(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import check_archive

    archive = Path(str(need(inputs, "archive")))
    if not archive.is_file():
        raise ActionError(f"no archive {archive}")
    return {"archive": str(archive), "members": _backup_call(lambda: check_archive(archive))}


@action("docker.volume-recreate", lambda i: f"delete and recreate volume {i.get('volume')} (empty)", destructive=True)
def volume_recreate(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    volume = need(inputs, "volume")
    return {"result": unwrap(ctx.docker().volume_recreate(volume, _helper_image(inputs, ctx)), f"recreate {volume}")}


# --------------------------------------------------------------------------- qdrant


@action("qdrant.create-collection",
        lambda i: f"create Qdrant collection {i.get('collection')} ({i.get('size')}, {i.get('distance', 'Cosine')}) "
                  "if missing")
def qdrant_create(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    name, size = need(inputs, "collection"), need(inputs, "size", int)
    result = unwrap(ctx.qdrant().create_collection(name, int(size), str(inputs.get("distance", "Cosine"))),
                    f"create {name}")
    return {"collection": name, "result": result}


@action("qdrant.delete-collection", lambda i: f"delete Qdrant collection {i.get('collection')}", destructive=True)
def qdrant_delete(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    name = need(inputs, "collection")
    existing = unwrap(ctx.qdrant().collections(), "Qdrant collections")
    if name not in existing:
        return {"collection": name, "result": "already absent"}
    return {"collection": name, "result": unwrap(ctx.qdrant().delete_collection(name), f"delete {name}")}


@action("qdrant.snapshot", lambda i: f"snapshot Qdrant collection {i.get('collection')}")
def qdrant_snapshot(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    name = need(inputs, "collection")
    q = ctx.qdrant()
    points = q.count(name)
    snapshot = unwrap(q.snapshot(name), f"snapshot {name}")
    base = ctx.target.qdrant.url.rstrip("/")
    return {"collection": name, "snapshot": snapshot, "points": points.value if points.ok else None,
            "location": f"{base}/collections/{name}/snapshots/{snapshot}"}


@action("qdrant.recover", lambda i: f"recover Qdrant collection {i.get('collection')} from {i.get('location')}",
        destructive=True)
def qdrant_recover(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    name, location = need(inputs, "collection"), need(inputs, "location")
    return {"result": unwrap(ctx.qdrant().recover(name, location), f"recover {name}")}


# --------------------------------------------------------------------------- postgres


@action("postgres.sql", lambda i: f"run SQL: {str(i.get('sql', ''))[:120]}")
def postgres_sql(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    rows = unwrap(ctx.postgres().query(str(need(inputs, "sql"))), "SQL")
    return {"rows": [list(r) for r in rows[:100]], "row_count": len(rows)}


@action("postgres.dump", lambda _i: "dump the database with pg_dump (custom format) into the run's directory")
def postgres_dump(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.files import create_private
    from es_doctor.tools import pg_env

    dsn, env = _backup_call(lambda: pg_env(ctx.target))
    dest = ctx.work_dir / f"postgres-{stamp()}.dump"
    os.close(create_private(dest))  # pg_dump truncates and fills it: the dump stays 0600
    _run([_bin("pg_dump"), "--format=custom", f"--file={dest}", dsn], env, float(inputs.get("timeout", 600)), ctx)
    return {"dump": str(dest), "bytes": dest.stat().st_size}


@action("postgres.restore", lambda i: f"restore the database from {i.get('dump')} (pg_restore --clean, "
                                      "one transaction)", destructive=True)
def postgres_restore(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import pg_restore_file

    dump = need(inputs, "dump")
    if not Path(dump).is_file():
        raise ActionError(f"no dump {dump}")
    _backup_call(lambda: pg_restore_file(ctx.target, Path(dump), ctx.cancel))
    return {"restored_from": dump}


def _bin(name: str) -> str:
    from es_doctor.tools import pg_bin

    return str(_backup_call(lambda: pg_bin(name)))


def _run(argv: list[str], env: dict[str, str] | None, timeout: float, ctx: ActionContext,
         keep: int | None = None) -> str:
    """Run an argv (never a shell string), stopping it when the step is cancelled or times out."""
    from es_doctor.tools import DEFAULT_KEEP, run_tool

    return str(_backup_call(lambda: run_tool(argv, env, timeout, ctx.cancel, keep=keep or DEFAULT_KEEP)))


# --------------------------------------------------------------------------- process / ports


def _port_of(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or "localhost", parts.port or (443 if parts.scheme == "https" else 80)


#: processes that forward a container's published port on the host (never a stranger to end)
DOCKER_FORWARDERS = frozenset({"docker-proxy", "rootlesskit", "slirp4netns"})


@dataclass
class PortScope:
    """What ``process.free-port`` may act on: the port, the strangers on it, the service's own holders."""

    port: int
    strangers: list[Any]
    service: list[Any]


def free_port_scope(inputs: dict[str, Any], target: Target) -> PortScope:
    """Prove the step acts only on the target: the service on this host, a port of the service, and no
    process that is the service itself (unless ``include_service``) or es-doctor. Raises ActionError why not."""
    from es_doctor.probes.ports import ancestors, is_local_host, listeners, process_tree

    host, api_port = _port_of(target.service.api_url)
    local, why = is_local_host(host)
    if not local:
        raise ActionError(f"refused: the target's API ({target.service.api_url}) is not on this host ({why}); "
                          "a local process on that port belongs to something else, and es-doctor terminates none")
    own_ports = {api_port, *(_port_of(u)[1] for u in (target.service.metrics_url, target.service.pprof_url)
                             if is_local_host(_port_of(u)[0])[0])}
    port = int(need(inputs, "port", (int, str))) if inputs.get("port") not in (None, "") else api_port
    if port not in own_ports:
        raise ActionError(f"refused: port {port} is not a port of the target's service "
                          f"({', '.join(str(p) for p in sorted(own_ports))})")
    holders = unwrap(listeners(port), f"listeners of port {port}")
    keep = {int(p) for p in inputs.get("keep_pids") or []} | ancestors(os.getpid())
    service: set[int] = set()
    session = ProbeSession(target, timeout=3.0, docker_timeout=10.0)
    if target.is_present("docker")[0]:
        info = session.docker().container(target.service.container)
        if info.value is not None and info.value.pid:
            service = process_tree(int(info.value.pid))
        # Docker's own forwarder of a published port belongs to Docker: ending it is never the cure
        service |= {h.pid for h in holders if h.name in DOCKER_FORWARDERS}
    elif holders:  # no Docker: a holder that answers /health like the service is the service
        answer = session.service().health()
        if answer.value is not None and answer.value.reason:
            service = {h.pid for h in holders}
    if inputs.get("include_service"):
        service_holders: list[Any] = []
    else:
        service_holders = [h for h in holders if h.pid in service]
        keep |= service
    return PortScope(port, [h for h in holders if h.pid not in keep], service_holders)


def _free_port_preview(inputs: dict[str, Any], target: Target) -> str:
    try:
        scope = free_port_scope(inputs, target)
    except ActionError as exc:
        return f" - {exc}"
    parts = [f"pid {h.pid} ({' '.join(h.command.split())[:120]})" for h in scope.strangers]
    found = ("; would terminate " + ", ".join(parts)) if parts else f"; nothing else holds port {scope.port} now"
    if scope.service:
        found += "; keeps the service's own " + ", ".join(f"pid {h.pid}" for h in scope.service)
    return found


@action("process.free-port",
        lambda i: f"terminate whatever else holds port {i.get('port') or 'of the API'} on this host (shown first)",
        destructive=True, preview=_free_port_preview)
def free_port(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.probes.ports import terminate

    scope = free_port_scope(inputs, ctx.target)
    stopped = []
    for proc in scope.strangers:
        ctx.say(f"port {scope.port} is held by pid {proc.pid} ({proc.name}): {proc.command}")
        unwrap(terminate(proc.pid), f"terminate pid {proc.pid}")
        stopped.append({"pid": proc.pid, "name": proc.name, "cmdline": proc.command})
    return {"port": scope.port, "terminated": stopped, "kept_service": [h.pid for h in scope.service]}


# --------------------------------------------------------------------------- config


def _config_file(inputs: dict[str, Any], ctx: ActionContext) -> Path:
    path = inputs.get("file") or ctx.target.service.config_file
    if not path:
        raise ActionError("no config file on this host (set service.config_file in the target)")
    return Path(str(path)).expanduser()


def _plain(value: Any) -> Any:
    """A ruamel.yaml value as plain data (for step outputs and the audit log)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return str(value)


@action("config.set", lambda i: f"set {i.get('key')} = {i.get('value')!r} in the service's config.yaml (backup kept)")
def config_set(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """Edit one key with a round-trip YAML library: comments, order, quoting, mode and owner are kept;
    the file is replaced atomically (written beside, fsync, rename)."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from es_doctor.files import create_private, replace_atomically
    from es_doctor.yamlsource import YamlSyntaxError, read_regular_file

    path, key = _config_file(inputs, ctx), str(need(inputs, "key"))
    value = inputs.get("value")
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    try:
        raw = read_regular_file(path, 16 * 1024 * 1024)
        data = yaml.load(raw.decode("utf-8"))
    except (YamlSyntaxError, YAMLError, UnicodeDecodeError) as exc:
        raise ActionError(f"cannot read {path}: {getattr(exc, 'message', None) or exc}") from None
    if data is None:
        from ruamel.yaml.comments import CommentedMap

        data = CommentedMap()
    if not isinstance(data, dict):
        raise ActionError(f"{path} is not a YAML mapping")
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        if part not in node:
            from ruamel.yaml.comments import CommentedMap

            node[part] = CommentedMap()
        node = node[part]
        if not isinstance(node, dict):
            raise ActionError(f"{key}: {part} is not a mapping in {path}")
    old = _plain(node.get(parts[-1]))
    if old == value:
        return {"file": str(path), "key": key, "old": old, "new": value, "changed": False}
    when = stamp()
    for attempt in range(100):  # several edits in one second each keep their own copy
        backup = ctx.work_dir / f"{path.name}.{when}{f'-{attempt}' if attempt else ''}.bak"
        try:
            fd = create_private(backup)  # the config may hold secrets: 0600, never through a planted link
            break
        except FileExistsError:
            continue
    else:
        raise ActionError(f"cannot name a backup copy of {path} in {ctx.work_dir}")
    with os.fdopen(fd, "wb") as copy:
        copy.write(raw)
    node[parts[-1]] = value
    out = io.StringIO()
    yaml.dump(data, out)
    try:
        replace_atomically(path, out.getvalue())
    except OSError as exc:
        raise ActionError(f"cannot write {path}: {exc.strerror or exc}") from None
    return {"file": str(path), "key": key, "old": old, "new": value, "changed": True, "backup": str(backup)}


@action("config.restore", lambda i: f"restore the service's config.yaml from {i.get('from') or 'its newest copy'}")
def config_restore(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    path = _config_file(inputs, ctx)
    if path.is_file() and not inputs.get("from"):
        return {"file": str(path), "result": "present"}
    if inputs.get("from"):
        source = Path(str(inputs["from"]))
    else:
        copies = sorted((p for p in path.parent.glob(path.name + ".*") if p.is_file()),
                        key=lambda p: p.stat().st_mtime, reverse=True)
        if not copies:
            raise ActionError(f"{path} is missing and no copy of it ({path.name}.*) is next to it")
        source = copies[0]
    from es_doctor.files import replace_atomically

    try:
        if path.is_file():  # keep the file's own mode and owner (a private backup copy is 0600)
            replace_atomically(path, source.read_text(encoding="utf-8"))
        else:  # a new file, created like any file the deployment writes (umask)
            shutil.copyfile(source, path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ActionError(f"cannot restore {path} from {source}: {getattr(exc, 'strerror', None) or exc}") from None
    return {"file": str(path), "restored_from": str(source)}


# --------------------------------------------------------------------------- env


def _env(ctx: ActionContext, container: str) -> dict[str, str]:
    info = unwrap(ctx.docker().container(container), f"container {container}")
    return dict(info.env)


@action("env.show", lambda i: f"show the environment of {i.get('container')} (secrets masked)")
def env_show(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    env = _env(ctx, need(inputs, "container"))
    shown = {k: (MASK if is_secret_key(k) or k.upper().endswith("KEY") else v) for k, v in sorted(env.items())}
    ctx.say("\n".join(f"{k}={v}" for k, v in shown.items()))
    return {"env": shown}


@action("env.require", lambda i: f"require {i.get('names')} in the environment of {i.get('container')}")
def env_require(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    env = _env(ctx, need(inputs, "container"))
    missing = [n for n in need(inputs, "names", list) if not env.get(str(n))]
    if missing:
        raise ActionError(f"not set: {', '.join(missing)}")
    return {"present": True}


@action("env.set", lambda i: f"recreate {i.get('container')} with {i.get('env')}", destructive=True)
def env_set(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    name = need(inputs, "container")
    wanted = {str(k): str(v) for k, v in need(inputs, "env", dict).items()}
    current = _env(ctx, name)
    if all(current.get(k) == v for k, v in wanted.items()):
        return {"container": name, "result": "already set"}
    return {"container": name, "result": unwrap(ctx.docker().recreate(name, env_set=wanted), f"recreate {name}")}


# --------------------------------------------------------------------------- wait, notify, shell


@action("wait_for", lambda i: f"wait until {i.get('check')} is OK (up to {i.get('timeout', 60)} s)")
def wait_for(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.checks.registry import load_all
    from es_doctor.findings import Status
    from es_doctor.runner import diagnose

    wanted = inputs.get("check")
    ids = [str(c) for c in (wanted if isinstance(wanted, list) else [need(inputs, "check")])]
    registry = load_all()
    unknown = [c for c in ids if c not in registry]
    if unknown:
        raise ActionError(f"unknown check(s): {', '.join(unknown)}")
    deadline = time.monotonic() + float(inputs.get("timeout", 60))
    while True:
        report = diagnose(ctx.target, ctx.target_name, ids)
        findings = {f.id: f for f in report.findings if f.id in ids}
        bad = {i: f"{f.status.value}: {f.summary}" for i, f in findings.items() if f.status is not Status.OK}
        if not bad:
            return {"ok": ids}
        if time.monotonic() > deadline:
            raise ActionError("; ".join(f"{i} {s}" for i, s in bad.items()))
        ctx.sleep(float(inputs.get("interval", 1.0)))


@action("notify", lambda i: f"notify: {i.get('message')}" + (" (webhook)" if i.get("webhook") else ""),
        retry_safe=lambda _i: False)
def notify(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.probes.http import HttpProbe

    message = str(need(inputs, "message"))
    ctx.say(message)
    webhook = resolve_secret(inputs.get("webhook"))
    if webhook:
        answer = HttpProbe(timeout=10, max_body=64 * 1024).request(
            "POST", webhook, json_body={"text": message, "target": ctx.target_name})
        if answer.failure is not None:
            # the message names no URL: the webhook is a secret
            what = answer.failure.status_code or answer.failure.kind.value
            raise ActionError(f"webhook failed: {what}", retryable=answer.meta.get("sent") == "no")
        return {"message": message, "webhook_status": answer.unwrap().status_code}
    return {"message": message}


@action("shell", lambda i: f"run {i.get('argv')}", retry_safe=lambda i: bool(i.get("idempotent")))
def shell(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """An argv in its own process group, no stdin, output read while it runs and capped (head and
    tail); killed with its group when the step is cancelled or times out."""
    argv = need(inputs, "argv", list)
    if not argv or not all(isinstance(a, (str, int, float)) for a in argv):
        raise ActionError("argv must be a non-empty list of strings (no shell string)")
    output = _run([str(a) for a in argv], None, float(inputs.get("timeout", 300)), ctx, keep=64 * 1024)
    return {"output": output[-4000:]}


@action("fail", lambda i: f"fail on purpose: {i.get('message', 'test step')}")
def fail(inputs: dict[str, Any], _ctx: ActionContext) -> dict[str, Any]:
    raise ActionError(str(inputs.get("message", "this step fails on purpose")))


# --------------------------------------------------------------------------- security


IP_PATTERN = r"\b(?:\d{1,3}\.){3}\d{1,3}\b|\b[0-9a-fA-F:]*:[0-9a-fA-F:]+\b"


@action("security.analyze",
        lambda i: f"analyse SECURITY lines of the service log; block addresses with >= {i.get('threshold', 5)} "
                  "failed authentications (block list written, not applied)")
def security_analyze(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """The guide's `grep SECURITY logs/email-sender.log`, then top talkers and failed auth per address."""
    import collections
    import ipaddress
    import re

    from es_doctor.probes.logs import tail_lines

    log = Path(ctx.target.service.log_dir).expanduser() / ctx.target.service.main_log
    lines = unwrap(tail_lines(log, int(inputs.get("max_lines", 20000))), f"log {log}")
    security = [line for line in lines if line.contains("SECURITY")]
    talkers: collections.Counter[str] = collections.Counter()
    failed: collections.Counter[str] = collections.Counter()
    for line in security:
        address = line.field("client_ip") or next(iter(re.findall(IP_PATTERN, line.raw)), "")
        try:
            ip = str(ipaddress.ip_address(address))
        except ValueError:
            continue
        talkers[ip] += 1
        if re.search(r"auth(entication)? failed|unauthori[sz]ed|invalid (token|credentials)|401", line.raw, re.I):
            failed[ip] += 1
    keep = {str(x) for x in inputs.get("allow") or ["127.0.0.1", "::1"]}
    threshold = int(inputs.get("threshold", 5))
    blocked = sorted(ip for ip, n in failed.items() if n >= threshold and ip not in keep)
    blocklist = ctx.work_dir / "blocklist.nginx.conf"
    blocklist.write_text("# es-doctor emergency security: addresses with repeated failed authentication\n"
                         "# include it in nginx's server block, then reload nginx (not applied by es-doctor)\n"
                         + "".join(f"deny {ip};  # {failed[ip]} failed authentications\n" for ip in blocked),
                         encoding="utf-8")
    plain = ctx.work_dir / "blocklist.txt"
    plain.write_text("".join(f"{ip}\n" for ip in blocked), encoding="utf-8")
    top = talkers.most_common(10)
    ctx.say("SECURITY lines: " + str(len(security)) + "; top talkers: "
            + ", ".join(f"{ip} ({n})" for ip, n in top))
    return {"security_lines": len(security), "top_talkers": [{"ip": ip, "lines": n} for ip, n in top],
            "failed_auth": dict(failed.most_common(20)), "blocked": blocked, "blocklist": str(blocklist),
            "blocklist_plain": str(plain)}


# --------------------------------------------------------------------------- backups (es_doctor.backup)


def _backup_call(fn: Callable[[], Any]) -> Any:
    """``fn()``, its BackupError or ToolError turned into the step's ActionError."""
    from es_doctor.backup import BackupError
    from es_doctor.tools import ToolError

    try:
        return fn()
    except (BackupError, ToolError) as exc:
        raise ActionError(str(exc)) from None


def _backup_path(inputs: dict[str, Any], ctx: ActionContext) -> Path:
    from es_doctor.backup import BackupStore

    return _backup_call(lambda: BackupStore(ctx.backups).path(str(need(inputs, "backup"))))  # type: ignore[no-any-return]


@action("backup.create", lambda i: "back up PostgreSQL (pg_dump), Qdrant (snapshots), the volumes and the service "
                                   f"config; manifest last{' (' + str(i['reason']) + ')' if i.get('reason') else ''}"
                                   + ("; live: writes not stopped" if str(i.get("live")).lower() == "true" else
                                      "; under read-only mode (set for it and lifted after, if not already on)"))
def backup_create(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    import sys

    from es_doctor.backup import Backup, BackupStore

    job = Backup(ctx.target, ctx.target_name, BackupStore(ctx.backups), reason=str(inputs.get("reason") or
                                                                                  "emergency backup"),
                 cancel=ctx.cancel, say=ctx.say, live=_as_bool(inputs.get("live", False)))
    progress = None
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import Progress

        progress = Progress(console=Console(stderr=True), transient=True)
        task = progress.add_task("backup", total=4)
        job.progress = lambda name, done, _total: progress.update(task, completed=done, description=name)
        progress.start()
    else:
        job.progress = lambda name, done, total: ctx.say(f"  [{done}/{total}] {name} done")
    try:
        backup_id, path, manifest = _backup_call(job.run)
    finally:
        if progress is not None:
            progress.stop()
    size = sum(f["bytes"] for f in manifest["files"])
    return {"id": backup_id, "path": str(path), "files": len(manifest["files"]), "bytes": size,
            "skipped": manifest["skipped"], "consistency": manifest.get("consistency")}


@action("backup.validate", lambda i: f"validate backup {i['backup']} (checksums, pg_restore --list, archives)"
        if i.get("backup") else "validate the live data (amcheck, Qdrant points against rows, volumes)"
        + (f", equal to backup {i['against']}" if i.get("against") else ""))
def backup_validate(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import validate_backup, validate_live

    if inputs.get("backup"):
        path = _backup_path(inputs, ctx)
        found = _backup_call(lambda: validate_backup(path))
    else:
        found = _backup_call(lambda: validate_live(ctx.target, content=bool(inputs.get("against"))))
    if inputs.get("against"):  # after a restore: the live data must equal what the backup recorded
        from es_doctor.backup import compare, read_manifest

        against = _backup_path({"backup": inputs["against"]}, ctx)
        manifest = _backup_call(lambda: read_manifest(against))
        differences = compare(manifest, found)
        for difference in differences:
            found.add("restore", f"differs from backup {against.name}: {difference}")
        if not differences:
            found.notes.append(f"equal to backup {against.name}: row counts and md5 of "
                               f"{len((manifest.get('postgres') or {}).get('tables', {}))} table(s), points and "
                               f"hashes of {len((manifest.get('qdrant') or {}).get('collections', {}))} collection(s)")
    for problem in found.problems:
        ctx.say(f"  {problem}")
    if not found.ok:
        raise ActionError(f"{found.subject}: {sum(p.severity == 'CRIT' for p in found.problems)} problem(s)")
    return found.as_dict()  # type: ignore[no-any-return]


@action("backup.require-freeze", lambda _i: "require that writes are stopped (read-only or maintenance mode, "
                                            "or the service stopped)")
def backup_require_freeze(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import require_write_freeze

    return {"reason": _backup_call(lambda: require_write_freeze(ctx.target))}


@action("backup.restore-volumes", lambda i: f"recreate the volumes of backup {i.get('backup')} and fill them from "
                                            "its archives (their containers stopped meanwhile)", destructive=True)
def backup_restore_volumes(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import restore_volumes

    path = _backup_path(inputs, ctx)
    return {"restored": _backup_call(lambda: restore_volumes(ctx.target, path, ctx.say, ctx.cancel))}


@action("backup.restore-postgres", lambda i: f"pg_restore --clean --single-transaction from backup {i.get('backup')}",
        destructive=True)
def backup_restore_postgres(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import restore_postgres

    path = _backup_path(inputs, ctx)
    return {"restored": _backup_call(lambda: restore_postgres(ctx.target, path, ctx.cancel))}


@action("backup.restore-qdrant", lambda i: f"recover the Qdrant collection(s) {', '.join(map(str, i['collections']))} "
        f"of backup {i.get('backup')} from its snapshot" if i.get("collections") else
        f"recover the Qdrant collections of backup {i.get('backup')} from its snapshots", destructive=True)
def backup_restore_qdrant(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import restore_qdrant, safe_name

    path = _backup_path(inputs, ctx)
    wanted = inputs.get("collections")
    only = [str(c) for c in wanted] if isinstance(wanted, list) and wanted else None
    if not only or not inputs.get("keep_current"):
        return {"restored": _backup_call(lambda: restore_qdrant(ctx.target, path, ctx.cancel, only)),
                "backup": path.name}
    # the points written since the collection was recreated are newer than the backup's: they are
    # saved first (into the run's private directory) and upserted again over the recovered collection
    saved: dict[str, tuple[Path, int]] = {}
    for name in only:
        if name in unwrap(ctx.qdrant().collections(), "Qdrant collections"):
            ctx.work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            dest = ctx.work_dir / f"{safe_name(name)}.points-{stamp()}.jsonl"
            saved[name] = (dest, unwrap(ctx.qdrant().export_points(name, str(dest)), f"export the points of {name}"))
    restored = _backup_call(lambda: restore_qdrant(ctx.target, path, ctx.cancel, only))
    kept = {name: unwrap(ctx.qdrant().import_points(name, str(dest)), f"upsert the saved points of {name}")
            for name, (dest, _count) in saved.items()}
    return {"restored": restored, "backup": path.name, "kept_current_points": kept}
