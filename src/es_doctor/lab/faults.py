"""The lab's fault registry: ``es-doctor lab fault add NAME`` / ``fault clear [NAME]`` / ``faults``.

Runtime faults are names in ``faults.json`` that the lab programs poll (0.5 s). Orchestration
faults change real state: containers stopped or recreated, files moved, a port held, Qdrant's
collection deleted. Injected faults are recorded in ``faults-state.json``; a recorded fault is active
while its effect is observed (:mod:`es_doctor.lab.fault_state`: a cure by a runbook, the service's API
or a restart drops it); ``clear`` reverses them all and brings the lab back to its baseline.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml

from es_doctor.lab import infra, procs
from es_doctor.lab.fault_table import FAULT_SPECS, TABLE, FaultSpec
from es_doctor.lab.layout import POSTGRES, PREVIOUS_IMAGE, PROMETHEUS, QDRANT, SERVICE
from es_doctor.lab.runtime_faults import read_faults_file, write_faults_file
from es_doctor.lab.stack import LabStack
from es_doctor.units import utc_iso

Action = Callable[[LabStack], None]
COLLECTION, VECTOR_SIZE, WRONG_SIZE = "task_vectors", 1536, 768

@dataclass(frozen=True)
class Fault:
    """A fault of :data:`es_doctor.lab.fault_table.TABLE` with the code that injects and clears it."""

    spec: FaultSpec
    apply: Action
    clear: Action

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def description(self) -> str:
        return self.spec.description

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def docker_only(self) -> bool:
        return self.spec.docker_only


# --------------------------------------------------------------------------- helpers


def _runtime(name: str, present: bool) -> Action:
    def act(stack: LabStack) -> None:
        names = set(read_faults_file(stack.paths.faults))
        names = names | {name} if present else names - {name}
        write_faults_file(stack.paths.faults, sorted(names))
        cure = FAULT_SPECS[name].one_shot_cure
        if not present and cure:
            _post(stack, cure)
    return act


def _post(stack: LabStack, path: str) -> None:
    import httpx

    with contextlib.suppress(httpx.HTTPError):
        httpx.post(f"http://127.0.0.1:{stack.settings.ports.api}{path}", timeout=5)


def _qdrant(stack: LabStack, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    import httpx

    return httpx.request(method, f"http://127.0.0.1:{stack.settings.ports.qdrant}{path}", json=body, timeout=30)


def _create_collection(stack: LabStack, size: int) -> None:
    _qdrant(stack, "DELETE", f"/collections/{COLLECTION}")
    resp = _qdrant(stack, "PUT", f"/collections/{COLLECTION}",
                   {"vectors": {"size": size, "distance": "Cosine"}})
    resp.raise_for_status()


def _collection_size(stack: LabStack) -> int | None:
    resp = _qdrant(stack, "GET", f"/collections/{COLLECTION}")
    if resp.status_code != 200:
        return None
    size: int = resp.json()["result"]["config"]["params"]["vectors"]["size"]
    return size


def _restore_collection(stack: LabStack) -> None:
    """task_vectors (1536, Cosine) with one vector per stored task: recreated if missing or wrong,
    re-indexed when tasks lack their vector (a runbook that recreated it left it partial)."""
    recreate = _collection_size(stack) != VECTOR_SIZE
    if recreate:
        _create_collection(stack, VECTOR_SIZE)
    if POSTGRES in stack.settings.absent:
        return
    import psycopg

    from es_doctor.lab.vectors import embed

    p = stack.settings.ports
    with psycopg.connect(host="127.0.0.1", port=p.postgres, user="emailsender", dbname="email_sender",
                         password=stack.settings.pg_password, connect_timeout=5) as conn:
        rows = conn.execute("SELECT id, title FROM tasks ORDER BY id").fetchall()
    if not recreate:
        info = _qdrant(stack, "GET", f"/collections/{COLLECTION}").json()["result"]
        if int(info.get("points_count") or 0) >= len(rows):
            return
    points = [{"id": int(i), "vector": embed(str(t), VECTOR_SIZE), "payload": {"task_id": int(i), "title": t}}
              for i, t in rows]
    for start in range(0, len(points), 200):
        _qdrant(stack, "PUT", f"/collections/{COLLECTION}/points?wait=true",
                {"points": points[start:start + 200]}).raise_for_status()


def _set_metrics(enabled: bool) -> Action:
    def act(stack: LabStack) -> None:
        config = yaml.safe_load(stack.paths.config.read_text(encoding="utf-8"))
        config.setdefault("metrics", {})["enabled"] = enabled
        stack.paths.config.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        stack.restart_service()
    return act


def _moved_config(stack: LabStack) -> Any:
    return stack.paths.config.with_name("config.yaml.moved-by-lab")


def _config_missing(stack: LabStack) -> None:
    stack.paths.config.replace(_moved_config(stack))
    stack.restart_service()


def _config_back(stack: LabStack) -> None:
    if _moved_config(stack).is_file():
        _moved_config(stack).replace(stack.paths.config)
    stack.restart_service()


def _service_exits(stack: LabStack) -> None:
    _runtime("service-exits", True)(stack)
    stack.restart_service()


def _service_back(stack: LabStack) -> None:
    _runtime("service-exits", False)(stack)
    stack.restart_service()


def _squat(stack: LabStack) -> None:
    stack.stop_component(SERVICE)
    port = stack.settings.ports.api
    procs.spawn([stack.settings.python, "-m", "es_doctor.lab.squatter", "--port", str(port)],
                stack.paths.run / "squatter.pid", stack.paths.run / "squatter.out")
    infra.wait_until(lambda: _port_listening(port), 10, f"the squatter on port {port}")
    stack.restart_service()


def _port_listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _unsquat(stack: LabStack) -> None:
    procs.stop(stack.paths.run / "squatter.pid", timeout=5)
    stack.restart_service()


def _deploy_logs(stack: LabStack) -> None:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    now = utc_iso()

    def line(level: str, component: str, message: str, error: str = "") -> str:
        return json.dumps({"timestamp": now, "level": level, "component": component, "message": message,
                           "error": error, "request_id": "", "user_id": "", "duration_ms": 0})

    deploy = stack.paths.logs / f"deployment-staging-{stamp}.log"
    started = json.loads(line("INFO", "deploy", "deploying email-sender-go to staging"))
    started["previous_image"] = PREVIOUS_IMAGE  # what ran before: the rollback's target (deploy-rollback)
    deploy.write_text("\n".join([
        json.dumps(started),
        line("ERROR", "deploy", "health check failed after deploy", "GET /health: connection refused"),
        line("ERROR", "deploy", "rollout aborted", "container email-sender-go exited with code 1"),
    ]) + "\n", encoding="utf-8")
    migration = stack.paths.logs / f"migration-{stamp}.log"
    migration.write_text(line("ERROR", "migration", "migration 0042_add_task_vectors failed",
                              'pq: relation "tasks_vectors" does not exist') + "\n", encoding="utf-8")


def _no_deploy_logs(stack: LabStack) -> None:
    from es_doctor.lab.fault_state import deploy_logs

    for path in deploy_logs(stack.paths):
        path.unlink()


def _stop(name: str) -> Action:
    return lambda stack: stack.stop_component(name)


def _start(name: str) -> Action:
    def act(stack: LabStack) -> None:
        stack.start_component(name)
        ports = stack.settings.ports
        if name == QDRANT:
            infra.wait_until(lambda: infra.http_ok(f"http://127.0.0.1:{ports.qdrant}/healthz"), 30, "Qdrant", 0.2)
        if name == POSTGRES:
            infra.wait_until(lambda: infra.postgres_ready(ports.postgres, stack.settings.pg_superuser_password),
                             30, "PostgreSQL", 0.2)
    return act


#: how each orchestration fault is injected and cleared (runtime ones: a name in faults.json)
ORCHESTRATION: dict[str, tuple[Action, Action]] = {
    "service-exits": (_service_exits, _service_back),
    "config-missing": (_config_missing, _config_back),
    "go-env-unset": (lambda s: s.restart_service({"GO_ENV": None}), lambda s: s.reset_service()),
    "port-taken": (_squat, _unsquat),
    "qdrant-down": (_stop(QDRANT), _start(QDRANT)),
    "postgres-down": (_stop(POSTGRES), _start(POSTGRES)),
    "collection-missing": (lambda s: _qdrant(s, "DELETE", f"/collections/{COLLECTION}").raise_for_status(),
                           _restore_collection),
    "wrong-vector-size": (lambda s: _create_collection(s, WRONG_SIZE), _restore_collection),
    "metrics-off": (_set_metrics(False), _set_metrics(True)),
    "deploy-log-errors": (_deploy_logs, _no_deploy_logs),
    "image-drift": (lambda s: s.restart_service(image=PREVIOUS_IMAGE), lambda s: s.reset_service()),
    "prometheus-down": (_stop(PROMETHEUS), _start(PROMETHEUS)),
}


def _registry() -> dict[str, Fault]:
    faults = {}
    for spec in TABLE:
        if spec.kind == "runtime":
            faults[spec.name] = Fault(spec, _runtime(spec.name, True), _runtime(spec.name, False))
        else:
            apply, clear = ORCHESTRATION[spec.name]
            faults[spec.name] = Fault(spec, apply, clear)
    return faults


FAULTS: dict[str, Fault] = _registry()


# --------------------------------------------------------------------------- state


def recorded(stack: LabStack) -> list[str]:
    """The faults ``fault add`` recorded and no ``fault clear`` or observed cure removed."""
    try:
        data = json.loads(stack.paths.faults_state.read_text(encoding="utf-8"))
        return [str(n) for n in data.get("active", [])]
    except (OSError, ValueError, AttributeError):
        return []


def active(stack: LabStack) -> list[str]:
    """The recorded faults still in effect. A fault whose effect is observed gone (cured by its runbook,
    the service's API or a restart) is dropped from the record (see :mod:`es_doctor.lab.fault_state`)."""
    from es_doctor.lab.fault_state import still_active

    names = recorded(stack)
    keep = still_active(stack, names) if names else []
    if keep != names:
        _save(stack, keep)
    return keep


def _save(stack: LabStack, names: list[str]) -> None:
    stack.paths.faults_state.write_text(json.dumps({"active": names}) + "\n", encoding="utf-8")


def unavailable_reason(stack: LabStack, name: str) -> str | None:
    """Why fault ``name`` cannot be injected into this lab (None: it can)."""
    fault = FAULTS.get(name)
    if fault is None:
        return f"unknown fault {name!r} (see: es-doctor lab faults)"
    if fault.docker_only and stack.mode != "docker":
        return f"{name} needs the lab in docker mode"
    if fault.spec.program == "pprofd":
        from es_doctor.lab import pprofd

        reason = pprofd.unavailable_reason()
        if reason:
            return f"{name} needs the lab's Go program: {reason}"
    component = fault.spec.needs
    if component and component in stack.settings.absent:
        return f"{component} is absent from this lab: {stack.settings.absent[component]}"
    return None


def add(stack: LabStack, name: str) -> None:
    reason = unavailable_reason(stack, name)
    if reason:
        raise infra.InfraError(reason)
    FAULTS[name].apply(stack)
    names = active(stack)
    if name not in names:
        _save(stack, [*names, name])


def neutralised(stack: LabStack, name: str, wait_s: float = 5.0) -> bool:
    """Whether fault ``name``, just added, is observed without effect (an earlier cure made the lab immune:
    e.g. ``vector-cache-tune`` left a cache that hides ``slow-api-crit``). Waits up to ``wait_s`` for the
    lab to read its faults file; a fault it cannot observe counts as in effect."""
    from es_doctor.lab.fault_state import in_effect

    deadline = time.monotonic() + wait_s
    while True:
        seen = in_effect(stack, name)
        if seen is not None or time.monotonic() > deadline:
            return seen is False
        time.sleep(0.2)


def clear(stack: LabStack, name: str | None = None, wait: float | None = 30.0) -> list[str]:
    """Reverse one fault, or every active one and then restore the baseline. Returns what was cleared."""
    names = [name] if name else list(reversed(active(stack)))
    for n in names:
        if n in FAULTS:
            stack.say(f"clearing {n}")
            FAULTS[n].clear(stack)
    remaining = [n for n in active(stack) if n not in names]
    _save(stack, remaining)
    if name is None:
        stack.say("restoring the lab's baseline (faults file, config, components)")
        restore_baseline(stack)
    if wait and not remaining:
        stack.say("waiting until every component is healthy")
        stack.wait_healthy(wait)
        if name is None:
            _writable(stack)
    return names


def restore_baseline(stack: LabStack) -> None:
    """Whatever happened, the lab as `lab up` left it: no faults, config back, everything running."""
    write_faults_file(stack.paths.faults, [])
    procs.stop(stack.paths.run / "squatter.pid", timeout=5)
    if _moved_config(stack).is_file():
        _moved_config(stack).replace(stack.paths.config)
    status = stack.status()
    for component in (POSTGRES, QDRANT, PROMETHEUS):
        if status[component] not in {"running"} and not status[component].startswith("absent"):
            _start(component)(stack)
    _restore_collection(stack)
    if stack.settings.pprof:  # the Go program (real pprof) runs again if it died
        from es_doctor.lab import pprofd

        pprofd.start(stack.paths.run, stack.settings.ports.pprof, stack.paths.faults)
    from es_doctor.lab.layout import service_config, write_service_config

    baseline = service_config(stack.paths, stack.settings)
    config = yaml.safe_load(stack.paths.config.read_text(encoding="utf-8"))
    off = config != baseline  # a fault or a runbook changed it (metrics off, tuned cache, pool, bus)
    if off:
        write_service_config(stack.paths, baseline)
    if off or (stack.paths.run / "service.json").is_file() or status[SERVICE] != "running":
        stack.reset_service()


def _writable(stack: LabStack) -> None:
    """Read-only and maintenance modes off (an emergency procedure may have left them on)."""
    import httpx

    base = f"http://127.0.0.1:{stack.settings.ports.api}/api/v1/maintenance"
    with contextlib.suppress(httpx.HTTPError, ValueError, AttributeError):
        mode = httpx.get(base, timeout=5).json()
        if mode.get("readonly"):
            httpx.post(f"{base}/readonly", json={"enabled": False}, timeout=5)
        if mode.get("maintenance"):
            httpx.post(f"{base}/disable", timeout=5)
