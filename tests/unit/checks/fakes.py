"""Fakes of the probe session for the checks' unit tests.

``FakeContext`` is a real :class:`CheckContext` (same memo, same ``api()``/``api_port()``, same
``main_log()``/``log_dir()`` reading real files) whose probes are fakes fed per test:

* ``http``: canned answers per URL (``Answer(status, body)`` or a ``Failure``), classified like
  ``HttpProbe.request`` (2xx and ``accept`` are values, 404 NOT_FOUND, 401/403 AUTH, else HTTP_ERROR;
  ``test_fakes.py`` holds the fake to the real probe). ``prometheus()`` is the real
  ``PrometheusProbe`` over this fake, and ``metrics_once()`` the real scrape of the metrics URL.
* ``metrics``: the two scrapes of the window as exposition text (parsed by the real parser), or a
  ``Failure``; the metrics URL then serves the second one.
* ``docker``/``qdrant``/``postgres``: small fakes returning ``Result`` values.

Nothing here opens a connection: an unrouted URL answers REFUSED, an unconfigured SDK probe
UNAVAILABLE.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from es_doctor.checks.context import CheckContext, MetricsWindow
from es_doctor.checks.registry import REGISTRY, Outcome, load_all
from es_doctor.config import Target
from es_doctor.cures import escalation_for, remedy_for
from es_doctor.findings import Status
from es_doctor.probes.docker import ContainerInfo, MemoryStats
from es_doctor.probes.http import HttpProbe, HttpResponse
from es_doctor.probes.metrics import Scrape, parse_exposition
from es_doctor.probes.qdrant import CollectionInfo
from es_doctor.probes.result import Failure, FailureKind, Result, failed, success
from es_doctor.runner import _finding

load_all()

# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: Any = None  #: a str is sent as is, anything else as JSON

    @property
    def text(self) -> str:
        return self.body if isinstance(self.body, str) else json.dumps(self.body)


Route = Answer | Failure | list[Answer | Failure]


def refused(url: str = "") -> Failure:
    return Failure(FailureKind.REFUSED, f"GET {url}: [Errno 111] Connection refused")


def timeout(url: str = "") -> Failure:
    return Failure(FailureKind.TIMEOUT, f"GET {url}: no answer within 5s (ReadTimeout)")


class FakeHttp(HttpProbe):
    """``HttpProbe`` whose ``request`` answers from ``routes`` (URL without query string → answer).

    A list is a sequence of answers, its last one repeated. Every request is logged in ``calls``.
    """

    def __init__(self, routes: dict[str, Route] | None = None) -> None:
        super().__init__(timeout=1.0)
        self.routes: dict[str, Route] = dict(routes or {})
        self.calls: list[tuple[str, str]] = []

    def request(self, method: str, url: str, *, json_body: Any = None, accept: tuple[int, ...] = (),
                timeout: float | None = None) -> Result[HttpResponse]:
        self.calls.append((method, url))
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}{parts.path}"
        route = self.routes.get(url, self.routes.get(key))
        if route is None:
            return Result(failure=refused(url))
        answers = route if isinstance(route, list) else [route]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Failure):
            return Result(failure=answer, elapsed_ms=1.0)
        response = HttpResponse(answer.status, answer.text, {}, 1.0)
        if 200 <= answer.status < 300 or answer.status in accept:
            return success(response, 1.0)
        kind = FailureKind.NOT_FOUND if answer.status == 404 else FailureKind.HTTP_ERROR
        if answer.status in (401, 403):
            kind = FailureKind.AUTH
        return failed(kind, f"{method} {url} answered {answer.status}: {answer.text[:200]}",
                      status_code=answer.status, elapsed_ms=1.0)


# --------------------------------------------------------------------------- Docker


def container_info(name: str = "email-sender-go", **changes: Any) -> ContainerInfo:
    """A running, healthy container; ``changes`` override any field."""
    base = ContainerInfo(name=name, id="c0ffee", state="running", exit_code=0, restart_count=0, oom_killed=False,
                         error="", image=f"{name}:latest", image_id="sha256:1", image_tags=[f"{name}:latest"],
                         env={"GO_ENV": "production"}, labels={}, health=None, started_at="", finished_at="",
                         pid=0, memory_limit=0)
    return replace(base, **changes)


@dataclass
class FakeDocker:
    containers: dict[str, ContainerInfo] = field(default_factory=dict)
    #: every call fails with this (engine down)
    down: Failure | None = None
    version: str = "27.1.1"
    logs_text: str = ""
    memory_stats: dict[str, MemoryStats] = field(default_factory=dict)
    files: dict[tuple[str, str], str | Failure] = field(default_factory=dict)
    volume_names: list[str] = field(default_factory=lambda: ["qdrant_data", "postgres_data"])

    def ping(self) -> Result[str]:
        return Result(failure=self.down) if self.down else success(self.version)

    def container(self, name: str) -> Result[ContainerInfo]:
        if self.down:
            return Result(failure=self.down)
        if name not in self.containers:
            return failed(FailureKind.NOT_FOUND, f"no such container: {name}")
        return success(self.containers[name])

    def logs(self, name: str, tail: int = 50) -> Result[str]:
        if self.down:
            return Result(failure=self.down)
        return success("\n".join(self.logs_text.splitlines()[-tail:]))

    def memory(self, name: str) -> Result[MemoryStats]:
        if self.down:
            return Result(failure=self.down)
        if name not in self.memory_stats:
            return failed(FailureKind.NOT_FOUND, f"no stats for {name}")
        return success(self.memory_stats[name])

    def read_file(self, name: str, path: str) -> Result[str]:
        if self.down:
            return Result(failure=self.down)
        content = self.files.get((name, path))
        if content is None:
            return failed(FailureKind.NOT_FOUND, f"{path}: no such file in {name}")
        if isinstance(content, Failure):
            return Result(failure=content)
        return success(content)

    def volumes(self) -> Result[list[str]]:
        return Result(failure=self.down) if self.down else success(list(self.volume_names))


def engine_down() -> Failure:
    return Failure(FailureKind.REFUSED, "Error while fetching server API version: connection refused")


# --------------------------------------------------------------------------- Qdrant, PostgreSQL


def collection_info(name: str = "task_vectors", **changes: Any) -> CollectionInfo:
    base = CollectionInfo(name=name, vector_size=1536, distance="Cosine", points_count=1200, status="green")
    return replace(base, **changes)


@dataclass
class FakeQdrant:
    names: list[str] | Failure = field(default_factory=lambda: ["task_vectors"])
    infos: dict[str, CollectionInfo | Failure] = field(default_factory=lambda: {"task_vectors": collection_info()})
    #: test searches in order: (hits, elapsed ms) or a Failure; the last one repeats
    searches: list[tuple[int, float] | Failure] = field(default_factory=lambda: [(5, 4.0)])
    #: successive scrolls of the task ids in the points' payloads (the last one repeats)
    task_ids: list[list[Any] | Failure] = field(default_factory=lambda: [list(range(1, 11))])
    calls: list[str] = field(default_factory=list)

    def payload_ids(self, name: str, key: str, limit: int = 100_000) -> Result[list[Any]]:
        self.calls.append(f"scroll {name} {key}")
        return _next(self.task_ids)

    def collections(self) -> Result[list[str]]:
        self.calls.append("collections")
        if isinstance(self.names, Failure):
            return Result(failure=self.names, elapsed_ms=2.0)
        return success(list(self.names), 2.0)

    def collection(self, name: str) -> Result[CollectionInfo]:
        self.calls.append(f"collection {name}")
        info = self.infos.get(name)
        if info is None:
            return failed(FailureKind.NOT_FOUND, f"collection {name} not found")
        if isinstance(info, Failure):
            return Result(failure=info)
        return success(info)

    def test_search(self, name: str, size: int, limit: int = 5) -> Result[int]:
        self.calls.append(f"search {name} {size}")
        answer = self.searches.pop(0) if len(self.searches) > 1 else self.searches[0]
        if isinstance(answer, Failure):
            return Result(failure=answer, elapsed_ms=1.0)
        hits, elapsed = answer
        return Result(value=hits, elapsed_ms=elapsed)


@dataclass
class FakePostgres:
    answer: Failure | None = None
    #: successive reads of the tasks' id column (the last one repeats)
    ids: list[list[Any] | Failure] = field(default_factory=lambda: [list(range(1, 11))])
    calls: list[str] = field(default_factory=list)

    def select_one(self) -> Result[int]:
        self.calls.append("select 1")
        return Result(failure=self.answer) if self.answer else success(1, 3.0)

    def column_values(self, table: str, column: str) -> Result[list[Any]]:
        self.calls.append(f"select {column} from {table}")
        return _next(self.ids)


def _next(answers: list[Any]) -> Result[Any]:
    answer = answers.pop(0) if len(answers) > 1 else answers[0]
    return Result(failure=answer) if isinstance(answer, Failure) else success(answer)


# --------------------------------------------------------------------------- metrics


def exposition(series: dict[str, float] | Iterable[tuple[str, float]]) -> str:
    """Exposition text from ``{'name{labels}': value}``; ``# TYPE`` lines inferred from the name."""
    items = series.items() if isinstance(series, dict) else series
    lines: list[str] = []
    typed: set[str] = set()
    for key, value in items:
        name = key.split("{", 1)[0]
        family, kind = name, "gauge"
        for suffix, kind_of in (("_bucket", "histogram"), ("_sum", "histogram"), ("_count", "histogram"),
                                ("_total", "counter")):
            if name.endswith(suffix):
                family, kind = name[: -len(suffix)], kind_of
                break
        if family not in typed:
            typed.add(family)
            lines.append(f"# TYPE {family} {kind}")
        lines.append(f"{key} {value}")
    return "\n".join(lines) + "\n"


def histogram(name: str, counts: dict[float, float], labels: str = 'route="/api/v1/tasks"') -> dict[str, float]:
    """Cumulative buckets of ``name`` from per-bucket (non-cumulative) counts by upper bound."""
    out: dict[str, float] = {}
    running = 0.0
    for bound in sorted(counts):
        running += counts[bound]
        le = "+Inf" if bound == float("inf") else f"{bound:g}"
        out[f'{name}_bucket{{{labels},le="{le}"}}'] = running
    if float("inf") not in counts:
        out[f'{name}_bucket{{{labels},le="+Inf"}}'] = running
    out[f"{name}_count{{{labels}}}"] = running
    out[f"{name}_sum{{{labels}}}"] = 0.0
    return out


# --------------------------------------------------------------------------- logs


def log_line(seconds_ago: float, level: str = "INFO", message: str = "ok", **fields: Any) -> str:
    """One JSON log line of the service, stamped ``seconds_ago`` before now."""
    stamp = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")
    return json.dumps({"timestamp": stamp, "level": level, "component": fields.pop("component", "API"),
                       "message": message, **fields})


def write_log(path: Path, lines: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the context

WINDOW_S = 2.0


class FakeContext(CheckContext):
    """A CheckContext whose probes are the fakes above; logs are real files under ``target.service.log_dir``."""

    def __init__(self, target: Target | None = None, *, routes: dict[str, Route] | None = None,
                 metrics: tuple[str, str] | Failure | None = None, docker: FakeDocker | None = None,
                 qdrant: FakeQdrant | None = None, postgres: FakePostgres | None = None) -> None:
        super().__init__(target or Target())
        self.fake_http = FakeHttp(routes)
        self.metrics = metrics
        if metrics is not None and self.target.service.metrics_url not in self.fake_http.routes:
            self.fake_http.routes[self.target.service.metrics_url] = (
                metrics if isinstance(metrics, Failure) else Answer(200, metrics[1]))
        self.fake_docker = docker or FakeDocker(down=engine_down())
        self.fake_qdrant = qdrant or FakeQdrant(names=Failure(FailureKind.UNAVAILABLE, "no Qdrant in this test"))
        self.fake_postgres = postgres or FakePostgres(Failure(FailureKind.UNAVAILABLE, "no PostgreSQL in this test"))
        # the fakes are the session's clients: what the session builds on them (the service's API,
        # Prometheus') reads the fakes too
        for key, fake in (("probe:http", self.fake_http), ("probe:plain-http", self.fake_http),
                          ("probe:docker", self.fake_docker), ("probe:qdrant", self.fake_qdrant),
                          ("probe:postgres", self.fake_postgres)):
            self.session.memo(key, lambda fake=fake: fake)

    def http(self) -> FakeHttp:  # type: ignore[override]
        return self.fake_http

    def plain_http(self) -> FakeHttp:  # type: ignore[override]
        return self.fake_http

    def docker(self) -> FakeDocker:  # type: ignore[override]
        return self.fake_docker

    def qdrant(self) -> FakeQdrant:  # type: ignore[override]
        return self.fake_qdrant

    def postgres(self) -> FakePostgres:  # type: ignore[override]
        return self.fake_postgres

    def metrics_window(self) -> Result[MetricsWindow]:
        if isinstance(self.metrics, Failure):
            return Result(failure=self.metrics)
        if self.metrics is None:
            return Result(failure=refused(self.target.service.metrics_url))
        now = time.time()
        before: Scrape = parse_exposition(self.metrics[0], taken_at=now - WINDOW_S)
        after: Scrape = parse_exposition(self.metrics[1], taken_at=now)
        return Result(value=MetricsWindow(before, after))


def api(path: str, target: Target | None = None) -> str:
    return (target or Target()).service.api_url.rstrip("/") + path


def prom(path: str, target: Target | None = None) -> str:
    return (target or Target()).prometheus.url.rstrip("/") + path


def prom_data(data: Any) -> Answer:
    return Answer(200, {"status": "success", "data": data})


# --------------------------------------------------------------------------- running a check


def named(runbook: str | None, params: Mapping[str, str] | None = None) -> str | None:
    """A cure as tests write it: ``"dependency-restart component=qdrant"``."""
    if runbook is None:
        return None
    return " ".join([runbook, *(f"{k}={v}" for k, v in sorted((params or {}).items()))])


def cure_of(check_id: str, outcome: Outcome) -> str | None:
    """The cure es_doctor.cures gives this outcome (its finding id and the cause it names)."""
    remedy = remedy_for(check_id, outcome.cause)
    return named(remedy.runbook, remedy.params) if remedy else None


#: (check id, status) of every check run by the current test (read by conftest's ``covers`` verifier)
OBSERVED: list[tuple[str, Status]] = []
_UNSAID: Any = object()


def expect(ctx: CheckContext, check_id: str, status: Status, *words: str, cure: str | None = _UNSAID,
           cause: str | None = None, escalate: int | None = None) -> Outcome:
    """Run ``check_id`` on ``ctx`` and assert: its status; that its summary holds ``words``; the cause it
    names (``cause``, None by default); and the cure the report names, as ``"runbook k=v"``:

    * WARN/CRIT: ``cure`` must be stated; it is ``remedy_for(check_id, cause)``, and the runner's
      finding says the same; with no cure, the finding names the escalation level ``escalate``.
    * UNKNOWN: the report names a cure only when the check found a cause (``cure`` defaults to None).
    * OK/SKIP: no cure.
    """
    spec = REGISTRY[check_id]
    outcome = spec.fn(ctx)
    OBSERVED.append((check_id, outcome.status))
    assert outcome.status is status, f"{check_id}: expected {status}, got {outcome.status}: {outcome.summary}"
    for word in words:
        assert word in outcome.summary, f"{check_id}: {word!r} not in {outcome.summary!r}"
    assert outcome.cause == cause, f"{check_id}: cause {outcome.cause!r}, expected {cause!r}"
    finding = _finding(spec, outcome, 0.0)
    reported = named(finding.runbook, finding.runbook_params)
    if status in (Status.OK, Status.SKIP):
        assert cure in (_UNSAID, None), "OK/SKIP outcomes name no cure"
        assert reported is None
        return outcome
    if status is Status.UNKNOWN:
        wanted = None if cure is _UNSAID else cure
        assert reported == wanted, f"{check_id} UNKNOWN: the report names {reported!r}, expected {wanted!r}"
        return outcome
    assert cure is not _UNSAID, f"{check_id} {status}: the test must state the expected cure (or None)"
    assert cure_of(check_id, outcome) == cure, f"{check_id}: cure {cure_of(check_id, outcome)!r}, expected {cure!r}"
    assert reported == cure, f"{check_id}: the report names {reported!r}, es_doctor.cures {cure!r}"
    if cure is None:
        assert escalate is not None, f"{check_id} {status}: no cure, so the test must state the escalation level"
        assert finding.escalate == escalate == escalation_for(check_id, outcome.cause)
    else:
        assert finding.escalate is None
    return outcome


def evidence(outcome: Outcome) -> dict[str, Any]:
    return {e.name: e.value for e in outcome.evidence}


#: (check id, status) declared by ``@covers`` over all imported test modules
DECLARED: set[tuple[str, Status]] = set()


def covers(check_id: str, *statuses: Status) -> pytest.MarkDecorator:
    """Declare that a test runs ``check_id`` and sees each of ``statuses`` (verified after the test)."""
    assert check_id in REGISTRY, f"no check {check_id}"
    for status in statuses:
        DECLARED.add((check_id, status))
    return pytest.mark.covers(check_id, *statuses)


def iter_covers(marks: Iterable[pytest.Mark]) -> Iterator[tuple[str, Status]]:
    for mark in marks:
        check_id, *statuses = mark.args
        for status in statuses:
            yield check_id, status
