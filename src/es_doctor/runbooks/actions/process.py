"""Processes and ports: ``process.free-port``, scoped to what belongs to the target."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationError

from es_doctor.config import Target
from es_doctor.probes.session import ProbeSession
from es_doctor.runbooks.actions.base import (
    ActionContext,
    ActionError,
    Inputs,
    action,
    unwrap,
)


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


class FreePortInputs(Inputs):
    port: int | None = Field(default=None, gt=0, lt=65536, description="the port (default: the API's); it "
                             "must be a port of the target's service")
    keep_pids: list[int] = Field(default_factory=list, description="processes never terminated")
    include_service: bool = Field(default=False, description="the service's own processes on the port may be "
                                  "terminated too")


def free_port_scope(inputs: FreePortInputs, session: ProbeSession) -> PortScope:
    """Prove the step acts only on the target (``session.target``, read through ``session``): the service on
    this host, a port of the service, and no process that is the service itself (unless ``include_service``)
    or es-doctor. Raises ActionError why not."""
    from es_doctor.probes.ports import ancestors, host_addresses, is_local_host, listeners, process_tree

    target = session.target
    host, api_port = _port_of(target.service.api_url)
    local, why = is_local_host(host)
    if not local:
        raise ActionError(f"refused: the target's API ({target.service.api_url}) is not on this host ({why}); "
                          "a local process on that port belongs to something else, and es-doctor terminates none")
    own_ports = {api_port, *(_port_of(u)[1] for u in (target.service.metrics_url, target.service.pprof_url)
                             if is_local_host(_port_of(u)[0])[0])}
    port = inputs.port if inputs.port is not None else api_port
    if port not in own_ports:
        raise ActionError(f"refused: port {port} is not a port of the target's service "
                          f"({', '.join(str(p) for p in sorted(own_ports))})")
    holders = unwrap(listeners(port, host_addresses(host)), f"listeners of port {port} on {host}")
    keep = set(inputs.keep_pids) | ancestors(os.getpid())
    service: set[int] = set()
    if target.is_present("docker")[0]:
        info = session.docker().container(target.service.container)
        if info.value is not None and info.value.pid:
            service = process_tree(int(info.value.pid))
        # Docker's own forwarder of a published port belongs to Docker: ending it is never the cure
        service |= {h.pid for h in holders if h.name in DOCKER_FORWARDERS}
    if any(h.pid not in service for h in holders):
        # a holder that answers HTTP at all (the service's /health, a 401/403 for es-doctor's credentials,
        # any page) is the service or a web server to show the operator: never a squatter to end
        url = _url_of_port(target, port)
        status = session.http().status_of(url)
        if status is not None:
            service |= {h.pid for h in holders}
    if inputs.include_service:
        service_holders: list[Any] = []
    else:
        service_holders = [h for h in holders if h.pid in service]
        keep |= service
    return PortScope(port, [h for h in holders if h.pid not in keep], service_holders)


def _url_of_port(target: Target, port: int) -> str:
    """The target's URL on ``port`` (the API's /health, the metrics or pprof endpoint)."""
    svc = target.service
    for url in (svc.api_url.rstrip("/") + "/health", svc.metrics_url, svc.pprof_url):
        if _port_of(url)[1] == port:
            return url
    host, _ = _port_of(svc.api_url)
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def _free_port_preview(inputs: dict[str, Any], target: Target) -> str:
    try:
        checked = FreePortInputs.model_validate(inputs)
    except ValidationError as exc:
        return f" - refused: {exc.errors(include_url=False)[0]['msg']}"
    try:
        with ProbeSession(target, timeout=3.0, docker_timeout=10.0) as session:  # the plan's: no run yet
            scope = free_port_scope(checked, session)
    except ActionError as exc:
        return f" - {exc}"
    parts = [f"pid {h.pid} ({' '.join(h.command.split())[:120]})" for h in scope.strangers]
    found = ("; would terminate " + ", ".join(parts)) if parts else f"; nothing else holds port {scope.port} now"
    if scope.service:
        found += "; keeps the service's own " + ", ".join(f"pid {h.pid}" for h in scope.service)
    return found


@action("process.free-port",
        lambda i: f"terminate whatever else holds port {i.get('port') or 'of the API'} on this host (shown first)",
        FreePortInputs, destructive=True, preview=_free_port_preview)
def free_port(inputs: FreePortInputs, ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.probes.ports import terminate

    scope = free_port_scope(inputs, ctx.probes)
    stopped = []
    for proc in scope.strangers:
        ctx.say(f"port {scope.port} is held by pid {proc.pid} ({proc.name}): {proc.command}")
        unwrap(terminate(proc.pid), f"terminate pid {proc.pid}")
        stopped.append({"pid": proc.pid, "name": proc.name, "cmdline": proc.command})
    return {"port": scope.port, "terminated": stopped, "kept_service": [h.pid for h in scope.service]}
