"""A load test's cleanup deletes only what the run created (issue 24 item 1): a record must carry one of the
ids the API answered *and* the run's marker. Real PostgreSQL (the harness's server) and a real Qdrant
engine (qdrant-client's local mode, which the lab's Qdrant serves too); seed records stay whatever ids the
API claimed."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from es_doctor.probes.postgres import PostgresProbe
from es_doctor.probes.qdrant import QdrantProbe

pytestmark = pytest.mark.integration

MARKER = "es-doctor-load-0123abcd"


def test_postgres_cleanup_keeps_rows_whose_id_or_marker_disagree(postgres_server: str) -> None:
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS cleanup_tasks")
        conn.execute("CREATE TABLE cleanup_tasks (id bigint PRIMARY KEY, title text)")
        rows = [(1, "seed one"), (2, "seed two"), (3, "seed three"), (10, f"{MARKER} task 0"),
                (11, f"{MARKER} task 1"), (12, f"{MARKER} task 2"), (13, None)]
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO cleanup_tasks VALUES (%s, %s)", rows)
    probe = PostgresProbe(postgres_server, None, 10)
    # the API answered ids 1, 2 (seed rows: not the run's), 10, 11 (the run's) and 13 (no title at all);
    # row 12 carries the marker but its id was never answered
    got = probe.delete_marked("cleanup_tasks", "id", [1, 2, 10, 11, 13], "title", MARKER)
    assert got.failure is None and got.value is not None, got.failure
    with psycopg.connect(postgres_server) as conn:
        left = [r[0] for r in conn.execute("SELECT id FROM cleanup_tasks ORDER BY id")]
    assert left == [1, 2, 3, 12, 13]
    assert (got.value.removed, got.value.id_without_marker, got.value.marker_without_id) == (2, 3, 1)
    # no title column: nothing can be proven to be the run's, nothing goes
    got = probe.delete_marked("cleanup_tasks", "id", [1, 2, 3, 12], None, MARKER)
    assert got.value is not None and got.value.removed == 0 and "nothing deleted" in got.value.note
    with psycopg.connect(postgres_server) as conn:
        assert conn.execute("SELECT count(*) FROM cleanup_tasks").fetchone() == (5,)


def test_qdrant_cleanup_keeps_points_whose_id_or_marker_disagree(tmp_path: Path) -> None:
    from qdrant_client import models

    probe = QdrantProbe(f"local:{tmp_path / 'q'}", None, 10)
    client = probe.client().unwrap()
    client.create_collection("tasks", vectors_config=models.VectorParams(size=2, distance=models.Distance.COSINE))
    titles = {1: "seed one", 2: "seed two", 10: f"{MARKER} task 0", 11: f"{MARKER} task 1",
              12: f"{MARKER} task 2"}
    client.upsert("tasks", points=[models.PointStruct(id=i, vector=[1.0, float(i)], payload={
        "task_id": i, "title": t}) for i, t in titles.items()], wait=True)
    got = probe.delete_marked("tasks", "task_id", [1, 2, 10, 11], "title", MARKER)
    assert got.failure is None and got.value is not None, got.failure
    left = sorted(p.id for p in client.scroll("tasks", limit=100)[0])
    assert left == [1, 2, 12]
    assert (got.value.removed, got.value.id_without_marker, got.value.marker_without_id) == (2, 2, 1)
