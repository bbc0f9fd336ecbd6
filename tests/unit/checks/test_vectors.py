"""Class 3, 'Erreurs de Vectorisation': Qdrant, the collection, its dimensions, search, insert errors."""

from __future__ import annotations

import pytest
from fakes import FakeContext, FakePostgres, FakeQdrant, collection_info, covers, evidence, expect, exposition, refused

from es_doctor.checks import vectors
from es_doctor.checks.registry import load_all
from es_doctor.findings import Status
from es_doctor.probes.result import Failure, FailureKind
from es_doctor.runner import select

OPS = "email_sender_vector_operations_total"
CONN = "email_sender_qdrant_connection_errors_total"


# --------------------------------------------------------------------------- vectors.qdrant


@covers("vectors.qdrant", Status.OK)
def test_qdrant_reachable() -> None:
    out = expect(FakeContext(qdrant=FakeQdrant()), "vectors.qdrant", Status.OK, "http://localhost:6333")
    assert evidence(out)["collections"] == ["task_vectors"]


@covers("vectors.qdrant", Status.CRIT)
def test_qdrant_unreachable() -> None:
    expect(FakeContext(qdrant=FakeQdrant(names=refused("http://localhost:6333"))), "vectors.qdrant", Status.CRIT,
           "unreachable", cure="dependency-restart component=qdrant")


@covers("vectors.qdrant", Status.UNKNOWN)
def test_qdrant_strange_answer() -> None:
    expect(FakeContext(qdrant=FakeQdrant(names=Failure(FailureKind.BAD_RESPONSE, "not JSON"))), "vectors.qdrant",
           Status.UNKNOWN, "does not follow the contract")


def test_qdrant_collection_list_is_read_once_per_run() -> None:
    """startup.qdrant, vectors.qdrant and vectors.collection share one listing (the context's memo)."""
    qdrant = FakeQdrant()
    ctx = FakeContext(qdrant=qdrant)
    for check_id in ("startup.qdrant", "vectors.qdrant", "vectors.collection"):
        expect(ctx, check_id, Status.OK)
    assert qdrant.calls.count("collections") == 1


# --------------------------------------------------------------------------- vectors.collection


@covers("vectors.collection", Status.OK)
def test_collection_exists() -> None:
    expect(FakeContext(qdrant=FakeQdrant(names=["other", "task_vectors"])), "vectors.collection", Status.OK,
           "task_vectors exists")


@covers("vectors.collection", Status.CRIT)
def test_collection_missing() -> None:
    out = expect(FakeContext(qdrant=FakeQdrant(names=["other"])), "vectors.collection", Status.CRIT,
                 "task_vectors does not exist", cure="qdrant-collection-recreate")
    assert evidence(out)["collections"] == ["other"]


@covers("vectors.collection", Status.CRIT)
def test_collection_qdrant_down_when_called_alone() -> None:
    """Run alone it reads CRIT; in a run, vectors.qdrant fails on the same listing first and this one is
    SKIP (test_runner_skips.py), so the destructive recreate is never suggested for an outage."""
    expect(FakeContext(qdrant=FakeQdrant(names=refused())), "vectors.collection", Status.CRIT, "Qdrant",
           cure="qdrant-collection-recreate")


@covers("vectors.collection", Status.UNKNOWN)
def test_collection_list_unusable() -> None:
    expect(FakeContext(qdrant=FakeQdrant(names=Failure(FailureKind.BAD_RESPONSE, "not JSON"))), "vectors.collection",
           Status.UNKNOWN, "does not follow the contract")


# --------------------------------------------------------------------------- vectors.dimensions


def dims(**changes: object) -> FakeContext:
    return FakeContext(qdrant=FakeQdrant(infos={"task_vectors": collection_info(**changes)}))


@covers("vectors.dimensions", Status.OK)
@pytest.mark.parametrize("changes", [{}, {"distance": "cosine"}, {"status": "grey"}, {"status": "GREEN"}])
def test_dimensions_as_configured(changes: dict[str, object]) -> None:
    out = expect(dims(**changes), "vectors.dimensions", Status.OK, "1536 dimensions", "1200 points")
    assert evidence(out)["size"] == 1536


@covers("vectors.dimensions", Status.CRIT)
def test_dimensions_wrong_size() -> None:
    out = expect(dims(vector_size=768), "vectors.dimensions", Status.CRIT, "size 768, expected 1536",
                 cure="qdrant-dimension-fix")
    assert evidence(out)["size"] == 768


@covers("vectors.dimensions", Status.CRIT)
def test_dimensions_wrong_distance_and_size_both_named() -> None:
    expect(dims(vector_size=384, distance="Dot"), "vectors.dimensions", Status.CRIT,
           "size 384, expected 1536; distance Dot, expected Cosine", cure="qdrant-dimension-fix")


@covers("vectors.dimensions", Status.CRIT)
def test_dimensions_unknown_size_is_not_the_configured_one() -> None:
    expect(dims(vector_size=None, distance=None), "vectors.dimensions", Status.CRIT, "size None",
           cure="qdrant-dimension-fix")


@covers("vectors.dimensions", Status.WARN)
@pytest.mark.parametrize("state", ["yellow", "red"])
def test_dimensions_collection_not_green(state: str) -> None:
    """A collection that is optimizing or failed is not a dimension problem: no destructive fix, an expert."""
    expect(dims(status=state), "vectors.dimensions", Status.WARN, f"status is {state}", cause="not-green",
           cure=None, escalate=3)


@covers("vectors.dimensions", Status.UNKNOWN, Status.CRIT)
def test_dimensions_collection_info_unreadable() -> None:
    ctx = FakeContext(qdrant=FakeQdrant(infos={"task_vectors": Failure(FailureKind.BAD_RESPONSE, "bad")}))
    expect(ctx, "vectors.dimensions", Status.UNKNOWN, "collection task_vectors")
    ctx = FakeContext(qdrant=FakeQdrant(infos={"task_vectors": refused()}))
    expect(ctx, "vectors.dimensions", Status.CRIT, "unreachable", cure="qdrant-dimension-fix")


# --------------------------------------------------------------------------- vectors.search


@covers("vectors.search", Status.OK)
def test_search_median_of_three_after_a_warm_up() -> None:
    """The warm-up (connection set-up) is not timed, and one slow answer of three is not the latency."""
    qdrant = FakeQdrant(searches=[(5, 900.0), (5, 4.0), (5, 300.0), (5, 6.0)])
    out = expect(FakeContext(qdrant=qdrant), "vectors.search", Status.OK, "6.0 ms", "median of 3", "5 hits")
    assert evidence(out)["latency"] == 6.0
    assert evidence(out)["searches"] == "4.0, 300.0, 6.0"
    assert qdrant.calls.count("search task_vectors 1536") == 4


@covers("vectors.search", Status.OK, Status.WARN)
def test_search_over_50_ms_warns() -> None:
    expect(FakeContext(qdrant=FakeQdrant(searches=[(5, 50.0)])), "vectors.search", Status.OK)
    out = expect(FakeContext(qdrant=FakeQdrant(searches=[(5, 80.0)])), "vectors.search", Status.WARN, "80.0 ms",
                 cure="vector-cache-tune")
    assert evidence(out)["latency"] == 80.0


@covers("vectors.search", Status.CRIT)
def test_search_collection_not_found() -> None:
    failure = Failure(FailureKind.NOT_FOUND, "Collection `task_vectors` doesn't exist!")
    expect(FakeContext(qdrant=FakeQdrant(searches=[failure])), "vectors.search", Status.CRIT,
           "test search failed", "doesn't exist", cure="vector-cache-tune")


@covers("vectors.search", Status.CRIT, Status.UNKNOWN)
def test_search_errors() -> None:
    expect(FakeContext(qdrant=FakeQdrant(searches=[refused()])), "vectors.search", Status.CRIT, "unreachable",
           cure="vector-cache-tune")
    bad = Failure(FailureKind.ERROR, "Wrong input: Vector dimension error: expected dim: 768, got 1536")
    expect(FakeContext(qdrant=FakeQdrant(searches=[bad])), "vectors.search", Status.UNKNOWN, "test search")


# --------------------------------------------------------------------------- vectors.insert-errors


def ops(insert_ok: float, insert_err: float, search_err: float = 0) -> str:
    return exposition({f'{OPS}{{op="insert",result="ok"}}': insert_ok,
                       f'{OPS}{{op="insert",result="error"}}': insert_err,
                       f'{OPS}{{op="search",result="ok"}}': 5000,
                       f'{OPS}{{op="search",result="error"}}': search_err})


@covers("vectors.insert-errors", Status.OK)
def test_insert_errors_at_the_threshold_is_ok() -> None:
    out = expect(FakeContext(metrics=(ops(10_000, 50), ops(10_999, 51))), "vectors.insert-errors", Status.OK,
                 "0.10 %", "1 of 1000")
    assert evidence(out)["inserts"] == 1000


@covers("vectors.insert-errors", Status.WARN)
def test_insert_errors_over_threshold() -> None:
    out = expect(FakeContext(metrics=(ops(10_000, 0), ops(10_990, 10))), "vectors.insert-errors", Status.WARN,
                 "1.00 %", "10 of 1000", cure="qdrant-dimension-fix")
    assert evidence(out)["inserts"] == 1000 and evidence(out)["lower bound"] > 0.1


@covers("vectors.insert-errors", Status.OK)
def test_two_failed_inserts_in_a_thousand_are_not_significant() -> None:
    """0.2 % measured, but its Wilson lower bound (0.05 %) is under the 0.1 % threshold: not a WARN."""
    expect(FakeContext(metrics=(ops(10_000, 0), ops(10_998, 2))), "vectors.insert-errors", Status.OK,
           "0.20 %", "2 of 1000", "not significantly")


@covers("vectors.insert-errors", Status.WARN)
@pytest.mark.parametrize("failure", [refused("http://localhost:6333"), Failure(FailureKind.TIMEOUT, "timed out")])
def test_insert_errors_while_qdrant_is_down_point_at_qdrant(failure: Failure) -> None:
    ctx = FakeContext(metrics=(ops(10_000, 0), ops(10_000, 1000)), qdrant=FakeQdrant(names=failure))
    expect(ctx, "vectors.insert-errors", Status.WARN, "100.00 %", "a consequence: Qdrant is unreachable",
           cause="qdrant-down", cure="dependency-restart component=qdrant")


@covers("vectors.insert-errors", Status.WARN)
def test_insert_errors_while_the_collection_is_missing_point_at_recreating_it() -> None:
    """Not at the (destructive) dimension fix: the collection is gone, recreate it."""
    ctx = FakeContext(metrics=(ops(10_000, 0), ops(10_000, 1000)), qdrant=FakeQdrant(names=["other"]))
    expect(ctx, "vectors.insert-errors", Status.WARN, "a consequence: the collection task_vectors does not exist",
           cause="collection-missing", cure="qdrant-collection-recreate")


@covers("vectors.insert-errors", Status.WARN)
def test_insert_errors_postgres_down_is_not_their_cause() -> None:
    ctx = FakeContext(metrics=(ops(10_000, 0), ops(10_990, 10)), qdrant=FakeQdrant(),
                      postgres=FakePostgres(refused()))
    expect(ctx, "vectors.insert-errors", Status.WARN, "1.00 %", cure="qdrant-dimension-fix")


@covers("vectors.insert-errors", Status.OK)
def test_insert_errors_ignore_search_errors_and_old_errors() -> None:
    expect(FakeContext(metrics=(ops(100, 900, 0), ops(200, 900, 400))), "vectors.insert-errors", Status.OK, "0.00 %")


@covers("vectors.insert-errors", Status.OK)
def test_insert_errors_no_inserts() -> None:
    expect(FakeContext(metrics=(ops(100, 1), ops(100, 1))), "vectors.insert-errors", Status.OK,
           "too few inserts to grade: 0")


@covers("vectors.insert-errors", Status.UNKNOWN)
def test_insert_errors_without_metrics() -> None:
    expect(FakeContext(metrics=refused()), "vectors.insert-errors", Status.UNKNOWN, "cannot read the vector metrics")
    text = exposition({"email_sender_event_bus_queue_depth": 1})
    expect(FakeContext(metrics=(text, text)), "vectors.insert-errors", Status.UNKNOWN, f"exposes no {OPS}")


# --------------------------------------------------------------------------- vectors.connection-errors


@covers("vectors.connection-errors", Status.OK)
def test_connection_errors_none_new() -> None:
    """Errors from before the window (a past outage) do not count."""
    text = exposition({CONN: 42})
    out = expect(FakeContext(metrics=(text, text)), "vectors.connection-errors", Status.OK, "no Qdrant connection")
    assert evidence(out)["connection errors"] == 0


@covers("vectors.connection-errors", Status.CRIT)
def test_connection_errors_any_is_crit() -> None:
    out = expect(FakeContext(metrics=(exposition({CONN: 42}), exposition({CONN: 43}))), "vectors.connection-errors",
                 Status.CRIT, "1 Qdrant connection error(s)", cure="dependency-restart component=qdrant")
    assert evidence(out)["connection errors"] == 1


@covers("vectors.connection-errors", Status.UNKNOWN)
def test_connection_errors_without_metrics() -> None:
    expect(FakeContext(metrics=refused()), "vectors.connection-errors", Status.UNKNOWN,
           "cannot read the vector metrics")
    text = exposition({"email_sender_event_bus_queue_depth": 1})
    expect(FakeContext(metrics=(text, text)), "vectors.connection-errors", Status.UNKNOWN, f"exposes no {CONN}")


# --------------------------------------------------------------------------- vectors.coverage (on demand)


@pytest.fixture
def no_recheck_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectors, "COVERAGE_RECHECK_S", 0.0)


def test_coverage_runs_only_on_demand() -> None:
    spec = load_all()["vectors.coverage"]
    assert spec.on_demand and not spec.heals
    assert "vectors.coverage" not in {s.id for s in select()}
    assert "vectors.coverage" in {s.id for s in select(["vectors.coverage"])}


@covers("vectors.coverage", Status.OK)
def test_coverage_every_task_has_its_vector(no_recheck_wait: None) -> None:
    qdrant = FakeQdrant(task_ids=[[*range(1, 11), None, "x", "12"]])  # points of other tasks, odd payloads
    out = expect(FakeContext(qdrant=qdrant, postgres=FakePostgres()), "vectors.coverage", Status.OK,
                 "all 10 task(s) have their vector")
    assert evidence(out) == {"task rows": 10, "rows without a vector": 0, "points": 12}


@covers("vectors.coverage", Status.CRIT)
def test_coverage_tasks_without_vectors(no_recheck_wait: None) -> None:
    qdrant = FakeQdrant(task_ids=[[1, 2, 3]])
    out = expect(FakeContext(qdrant=qdrant, postgres=FakePostgres()), "vectors.coverage", Status.CRIT,
                 "7 of 10 task(s) have no vector in task_vectors", cure="qdrant-collection-restore")
    assert evidence(out)["e.g."] == "4, 5, 6, 7, 8"
    assert qdrant.calls.count("scroll task_vectors task_id") == 2  # read again before calling it missing


@covers("vectors.coverage", Status.OK, Status.CRIT)
def test_coverage_a_vector_written_meanwhile_is_not_missing(no_recheck_wait: None) -> None:
    qdrant = FakeQdrant(task_ids=[list(range(1, 10)), list(range(1, 11))])
    expect(FakeContext(qdrant=qdrant, postgres=FakePostgres()), "vectors.coverage", Status.OK)
    # a row deleted meanwhile is not missing either; a row still without its vector is
    postgres = FakePostgres(ids=[list(range(1, 11)), [1, 2, 3, 5]])
    qdrant = FakeQdrant(task_ids=[[1, 2], [1, 2, 3]])
    out = expect(FakeContext(qdrant=qdrant, postgres=postgres), "vectors.coverage", Status.CRIT, "1 of 10",
                 cure="qdrant-collection-restore")
    assert evidence(out)["e.g."] == "5"


@covers("vectors.coverage", Status.CRIT, Status.UNKNOWN)
def test_coverage_unreadable(no_recheck_wait: None) -> None:
    expect(FakeContext(qdrant=FakeQdrant(), postgres=FakePostgres(ids=[refused()])), "vectors.coverage",
           Status.CRIT, "PostgreSQL table tasks: unreachable", cure="qdrant-collection-restore")
    missing_table = Failure(FailureKind.NOT_FOUND, 'relation "tasks" does not exist')
    expect(FakeContext(qdrant=FakeQdrant(), postgres=FakePostgres(ids=[missing_table])), "vectors.coverage",
           Status.UNKNOWN, "PostgreSQL table tasks")
    expect(FakeContext(qdrant=FakeQdrant(task_ids=[Failure(FailureKind.BAD_RESPONSE, "bad")]),
                       postgres=FakePostgres()), "vectors.coverage", Status.UNKNOWN, "the points of task_vectors")


def test_coverage_with_uuid_task_ids(no_recheck_wait: None) -> None:
    ids = ["7f9c0a52-0d1b-4f4e-9a51-2b4c3f6c1e01", "0b8e2c77-5a3d-4c1e-8f2a-9d6b1e4a7c02"]
    ctx = FakeContext(qdrant=FakeQdrant(task_ids=[list(ids)]), postgres=FakePostgres(ids=[list(ids)]))
    expect(ctx, "vectors.coverage", Status.OK, "all 2 task(s)")
