"""Class 3, 'Erreurs de Vectorisation': Qdrant, the collection, its dimensions, search, insert errors."""

from __future__ import annotations

from es_doctor.checks.common import from_failure
from es_doctor.checks.context import CheckContext
from es_doctor.checks.registry import Outcome, check, crit, ev, grade, ok, unknown
from es_doctor.findings import Status
from es_doctor.probes.metrics import counter_delta
from es_doctor.probes.result import FailureKind

METRICS = "monitoring.metrics-endpoint"


@check("vectors.qdrant", description="Qdrant is reachable.", fixes="dependency-restart", components=("qdrant",))
def qdrant(ctx: CheckContext) -> Outcome:
    result = ctx.memo("qdrant:collections", lambda: ctx.qdrant().collections())
    if result.failure is not None:
        return from_failure(result.failure, f"Qdrant at {ctx.target.qdrant.url}", runbook="dependency-restart")
    return ok(f"Qdrant reachable at {ctx.target.qdrant.url}", ev("collections", result.unwrap()))


@check("vectors.collection", description="The task_vectors collection exists.", fixes="qdrant-collection-recreate",
       requires=("vectors.qdrant",), components=("qdrant",))
def collection(ctx: CheckContext) -> Outcome:
    name = ctx.target.qdrant.collection
    names = ctx.memo("qdrant:collections", lambda: ctx.qdrant().collections())
    if names.failure is not None:
        return from_failure(names.failure, "Qdrant")
    if name not in names.unwrap():
        return crit(f"collection {name} does not exist", ev("collections", names.unwrap()))
    return ok(f"collection {name} exists")


@check("vectors.dimensions", description="The collection's vectors are 1536-dimensional, Cosine (as configured).",
       fixes="qdrant-dimension-fix", requires=("vectors.collection",), components=("qdrant",))
def dimensions(ctx: CheckContext) -> Outcome:
    cfg = ctx.target.qdrant
    info = ctx.qdrant().collection(cfg.collection)
    if info.failure is not None:
        return from_failure(info.failure, f"collection {cfg.collection}")
    c = info.unwrap()
    evidence = [ev("size", c.vector_size, f"= {cfg.vector_size}"), ev("distance", c.distance, f"= {cfg.distance}"),
                ev("points", c.points_count), ev("status", c.status)]
    problems = []
    if c.vector_size != cfg.vector_size:
        problems.append(f"size {c.vector_size}, expected {cfg.vector_size}")
    if (c.distance or "").lower() != cfg.distance.lower():
        problems.append(f"distance {c.distance}, expected {cfg.distance}")
    if problems:
        return crit(f"collection {cfg.collection}: {'; '.join(problems)}", *evidence)
    if c.status.lower() not in ("green", "grey"):
        return Outcome(Status.WARN, f"collection {cfg.collection} status is {c.status}", evidence)
    return ok(f"collection {cfg.collection}: {c.vector_size} dimensions, {c.distance}, {c.points_count} points",
              *evidence)


@check("vectors.search", description="A test search works; its latency over 50 ms is WARN.",
       fixes="qdrant-connection-pool", requires=("vectors.dimensions",), components=("qdrant",))
def search(ctx: CheckContext) -> Outcome:
    cfg = ctx.target.qdrant
    probe = ctx.qdrant()
    probe.test_search(cfg.collection, cfg.vector_size)  # warm-up: connection set-up is not search latency
    result = probe.test_search(cfg.collection, cfg.vector_size)
    if result.failure is not None:
        if result.failure.kind is FailureKind.NOT_FOUND:
            return crit(f"test search failed: {result.failure.message}")
        return from_failure(result.failure, "test search")
    th = ctx.target.thresholds
    status = grade(result.elapsed_ms, th.vector_search_latency_warn_ms, None)
    return Outcome(status, f"test search answered in {result.elapsed_ms:.1f} ms ({result.unwrap()} hits)",
                   [ev("latency", round(result.elapsed_ms, 1), f"> {th.vector_search_latency_warn_ms:g} ms WARN", "ms"),
                    ev("hits", result.unwrap())])


@check("vectors.insert-errors", description="Vector insert error ratio over a short window (> 0.1 % WARN).",
       fixes="qdrant-dimension-fix", requires=(METRICS,), components=("service",))
def insert_errors(ctx: CheckContext) -> Outcome:
    window = ctx.metrics_window()
    if window.failure is not None:
        return unknown(f"cannot read the vector metrics: {window.failure}")
    w = window.unwrap()
    name = ctx.target.metrics.vector_operations
    if not w.after.get(name):
        return unknown(f"the service exposes no {name} counter")
    inserts = counter_delta(w.before, w.after, name, op="insert") or 0.0
    errors = counter_delta(w.before, w.after, name, op="insert", result="error") or 0.0
    th = ctx.target.thresholds
    if inserts <= 0:
        return ok(f"no vector inserts in the last {w.seconds:.1f}s", ev("inserts", 0))
    pct = errors / inserts * 100
    status = grade(pct, th.vector_insert_error_warn_pct, None)
    return Outcome(status, f"vector insert errors {pct:.2f} % ({int(errors)} of {int(inserts)})",
                   [ev("insert errors", round(pct, 3), f"> {th.vector_insert_error_warn_pct:g} % WARN", "%"),
                    ev("inserts", int(inserts)), ev("window", round(w.seconds, 1), unit="s")])


@check("vectors.connection-errors", description="Qdrant connection errors seen by the service (any is CRIT).",
       fixes="dependency-restart", requires=(METRICS,), components=("service",))
def connection_errors(ctx: CheckContext) -> Outcome:
    window = ctx.metrics_window()
    if window.failure is not None:
        return unknown(f"cannot read the vector metrics: {window.failure}")
    w = window.unwrap()
    name = ctx.target.metrics.qdrant_connection_errors
    if not w.after.get(name):
        return unknown(f"the service exposes no {name} counter")
    errors = counter_delta(w.before, w.after, name) or 0.0
    th = ctx.target.thresholds
    evidence = [ev("connection errors", int(errors), f"> {th.qdrant_connection_errors_crit:g} CRIT"),
                ev("window", round(w.seconds, 1), unit="s")]
    if errors > th.qdrant_connection_errors_crit:
        return crit(f"the service had {int(errors)} Qdrant connection error(s) in the last {w.seconds:.1f}s",
                    *evidence)
    return ok("no Qdrant connection errors", *evidence)
