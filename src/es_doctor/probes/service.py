"""A typed client for the service's own API (STACK.md): health, readiness, managers, discovery,
events, maintenance / read-only mode, tasks. Every call returns a Result; an answer that does not
follow the contract is a BAD_RESPONSE failure, never an exception."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from es_doctor.probes.http import HttpProbe, as_json
from es_doctor.probes.result import FailureKind, Result, failed

T = TypeVar("T")


@dataclass(frozen=True)
class Health:
    status_code: int
    #: the body's reason or status word (a 503 says why)
    reason: str = ""


@dataclass(frozen=True)
class Readiness:
    status_code: int
    ready: bool
    waiting_for: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ManagerState:
    name: str
    status: str


@dataclass(frozen=True)
class Discovery:
    expected: list[str]
    discovered: list[str]

    @property
    def missing(self) -> list[str]:
        return sorted(set(self.expected) - set(self.discovered))


@dataclass(frozen=True)
class Mode:
    readonly: bool
    maintenance: bool
    #: the modes the answer stated as true/false (the others read off without being stated)
    stated: tuple[str, ...] = ("readonly", "maintenance")

    @property
    def writes_refused(self) -> str | None:
        """'maintenance' / 'read-only' when the service refuses writes on purpose, else None."""
        return "maintenance" if self.maintenance else "read-only" if self.readonly else None


class ServiceApi:
    def __init__(self, http: HttpProbe, api_url: str) -> None:
        self.http = http
        self.base = api_url.rstrip("/")

    def url(self, path: str) -> str:
        return self.base + path

    def _json(self, method: str, path: str, parse: Callable[[Any], T], body: Any = None,
              accept: tuple[int, ...] = (), timeout: float | None = None) -> Result[T]:
        if method == "GET":
            answer = as_json(self.http.get(self.url(path), accept=accept, timeout=timeout))
        else:
            answer = as_json(self.http.request(method, self.url(path), json_body=body, accept=accept))
        if answer.failure is not None:
            return Result(failure=answer.failure, elapsed_ms=answer.elapsed_ms)
        try:
            value = parse(answer.value)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            return failed(FailureKind.BAD_RESPONSE, f"{path}: answer does not follow the contract ({exc})",
                          elapsed_ms=answer.elapsed_ms)
        return Result(value=value, elapsed_ms=answer.elapsed_ms, meta=answer.meta)

    def health(self) -> Result[Health]:
        def parse(body: Any) -> Health:
            data = body if isinstance(body, dict) else {}
            return Health(0, str(data.get("reason") or data.get("status") or ""))

        got = self._json("GET", "/health", parse, accept=(503,))
        return _with_code(got, lambda v, code: Health(code, v.reason))

    def ready(self) -> Result[Readiness]:
        def parse(body: Any) -> Readiness:
            data = body if isinstance(body, dict) else {}
            waiting = data.get("waiting_for") or []
            if not isinstance(waiting, list):
                raise TypeError("'waiting_for' is not a list")
            return Readiness(0, data.get("ready") is not False, [str(w) for w in waiting])

        got = self._json("GET", "/ready", parse, accept=(503,))
        return _with_code(got, lambda v, code: Readiness(code, v.ready and code == 200, v.waiting_for))

    def managers(self) -> Result[list[ManagerState]]:
        def parse(body: Any) -> list[ManagerState]:
            managers = body.get("managers") if isinstance(body, dict) else None
            if not isinstance(managers, list):
                raise TypeError("no 'managers' list in the answer")
            return [ManagerState(str(m.get("name", "?")), str(m.get("status") or "")) for m in managers
                    if isinstance(m, dict)]

        return self._json("GET", "/api/v1/managers/status", parse)

    def discovery(self) -> Result[Discovery]:
        def parse(body: Any) -> Discovery:
            data = body if isinstance(body, dict) else {}
            expected, discovered = data.get("expected"), data.get("discovered")
            if not isinstance(expected, list) or not isinstance(discovered, list):
                raise TypeError("no 'expected'/'discovered' lists in the answer")
            return Discovery([str(x) for x in expected], [str(x) for x in discovered])

        return self._json("GET", "/api/v1/managers/discovery", parse)

    def mode(self, timeout: float | None = None) -> Result[Mode]:
        """Both modes; a mode the answer does not state as true/false reads off, and is left out of
        :attr:`Mode.stated` (what must be proven, e.g. by the ``service.mode`` action, checks that)."""
        return self._json("GET", "/api/v1/maintenance", _mode, timeout=timeout)

    def set_readonly(self, enabled: bool) -> Result[Mode]:
        """The answer names only the mode it changed (the other reads off): read :meth:`mode` for both."""
        return self._json("POST", "/api/v1/maintenance/readonly", _mode, {"enabled": enabled})

    def set_maintenance(self, enabled: bool) -> Result[Mode]:
        return self._json("POST", f"/api/v1/maintenance/{'enable' if enabled else 'disable'}", _mode)

    def restart_discovery(self) -> Result[Any]:
        return self._json("POST", "/api/v1/managers/discovery/restart", lambda body: body)

    def purge_events(self) -> Result[Any]:
        return self._json("POST", "/api/v1/events/purge", lambda body: body)


def _mode(body: Any) -> Mode:
    if not isinstance(body, dict):
        raise TypeError("not a JSON object")
    return Mode(readonly=body.get("readonly") is True, maintenance=body.get("maintenance") is True,
                stated=tuple(k for k in ("readonly", "maintenance") if isinstance(body.get(k), bool)))


def _with_code(got: Result[T], rebuild: Callable[[T, int], T]) -> Result[T]:
    if got.failure is not None or got.value is None:
        return got
    code = int(got.meta.get("status_code", "0") or 0)
    return Result(value=rebuild(got.value, code), elapsed_ms=got.elapsed_ms, meta=got.meta)
