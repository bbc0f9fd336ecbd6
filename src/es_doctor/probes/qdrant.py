"""Qdrant probe: a server URL, or the embedded ``local:PATH`` mode.

On a server URL, what diagnose reads (the collection list, one collection, a test search, a count,
the task ids of the points) goes over Qdrant's REST API with es-doctor's bounded HTTP layer (one
keep-alive client per probe): no qdrant-client import (about 0.5 s of CPU: numpy, grpc, its
generated models) for a read-only diagnosis. qdrant-client (imported lazily) serves the embedded
mode, and the writes and dumps of runbooks and backups (points export/import, create, delete,
snapshots, digests)."""

from __future__ import annotations

import contextlib
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from es_doctor.probes.result import (
    Failure,
    FailureKind,
    MarkedCleanup,
    Result,
    Stopwatch,
    failed,
    guarded,
    short,
    success,
)
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
    _reader: Any = field(default=None, init=False, repr=False)
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
        if isinstance(exc, RestStatusError):  # a REST answer: its status says what it is
            if status == 404:
                return Failure(FailureKind.NOT_FOUND, text, 404)
            if status in (401, 403):
                return Failure(FailureKind.AUTH, text, status)
            return Failure(FailureKind.ERROR, f"{name}: {text}", status)
        if "larger than" in lowered and "bytes (decoded)" in lowered:  # the bounded HTTP layer's cap
            return Failure(FailureKind.BAD_RESPONSE, text)
        if status == 404 or "not found" in lowered:
            return Failure(FailureKind.NOT_FOUND, text, 404)
        if "timed out" in lowered or "timeout" in name.lower():
            return Failure(FailureKind.TIMEOUT, text)
        if "refused" in lowered or name in ("ConnectError", "ConnectionRefusedError", "ResponseHandlingException",
                                            "RemoteProtocolError", "ReadError", "WriteError"):
            return Failure(FailureKind.REFUSED, text)
        if status in (401, 403):
            return Failure(FailureKind.AUTH, text, status)
        if "already accessed by another instance" in lowered:
            return Failure(FailureKind.UNAVAILABLE, f"embedded storage is locked by another process: {text}")
        if isinstance(exc, RestAnswerError):
            return Failure(FailureKind.BAD_RESPONSE, text)
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
            for held in (self._client, self._reader):
                if held is not None:
                    with contextlib.suppress(Exception):  # closing is best effort
                        held.close()
            self._client = self._reader = None

    # ---- REST reads (server URL): the bounded HTTP layer, no qdrant-client
    def _read_client(self) -> Any:
        with self._lock:
            if self._reader is None:
                self._reader = self._rest(max(1.0, self.timeout))
            return self._reader

    def _read(self, method: str, path: str, body: Any = None) -> Result[Any]:
        """One REST call; the value is the answer's ``result``. A non-2xx answer raises
        :class:`RestStatusError` (classified like qdrant-client's), an answer off the API
        :class:`RestAnswerError` (BAD_RESPONSE)."""
        from es_doctor.probes.http import parse_json

        def call() -> Any:
            response = self._read_client().request(method, path, json=body)
            raw = response.content
            if not 200 <= response.status_code < 300:
                raise RestStatusError(response.status_code, raw.decode("utf-8", "replace"))
            try:
                data = parse_json(raw)
            except ValueError as exc:
                raise RestAnswerError(f"{method} {path}: not JSON: {short(exc)}") from None
            if not isinstance(data, dict) or "result" not in data:
                raise RestAnswerError(f"{method} {path}: no 'result' in the answer")
            return data["result"]

        return guarded(self._classify, call)

    def _call(self, fn: Any) -> Result[Any]:
        client = self.client()
        if client.failure is not None:
            return client
        return guarded(self._classify, lambda: fn(client.value))

    def collections(self) -> Result[list[str]]:
        if not self.embedded:
            return _then(self._read("GET", "/collections"), _collection_names)
        return self._call(lambda c: sorted(col.name for col in c.get_collections().collections))

    def collection(self, name: str) -> Result[CollectionInfo]:
        if not self.embedded:
            return _then(self._read("GET", f"/collections/{_quoted(name)}"), lambda r: _collection_info(name, r))

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
        if not self.embedded:
            result = _then(self._read("POST", f"/collections/{_quoted(name)}/points/query",
                                      {"query": vector, "limit": limit}), _query_hits)
            if result.failure is not None and result.failure.kind is FailureKind.NOT_FOUND \
                    and "collection" not in result.failure.message.lower():
                # a Qdrant older than 1.10 has no /points/query: its /points/search answers a list
                watch = Stopwatch()
                result = _then(self._read("POST", f"/collections/{_quoted(name)}/points/search",
                                          {"vector": vector, "limit": limit}), _search_hits)
        else:
            result = self._call(lambda c: len(c.query_points(collection_name=name, query=vector,
                                                               limit=limit).points))
        if result.failure is not None:
            return result
        return success(int(result.value or 0), watch.ms)

    def count(self, name: str) -> Result[int]:
        if not self.embedded:
            return _then(self._read("POST", f"/collections/{_quoted(name)}/points/count", {"exact": True}),
                         lambda r: _integer(r, "count"))
        return self._call(lambda c: int(c.count(collection_name=name, exact=True).count))

    def marked_filter(self, id_key: str, ids: list[Any], text_key: str | None, marker: str) -> Any:
        """Points whose ``id_key`` is one of ``ids``, or whose ``text_key`` holds the word sequence ``marker``
        (for counting what a run may have left; deletion needs both: :meth:`delete_marked`)."""
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
                      marker: str) -> Result[MarkedCleanup]:
        """Delete the points of a load test's records: ``id_key`` one of ``ids`` *and* ``text_key`` holding
        ``marker``. A point with one but not the other is counted and kept; with no ``text_key`` or no ids
        nothing is deleted (no point can be proven to be the run's)."""
        if not text_key or not ids:
            why = "no load.title_key" if not text_key else "the API answered no id"
            return success(MarkedCleanup(0, note=f"{why}: no point can be proven to be this run's; nothing deleted"))

        def delete(c: Any) -> MarkedCleanup:
            from qdrant_client import models

            wanted = {str(i) for i in ids}
            both: list[Any] = []
            id_only = marker_only = 0
            offset = None
            while True:  # one pass over the points carrying an id or the marker (a text filter scans)
                points, offset = c.scroll(collection_name=name, limit=1000, offset=offset,
                                          scroll_filter=self.marked_filter(id_key, ids, text_key, marker),
                                          with_payload=[id_key, text_key], with_vectors=False)
                for point in points:
                    payload = point.payload or {}
                    has_id = str(payload.get(id_key)) in wanted
                    marked = marker in str(payload.get(text_key) or "").split()
                    if has_id and marked:
                        both.append(point.id)
                    elif has_id:
                        id_only += 1
                    elif marked:
                        marker_only += 1
                if offset is None:
                    break
            if both:
                c.delete(collection_name=name, points_selector=models.PointIdsList(points=both), wait=True)
            return MarkedCleanup(len(both), id_only, marker_only)

        return self._call(delete)

    def payload_ids(self, name: str, key: str, limit: int = 100_000) -> Result[list[Any]]:
        if not self.embedded:
            return self._rest_payload_ids(name, key, limit)

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

    def _rest_payload_ids(self, name: str, key: str, limit: int) -> Result[list[Any]]:
        out: list[Any] = []
        offset: Any = None
        watch = Stopwatch()
        while True:
            page = self._read("POST", f"/collections/{_quoted(name)}/points/scroll",
                              {"limit": 1000, "offset": offset, "with_payload": [key], "with_vector": False})
            if page.failure is not None:
                return Result(failure=page.failure, elapsed_ms=watch.ms)
            got = _scroll_page(page.value, key)
            if isinstance(got, Failure):
                return Result(failure=got, elapsed_ms=watch.ms)
            ids, offset = got
            out.extend(ids)
            if offset is None or len(out) >= limit:
                return success(out, watch.ms)

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


class RestStatusError(Exception):
    """A non-2xx REST answer (classified by its status code, like qdrant-client's UnexpectedResponse)."""

    def __init__(self, status_code: int, body: str) -> None:
        snippet = " ".join(body.split())[:200]
        super().__init__(f"Unexpected Response: {status_code}: {snippet}")
        self.status_code = status_code


class RestAnswerError(ValueError):
    """A 2xx REST answer that does not have the shape of Qdrant's API."""


def _quoted(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _then(result: Result[Any], read: Any) -> Result[Any]:
    """``read(result.value)`` as the value; an answer off the API (KeyError, TypeError, ValueError) is BAD_RESPONSE."""
    if result.failure is not None:
        return result
    try:
        return success(read(result.value), result.elapsed_ms)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return failed(FailureKind.BAD_RESPONSE, f"Qdrant's answer does not follow its API: {short(exc)}",
                      elapsed_ms=result.elapsed_ms)


def _collection_names(result: Any) -> list[str]:
    return sorted(str(item["name"]) for item in result["collections"])


def _collection_info(name: str, result: Any) -> CollectionInfo:
    """``GET /collections/{name}``'s result: one unnamed vector (size, distance) or named ones (the first)."""
    vectors = result["config"]["params"].get("vectors")
    size = distance = None
    if isinstance(vectors, dict) and "size" in vectors:
        size, distance = int(vectors["size"]), str(vectors["distance"])
    elif isinstance(vectors, dict) and vectors:
        first = next(iter(vectors.values()))
        size, distance = int(first["size"]), str(first["distance"])
    points = result.get("points_count")
    return CollectionInfo(name, size, distance, int(points) if points is not None else None, str(result["status"]))


def _query_hits(result: Any) -> int:
    points = result["points"]
    if not isinstance(points, list):
        raise TypeError("points is not a list")
    return len(points)


def _search_hits(result: Any) -> int:
    if not isinstance(result, list):
        raise TypeError("the search result is not a list")
    return len(result)


def _integer(result: Any, key: str) -> int:
    return int(result[key])


def _scroll_page(result: Any, key: str) -> tuple[list[Any], Any] | Failure:
    points = result.get("points") if isinstance(result, dict) else None
    if not isinstance(points, list):
        return Failure(FailureKind.BAD_RESPONSE, "Qdrant's scroll answer holds no list of points")
    ids = [(p.get("payload") or {}).get(key) if isinstance(p, dict) else None for p in points]
    return ids, result.get("next_page_offset")
