"""Qdrant probe (qdrant-client, imported lazily): a server URL, or the embedded ``local:PATH`` mode."""

from __future__ import annotations

import contextlib
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from es_doctor.probes.result import Failure, FailureKind, Result, Stopwatch, failed, guarded, short, success
from es_doctor.secrets import scrub

QDRANT_MAX_BODY = 64 * 1024 * 1024  #: the largest decoded REST answer read (a scroll page with its vectors fits)
SNAPSHOT_DEADLINE_S = 6 * 3600.0  #: a snapshot download or upload (streamed, not held in memory)


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    vector_size: int | None
    distance: str | None
    points_count: int | None
    status: str


@dataclass
class QdrantProbe:
    url: str
    api_key: str | None = None
    timeout: float = 5.0
    _client: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def embedded(self) -> bool:
        return self.url.startswith("local:")

    def _classify(self, exc: BaseException) -> Failure:
        text = short(exc)
        text = scrub(text, [self.api_key] if self.api_key else [])  # and any URL/DSN password it quotes
        name = type(exc).__name__
        lowered = text.lower()
        status = getattr(exc, "status_code", None)
        if "larger than" in lowered and "bytes (decoded)" in lowered:  # the bounded HTTP layer's cap
            return Failure(FailureKind.BAD_RESPONSE, text)
        if status == 404 or "not found" in lowered:
            return Failure(FailureKind.NOT_FOUND, text, 404)
        if "timed out" in lowered or "timeout" in name.lower():
            return Failure(FailureKind.TIMEOUT, text)
        if "refused" in lowered or name in ("ConnectError", "ConnectionRefusedError", "ResponseHandlingException"):
            return Failure(FailureKind.REFUSED, text)
        if status in (401, 403):
            return Failure(FailureKind.AUTH, text, status)
        if "already accessed by another instance" in lowered:
            return Failure(FailureKind.UNAVAILABLE, f"embedded storage is locked by another process: {text}")
        return Failure(FailureKind.ERROR, f"{name}: {text}", status)

    def client(self) -> Result[Any]:
        with self._lock:
            if self._client is not None:
                return success(self._client)

            def make() -> Any:
                from qdrant_client import QdrantClient

                if self.embedded:
                    location = self.url[len("local:"):]
                    if location == ":memory:":
                        return QdrantClient(location=":memory:")
                    return QdrantClient(path=location)
                from es_doctor.probes.http import bounded_client_args

                # every REST answer bounded: total deadline, decoded size cap (scroll pages with vectors fit)
                return QdrantClient(url=self.url, api_key=self.api_key, timeout=int(max(1, self.timeout)),
                                    check_compatibility=False,
                                    **bounded_client_args(self.url, max(1.0, self.timeout), QDRANT_MAX_BODY))

            result: Result[Any] = guarded(self._classify, make)
            if result.ok:
                self._client = result.value
            return result

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                with contextlib.suppress(Exception):  # closing is best effort
                    self._client.close()
                self._client = None

    def _call(self, fn: Any) -> Result[Any]:
        client = self.client()
        if client.failure is not None:
            return client
        return guarded(self._classify, lambda: fn(client.value))

    def collections(self) -> Result[list[str]]:
        return self._call(lambda c: sorted(col.name for col in c.get_collections().collections))

    def collection(self, name: str) -> Result[CollectionInfo]:
        def get(c: Any) -> CollectionInfo:
            info = c.get_collection(name)
            vectors = info.config.params.vectors
            size = distance = None
            if vectors is not None and hasattr(vectors, "size"):
                size, distance = int(vectors.size), str(getattr(vectors.distance, "value", vectors.distance))
            elif isinstance(vectors, dict) and vectors:
                first = next(iter(vectors.values()))
                size, distance = int(first.size), str(getattr(first.distance, "value", first.distance))
            status = str(getattr(info.status, "value", info.status))
            return CollectionInfo(name, size, distance, info.points_count, status)

        return self._call(get)

    def test_search(self, name: str, size: int, limit: int = 5) -> Result[int]:
        """A real query with a random vector; the value is the number of hits."""
        vector = [random.random() for _ in range(size)]
        watch = Stopwatch()
        result = self._call(lambda c: len(c.query_points(collection_name=name, query=vector, limit=limit).points))
        if result.failure is not None:
            return result
        return success(int(result.value or 0), watch.ms)

    def count(self, name: str) -> Result[int]:
        return self._call(lambda c: int(c.count(collection_name=name, exact=True).count))

    def marked_filter(self, id_key: str, ids: list[Any], text_key: str | None, marker: str) -> Any:
        """Points whose ``id_key`` is one of ``ids``, or whose ``text_key`` holds the word sequence ``marker``."""
        from qdrant_client import models

        should: list[Any] = []
        if ids:
            should.append(models.FieldCondition(key=id_key, match=models.MatchAny(any=ids)))
        if text_key:
            should.append(models.FieldCondition(key=text_key, match=models.MatchText(text=marker)))
        return models.Filter(should=should)

    def count_marked(self, name: str, id_key: str, ids: list[Any], text_key: str | None,
                     marker: str) -> Result[int]:
        """How many points of ``name`` carry a load test's marker (see :meth:`marked_filter`)."""
        return self._call(lambda c: int(c.count(collection_name=name, exact=True, count_filter=self.marked_filter(
            id_key, ids, text_key, marker)).count))

    def delete_marked(self, name: str, id_key: str, ids: list[Any], text_key: str | None,
                      marker: str) -> Result[int]:
        """Delete the points of a load test's records; the value is how many there were."""
        def delete(c: Any) -> int:
            flt = self.marked_filter(id_key, ids, text_key, marker)
            found = int(c.count(collection_name=name, exact=True, count_filter=flt).count)
            if found:
                from qdrant_client import models

                c.delete(collection_name=name, points_selector=models.FilterSelector(filter=flt), wait=True)
            return found

        return self._call(delete)

    def payload_ids(self, name: str, key: str, limit: int = 100_000) -> Result[list[Any]]:
        def scroll(c: Any) -> list[Any]:
            out: list[Any] = []
            offset = None
            while True:
                points, offset = c.scroll(collection_name=name, limit=1000, offset=offset, with_payload=[key],
                                          with_vectors=False)
                out.extend((p.payload or {}).get(key) for p in points)
                if offset is None or len(out) >= limit:
                    return out

        return self._call(scroll)

    def export_points(self, name: str, dest: str) -> Result[int]:
        """Every point of ``name`` (id, vector, payload) streamed as JSON lines into ``dest`` (0600);
        the value is the number of points. Memory stays flat: 256 points at a time."""
        import json
        import os

        def scroll(c: Any) -> int:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            count, offset = 0, None
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                while True:
                    points, offset = c.scroll(collection_name=name, limit=256, offset=offset, with_payload=True,
                                              with_vectors=True)
                    for point in points:
                        out.write(json.dumps({"id": point.id, "vector": point.vector, "payload": point.payload},
                                             default=str) + "\n")
                        count += 1
                    if offset is None:
                        return count

        return self._call(scroll)

    def import_points(self, name: str, source: str) -> Result[int]:
        """Upsert the points of a file written by :meth:`export_points` (256 at a time)."""
        import json

        def upsert(c: Any) -> int:
            from qdrant_client.models import PointStruct

            count, batch = 0, []
            with Path(source).open(encoding="utf-8") as lines:
                for line in lines:
                    item = json.loads(line)
                    batch.append(PointStruct(id=item["id"], vector=item["vector"], payload=item["payload"]))
                    if len(batch) == 256:
                        c.upsert(collection_name=name, points=batch, wait=True)
                        count, batch = count + len(batch), []
            if batch:
                c.upsert(collection_name=name, points=batch, wait=True)
                count += len(batch)
            return count

        return self._call(upsert)

    def create_collection(self, name: str, size: int, distance: str) -> Result[str]:
        def create(c: Any) -> str:
            from qdrant_client.models import Distance, VectorParams

            if c.collection_exists(name):
                return "already exists"
            c.create_collection(name, vectors_config=VectorParams(size=size, distance=Distance(distance)))
            return "created"

        return self._call(create)

    def delete_collection(self, name: str) -> Result[str]:
        return self._call(lambda c: (c.delete_collection(name), f"collection {name} deleted")[1])

    def snapshot(self, name: str) -> Result[str]:
        """A snapshot of collection ``name``; returns its name."""
        return self._call(lambda c: str(c.create_snapshot(collection_name=name, wait=True).name))

    def recover(self, name: str, location: str) -> Result[str]:
        return self._call(lambda c: (c.recover_snapshot(collection_name=name, location=location, wait=True),
                                     f"collection {name} recovered from {location}")[1])

    def digest(self, name: str) -> Result[tuple[int, str, float]]:
        """(points, sha256 over every point's id and payload in id order, the sum of every vector
        component): what a backup records and a restore is compared with. Vectors are summed, not
        hashed: Qdrant normalises Cosine vectors again when points are re-inserted, which may move
        a float by its last bit; the sum is compared with a tolerance."""
        import hashlib
        import json

        def scroll(c: Any) -> tuple[int, str, float]:
            rows: list[tuple[str, str]] = []
            total = 0.0
            offset = None
            while True:
                points, offset = c.scroll(collection_name=name, limit=256, offset=offset, with_payload=True,
                                          with_vectors=True)
                for p in points:
                    vectors = p.vector.values() if isinstance(p.vector, dict) else [p.vector]
                    total += sum(float(x) for v in vectors if isinstance(v, list) for x in v)
                    rows.append((str(p.id), json.dumps(p.payload, sort_keys=True, default=str)))
                if offset is None:
                    break
            h = hashlib.sha256()
            for point_id, body in sorted(rows):
                h.update(f"{point_id}\t{body}\n".encode())
            return len(rows), h.hexdigest(), total

        return self._call(scroll)

    # Snapshot files travel over Qdrant's REST API (qdrant-client has no download or upload call).
    def _rest(self, deadline_s: float | None = None, max_body: int | None = QDRANT_MAX_BODY) -> Any:
        from es_doctor.probes.http import bounded_client

        headers = {"api-key": self.api_key} if self.api_key else {}
        return bounded_client(self.url.rstrip("/"), deadline_s=deadline_s or max(self.timeout, 30.0),
                              max_body=max_body, headers=headers, base_url=True)

    def download_snapshot(self, name: str, snapshot: str, dest: str,
                          cancel: threading.Event | None = None) -> Result[int]:
        """Stream snapshot ``snapshot`` of collection ``name`` into the file ``dest``; the value is its size.
        Bounded by SNAPSHOT_DEADLINE_S and stopped by ``cancel``; a failed download leaves no file."""
        from urllib.parse import quote

        def fetch() -> int:
            size = 0
            try:
                with self._rest(SNAPSHOT_DEADLINE_S, None) as http, http.stream(
                        "GET", f"/collections/{quote(name, safe='')}/snapshots/{quote(snapshot, safe='')}") as resp:
                    resp.raise_for_status()
                    with Path(dest).open("wb") as out:
                        for chunk in resp.iter_bytes(1 << 20):
                            if cancel is not None and cancel.is_set():
                                break
                            out.write(chunk)
                            size += len(chunk)
            except BaseException:
                Path(dest).unlink(missing_ok=True)
                raise
            if cancel is not None and cancel.is_set():
                Path(dest).unlink(missing_ok=True)
                raise InterruptedError("download interrupted")
            return size

        if self.embedded:
            return not_configured("the embedded Qdrant has no snapshot API")
        return guarded(self._classify, fetch)

    def delete_snapshot(self, name: str, snapshot: str) -> Result[str]:
        from urllib.parse import quote

        def delete() -> str:
            with self._rest() as http:
                http.delete(f"/collections/{quote(name, safe='')}/snapshots/{quote(snapshot, safe='')}",
                            params={"wait": "true"}).raise_for_status()
            return f"snapshot {snapshot} deleted"

        return guarded(self._classify, delete)

    def upload_snapshot(self, name: str, path: str) -> Result[str]:
        """Recreate collection ``name`` from the snapshot file ``path`` (its points replace the live ones)."""
        from urllib.parse import quote

        def upload() -> str:
            with self._rest(SNAPSHOT_DEADLINE_S) as http, Path(path).open("rb") as fh:
                http.post(f"/collections/{quote(name, safe='')}/snapshots/upload",
                          params={"priority": "snapshot", "wait": "true"},
                          files={"snapshot": (Path(path).name, fh, "application/octet-stream")},
                          ).raise_for_status()
            return f"collection {name} recovered from {Path(path).name}"

        if self.embedded:
            return not_configured("the embedded Qdrant has no snapshot API")
        return guarded(self._classify, upload)


def not_configured(reason: str) -> Result[Any]:
    return failed(FailureKind.UNAVAILABLE, reason)
