"""Which of the lab's recorded faults are still in effect, read from the lab's actual state.

``faults-state.json`` records what ``lab fault add`` injected. A fault can be cured without ``lab fault
clear``: by its runbook (``es-doctor fix``), by the service's own API (a discovery restart, an events
purge) or by a restart. ``lab faults`` and ``lab status`` must not call such a fault active, so each
recorded fault is observed: True (its effect is there), False (gone: the record is dropped) or None
(cannot tell now, e.g. the service is restarting: the record is kept). Runtime faults of the service
are observed through ``GET /_lab/state`` (the names it saw in faults.json, and which of them are still
in effect for it); runtime faults of the Qdrant stand-in last while faults.json lists them;
orchestration faults are observed one by one (:data:`OBSERVERS`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import yaml

from es_doctor.lab import infra, procs
from es_doctor.lab.fault_table import FAULT_SPECS
from es_doctor.lab.layout import POSTGRES, PROMETHEUS, QDRANT, LabPaths
from es_doctor.lab.runtime_faults import read_faults_file
from es_doctor.lab.stack import LabStack

COLLECTION, VECTOR_SIZE = "task_vectors", 1536


class Probe:
    """The lab's state, each part read at most once per observation."""

    def __init__(self, stack: LabStack) -> None:
        self.stack = stack
        self._cache: dict[str, Any] = {}

    def _once(self, key: str, read: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = read()
        return self._cache[key]

    def service(self) -> dict[str, Any] | None:
        """The service's ``/_lab/state``, None when it does not answer."""
        state: dict[str, Any] | None = self._once("service", lambda: _get_json(
            f"http://127.0.0.1:{self.stack.settings.ports.api}/_lab/state"))
        return state

    def collection(self) -> tuple[int, dict[str, Any] | None] | None:
        """(status code, body) of ``GET /collections/task_vectors`` on Qdrant, None when it does not answer."""
        def read() -> tuple[int, dict[str, Any] | None] | None:
            import httpx

            url = f"http://127.0.0.1:{self.stack.settings.ports.qdrant}/collections/{COLLECTION}"
            try:
                resp = httpx.get(url, timeout=2)
                return resp.status_code, resp.json() if resp.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                return None
        result: tuple[int, dict[str, Any] | None] | None = self._once("collection", read)
        return result

    def component_state(self, name: str) -> str | None:
        def read() -> str | None:
            try:
                return self.stack.runner.state(name)
            except infra.InfraError:
                return None
        state: str | None = self._once(f"state:{name}", read)
        return state


def _get_json(url: str) -> dict[str, Any] | None:
    import httpx

    try:
        resp = httpx.get(url, timeout=2)
        data = resp.json() if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    return data if isinstance(data, dict) else None


Observer = Callable[[LabStack, Probe], bool | None]


def _stopped(component: str) -> Observer:
    def observe(stack: LabStack, probe: Probe) -> bool | None:
        state = probe.component_state(component)
        return None if state is None else state != "running"
    return observe


def _service_says(key: str, in_effect: Callable[[Any], bool]) -> Observer:
    def observe(stack: LabStack, probe: Probe) -> bool | None:
        state = probe.service()
        return None if state is None else in_effect(state.get(key))
    return observe


def _service_exits(stack: LabStack, probe: Probe) -> bool | None:
    return False if probe.service() is not None else None  # it answers: it did not exit at start


def _collection_missing(stack: LabStack, probe: Probe) -> bool | None:
    answer = probe.collection()
    return None if answer is None else answer[0] == 404


def _wrong_vector_size(stack: LabStack, probe: Probe) -> bool | None:
    answer = probe.collection()
    if answer is None or answer[1] is None:
        return None
    with contextlib.suppress(KeyError, TypeError):
        return bool(answer[1]["result"]["config"]["params"]["vectors"]["size"] != VECTOR_SIZE)
    return None


def _metrics_off(stack: LabStack, probe: Probe) -> bool | None:
    try:
        config = yaml.safe_load(stack.paths.config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    metrics = config.get("metrics") if isinstance(config, dict) else None
    return isinstance(metrics, dict) and metrics.get("enabled") is False


def deploy_logs(paths: LabPaths) -> list[Any]:
    return [p for pattern in ("deployment-*.log", "migration-*.log") for p in paths.logs.glob(pattern)]


#: how each orchestration fault's effect is observed (a test checks every one has its observer)
OBSERVERS: dict[str, Observer] = {
    "service-exits": _service_exits,
    "config-missing": lambda stack, probe: not stack.paths.config.is_file(),
    "go-env-unset": _service_says("go_env", lambda value: not value),
    "port-taken": lambda stack, probe: procs.process(stack.paths.run / "squatter.pid") is not None,
    "qdrant-down": _stopped(QDRANT),
    "postgres-down": _stopped(POSTGRES),
    "collection-missing": _collection_missing,
    "wrong-vector-size": _wrong_vector_size,
    "metrics-off": _metrics_off,
    "deploy-log-errors": lambda stack, probe: bool(deploy_logs(stack.paths)),
    "image-drift": _service_says("release", lambda value: value == "previous"),
    "prometheus-down": _stopped(PROMETHEUS),
}


def in_effect(stack: LabStack, name: str, probe: Probe | None = None) -> bool | None:
    """Whether fault ``name`` is still in effect in ``stack``: True, False, or None (cannot tell now)."""
    probe = probe or Probe(stack)
    spec = FAULT_SPECS.get(name)
    if spec is None:
        return None
    if name in OBSERVERS:
        return OBSERVERS[name](stack, probe)
    if spec.kind != "runtime":
        return None
    if name not in read_faults_file(stack.paths.faults):
        return False
    if spec.program != "service":
        return True  # the Qdrant stand-in's and the Go program's faults have no cure but `lab fault clear`
    state = probe.service()
    if state is None or name not in (state.get("faults") or []):
        return None  # down, restarting, or it has not read faults.json since the fault was added
    return name in (state.get("in_effect") or [])


def still_active(stack: LabStack, recorded: list[str]) -> list[str]:
    """The recorded faults whose effect is not observed gone."""
    probe = Probe(stack)
    return [name for name in recorded if in_effect(stack, name, probe) is not False]
