"""A load test from start to end: is the target the lab (or did the operator say ``--yes``), does its API
answer, the run itself, the grade, and the removal of the records it wrote.

Test data. The service's API (STACK.md) creates tasks but has no delete. Every task a load test creates
is titled ``es-doctor-load-<run id> task <n>``; afterwards es-doctor removes them from the stores the
target configures: first the vectors (Qdrant ``<collection>``: points whose ``task_id`` payload is one of
the ids the API returned, or whose ``title`` payload holds the marker), then the rows (PostgreSQL
``<tasks_table>``: id one of those ids, or title starting with the marker), so no vector is ever left
pointing at a missing task. What could not be removed is named, with how to remove it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from es_doctor.errors import UnavailableError, UsageError
from es_doctor.load.plan import Op, Plan
from es_doctor.load.stats import LoadResult, Recorder, grade, result

if TYPE_CHECKING:
    from es_doctor.config import Target
    from es_doctor.probes.result import MarkedCleanup
    from es_doctor.probes.session import ProbeSession


def lab_identity(session: ProbeSession) -> str | None:
    """Why the target's API is the lab's (it serves ``GET /_lab/faults`` with a list), else None."""
    api = session.service()
    answer = session.http().get_json(api.url("/_lab/faults"), timeout=5.0)
    if answer.failure is None and isinstance(answer.value, dict) and isinstance(answer.value.get("faults"), list):
        return f"{api.base} serves the lab's /_lab/faults"
    return None


def authorise(session: ProbeSession, target: Target, target_name: str, yes: bool) -> str:
    """The reason this run may go on; a usage error (exit 64) for a target that is not the lab without --yes."""
    if yes:
        return "--yes"
    if not target.load.lab:
        raise UsageError(f"target '{target_name}' is not the lab (its configuration does not say load.lab: true): "
                         "a load test loads a live service and writes test records to it; pass --yes to run it "
                         "anyway")
    proof = lab_identity(session)
    if proof is None:
        raise UsageError(f"target '{target_name}' says load.lab: true, but {target.service.api_url} does not "
                         "answer GET /_lab/faults like the lab: not running it without --yes")
    return proof


def preflight(session: ProbeSession, target_name: str) -> None:
    """The API must answer before it is loaded: refused, timed out or 5xx on /health is exit 69."""
    health = session.service().health()
    if health.failure is not None:
        raise UnavailableError(f"target '{target_name}': the API does not answer /health ({health.failure}): "
                               "nothing to load-test")


def headers(target: Target) -> dict[str, str]:
    from es_doctor.probes.session import service_headers

    return service_headers(target)


def run(plan: Plan, target: Target, stop: threading.Event, on_tick: Callable[[Recorder, float], None] | None = None,
        rec: Recorder | None = None) -> Recorder:
    """Send the plan's requests (blocking) until the end or ``stop``; the recorder holds the outcome."""
    from es_doctor.probes.load import run_load

    recorder = rec or Recorder(plan)
    tick = None if on_tick is None else (lambda elapsed: on_tick(recorder, elapsed))
    run_load(plan, target.service.api_url.rstrip("/"), headers(target), recorder, stop, tick)
    return recorder


def graded(rec: Recorder, target: Target, target_name: str) -> LoadResult:
    th = target.thresholds
    grades = grade(rec, th.latency_p95_warn_ms, th.latency_p95_crit_ms, th.error_rate_warn_pct,
                   th.error_rate_crit_pct)
    return result(rec, target_name, grades)


def _disagreements(store: str, noun: str, done: MarkedCleanup) -> list[str]:
    """The records a cleanup kept because its ids and its marker disagree (or it could prove nothing)."""
    out = [f"{store}: {done.note}"] if done.note else []
    if done.id_without_marker:
        out.append(f"{store}: {done.id_without_marker} {noun}(s) carry an id the API answered but not this run's "
                   "marker: kept (not this run's record; check what the API returned)")
    if done.marker_without_id:
        out.append(f"{store}: {done.marker_without_id} {noun}(s) carry this run's marker but no id the API "
                   "answered: kept (delete them by hand once checked)")
    return out


def remove_test_data(session: ProbeSession, target: Target, plan: Plan, rec: Recorder) -> dict[str, Any]:
    """Remove the records the run wrote (vectors, then rows); what was done, per store, and what is left."""
    wrote = Op.CREATE in rec.ops
    report: dict[str, Any] = {"marker": plan.marker, "tasks_created": len(rec.created_ids),
                              "creations_without_id": rec.creates_unanswered, "removed": {}, "left": []}
    if not wrote:
        report["note"] = "this run created no task"
        return report
    ids: list[Any] = list(rec.created_ids)
    qdrant_present, why_not = target.is_present("qdrant")
    q = target.qdrant
    if qdrant_present:
        got = session.qdrant().delete_marked(q.collection, q.task_id_key, ids, target.load.title_key, plan.marker)
        if got.failure is None and got.value is not None:
            report["removed"]["qdrant"] = got.value.removed
            report["left"].extend(_disagreements(f"qdrant {q.collection}", "point", got.value))
        else:
            report["left"].append(f"qdrant {q.collection}: not removed ({got.failure}); delete the points whose "
                                  f"payload {target.load.title_key or q.task_id_key} names '{plan.marker}'")
    else:
        report["removed"]["qdrant"] = f"skipped: {why_not}"
    pg_present, why_not = target.is_present("postgres")
    pg = target.postgres
    if pg_present:
        got = session.postgres().delete_marked(pg.tasks_table, pg.id_column, ids, target.load.title_column,
                                               plan.marker)
        if got.failure is None and got.value is not None:
            report["removed"]["postgres"] = got.value.removed
            report["left"].extend(_disagreements(f"postgres {pg.tasks_table}", "row", got.value))
        else:
            column = target.load.title_column or "title"
            advice = " ".join(("DELETE FROM", pg.tasks_table, "WHERE", column, f"LIKE '{plan.marker} %'"))
            report["left"].append(f"postgres {pg.tasks_table}: not removed ({got.failure}); {advice}")
    else:
        report["removed"]["postgres"] = f"skipped: {why_not}"
    if not qdrant_present and not pg_present:
        report["left"].append(f"the task(s) titled '{plan.marker} …': the target configures neither Qdrant nor "
                              "PostgreSQL, and the API has no delete")
    return report
