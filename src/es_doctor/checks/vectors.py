"""Class 3, 'Erreurs de Vectorisation': Qdrant, the collection, its dimensions, search, insert errors."""

from __future__ import annotations

from es_doctor import cures
from es_doctor.checks.common import counter_window, dependency_down, from_failure
from es_doctor.checks.context import CheckContext
from es_doctor.checks.registry import Outcome, check, crit, ev, ok, over
from es_doctor.checks.signal_window import quantile_reading, ratio_reading, window_evidence
from es_doctor.findings import Status
from es_doctor.probes.metrics import counter_delta
from es_doctor.probes.result import FailureKind
from es_doctor.signals import INSERT_ERRORS, SEARCH_LATENCY, Quantiles, grade_level, grade_ratio

METRICS = "monitoring.metrics-endpoint"


@check("vectors.qdrant", description="Qdrant is reachable.", components=("qdrant",))
def qdrant(ctx: CheckContext) -> Outcome:
    result = ctx.memo("qdrant:collections", lambda: ctx.qdrant().collections())
    if result.failure is not None:
        return from_failure(result.failure, f"Qdrant at {ctx.target.qdrant.url}")
    return ok(f"Qdrant reachable at {ctx.target.qdrant.url}", ev("collections", result.unwrap()))


@check("vectors.collection", description="The task_vectors collection exists.",
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
       requires=("vectors.collection",), components=("qdrant",))
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
        return Outcome(Status.WARN, f"collection {cfg.collection} status is {c.status}", evidence, cures.NOT_GREEN)
    return ok(f"collection {cfg.collection}: {c.vector_size} dimensions, {c.distance}, {c.points_count} points",
              *evidence)


@check("vectors.search", description="Vector search latency: the median of the service's own searches "
       "(its search histogram, over a short window widened to Prometheus' signal window when it holds too few), "
       "else the median of timed test searches; over 50 ms is WARN. A test search that fails is CRIT.",
       requires=("vectors.dimensions",), components=("qdrant",))
def search(ctx: CheckContext) -> Outcome:
    cfg = ctx.target.qdrant
    probe = ctx.qdrant()
    probe.test_search(cfg.collection, cfg.vector_size)  # warm-up: connection set-up is not search latency
    timings: list[float] = []
    hits = 0
    for _ in range(SEARCHES):  # the median of a few: one slow answer on a busy host is not the search latency
        result = probe.test_search(cfg.collection, cfg.vector_size)
        if result.failure is not None:
            if result.failure.kind is FailureKind.NOT_FOUND:
                return crit(f"test search failed: {result.failure.message}")
            return from_failure(result.failure, "test search")
        timings.append(result.elapsed_ms)
        hits = result.unwrap()
    latency = sorted(timings)[len(timings) // 2]
    th = ctx.target.thresholds
    tests = [ev("searches", ", ".join(f"{t:.1f}" for t in timings), unit="ms"), ev("hits", hits)]
    service = _service_search(ctx)
    if service is not None and service.p50 is not None:
        # the guide's signal: the median of the service's own searches (what the alert rule and the dashboard read)
        median = service.p50 * 1000
        status = grade_level(median, th.vector_search_latency_warn_ms, None)
        return Outcome(status, f"vector search median {median:.1f} ms on {service.count:.0f} searches of the "
                               f"service in the last {service.window_s:.0f} s"
                               + over(status, th.vector_search_latency_warn_ms, None, " ms"),
                       [ev("median", round(median, 1), f"> {th.vector_search_latency_warn_ms:g} ms WARN", "ms"),
                        ev("p95", None if service.p95 is None else round(service.p95 * 1000, 1), unit="ms"),
                        *window_evidence(service.window_s, service.source, service.count, "service searches"),
                        *tests])
    status = grade_level(latency, th.vector_search_latency_warn_ms, None)
    return Outcome(status, f"test search answered in {latency:.1f} ms (median of {len(timings)}, {hits} hits)"
                           + over(status, th.vector_search_latency_warn_ms, None, " ms"),
                   [ev("latency", round(latency, 1), f"> {th.vector_search_latency_warn_ms:g} ms WARN", "ms"), *tests])


def _service_search(ctx: CheckContext) -> Quantiles | None:
    """The service's search percentiles when its metrics expose the histogram and enough searches (else None)."""
    if not ctx.target.service.enabled:
        return None
    window = ctx.metrics_window()
    if window.failure is not None:
        return None
    reading = quantile_reading(ctx, SEARCH_LATENCY, window.unwrap())
    if reading is None or reading.count < ctx.target.thresholds.min_observations:
        return None
    return reading


#: timed test searches; their median is the latency
SEARCHES = 3


@check("vectors.insert-errors", description="Vector insert error ratio, graded on at least thresholds.min_requests "
       "inserts by its Wilson lower bound (> 0.1 % WARN), over a short window widened to Prometheus' signal window "
       "when it holds too few.", requires=(METRICS,), components=("service",))
def insert_errors(ctx: CheckContext) -> Outcome:
    name = ctx.target.metrics.vector_operations
    w = counter_window(ctx, name, "read the vector metrics")
    if isinstance(w, Outcome):
        return w
    ratio = ratio_reading(ctx, INSERT_ERRORS, w)
    if isinstance(ratio, Outcome):
        return ratio
    th = ctx.target.thresholds
    verdict = grade_ratio(ratio, th.vector_insert_error_warn_pct, None, th.min_requests, "inserts")
    low, high = ratio.bounds_pct
    evidence = [ev("insert errors", round(ratio.pct, 3), f"> {th.vector_insert_error_warn_pct:g} % WARN "
                                                         "(lower bound)", "%"),
                ev("lower bound", round(low, 3), unit="%"), ev("upper bound", round(high, 3), unit="%"),
                ev("failed inserts", int(ratio.events)),
                *window_evidence(ratio.window_s, ratio.source, ratio.total, "inserts", w.source)]
    counts = f"{int(ratio.events)} of {int(ratio.total)} in the last {ratio.window_s:.0f} s"
    if not verdict.graded:
        return Outcome(Status.OK, f"vector insert errors not graded: {verdict.note} ({counts})", evidence,
                       graded=False)
    status = verdict.status
    summary = (f"vector insert errors {ratio.pct:.2f} % ({counts})"
               + over(status, th.vector_insert_error_warn_pct, None, " %"))
    if status is Status.OK:
        return Outcome(status, summary + (f": {verdict.note}" if verdict.note else ""), evidence)
    cause = _insert_error_cause(ctx)
    if cause is None:
        return Outcome(status, summary, evidence)
    return Outcome(status, f"{summary}: {cause[1]}", evidence, cause[0])


def _insert_error_cause(ctx: CheckContext) -> tuple[str, str] | None:
    """Insert errors are often a consequence: Qdrant down, the collection gone. Dimensions otherwise."""
    down = dependency_down(ctx)
    if down is not None and down[0] == cures.QDRANT_DOWN:
        return down[0], f"a consequence: {down[1]}"
    if ctx.target.is_present("qdrant")[0]:
        names = ctx.memo("qdrant:collections", lambda: ctx.qdrant().collections())
        name = ctx.target.qdrant.collection
        if names.failure is None and name not in names.unwrap():
            return cures.COLLECTION_MISSING, f"a consequence: the collection {name} does not exist"
    return None


@check("vectors.connection-errors", description="Qdrant connection errors seen by the service (any is CRIT).",
       requires=(METRICS,), components=("service",))
def connection_errors(ctx: CheckContext) -> Outcome:
    name = ctx.target.metrics.qdrant_connection_errors
    w = counter_window(ctx, name, "read the vector metrics")
    if isinstance(w, Outcome):
        return w
    errors = counter_delta(w.before, w.after, name) or 0.0
    th = ctx.target.thresholds
    evidence = [ev("connection errors", int(errors), f"> {th.qdrant_connection_errors_crit:g} CRIT"),
                ev("window", round(w.seconds, 1), unit="s"), ev("window from", w.source)]
    if errors > th.qdrant_connection_errors_crit:
        return crit(f"the service had {int(errors)} Qdrant connection error(s) in the last {w.seconds:.1f}s",
                    *evidence)
    return ok("no Qdrant connection errors", *evidence)


@check("vectors.coverage", description="Every task row has its vector in the collection (after a recreate, "
       "rows without a vector are data missing). Run on demand: by --check and the vector runbooks' verify.",
       requires=("vectors.collection",), components=("qdrant", "postgres"), on_demand=True, heals=False)
def coverage(ctx: CheckContext) -> Outcome:
    cfg, table = ctx.target.qdrant, ctx.target.postgres.tasks_table

    def read() -> tuple[set[str], set[str]] | Outcome:
        rows = ctx.postgres().column_values(table, ctx.target.postgres.id_column)
        if rows.failure is not None:
            return from_failure(rows.failure, f"PostgreSQL table {table}")
        refs = ctx.qdrant().payload_ids(cfg.collection, cfg.task_id_key)
        if refs.failure is not None:
            return from_failure(refs.failure, f"the points of {cfg.collection}")
        # ids compared as text: integer, UUID or text id columns alike (a payload may hold "42" for 42)
        return ({str(x) for x in rows.value or [] if x is not None},
                {str(x) for x in refs.value or [] if isinstance(x, int | str)})

    first = read()
    if isinstance(first, Outcome):
        return first
    missing = first[0] - first[1]
    if missing:
        # the service writes a row, then its vector: only rows still without one a moment later count
        ctx.cancelled.wait(COVERAGE_RECHECK_S)
        again = read()
        if isinstance(again, Outcome):
            return again
        missing = {i for i in missing if i in again[0] and i not in again[1]}
    rows = len(first[0])
    evidence = [ev("task rows", rows), ev("rows without a vector", len(missing)),
                ev("points", len(first[1]))]
    if missing:
        evidence.append(ev("e.g.", ", ".join(sorted(missing, key=lambda i: (len(i), i))[:5])))
        return crit(f"{len(missing)} of {rows} task(s) have no vector in {cfg.collection}: their vectors are "
                    "missing (restore the collection from a backup, or re-index them)", *evidence)
    return ok(f"all {rows} task(s) have their vector in {cfg.collection}", *evidence)


#: seconds before rows without a vector are read again (a write in flight is not missing data)
COVERAGE_RECHECK_S = 2.0
