"""The Qdrant stand-in's operations: REST bodies → qdrant-client's embedded mode (one client, one lock)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import httpx
from pydantic import BaseModel, ValidationError
from qdrant_client import QdrantClient
from qdrant_client.http import models as m

from es_doctor.lab import qdrant_snapshots as snaps

Args = dict[str, str]
Query = dict[str, list[str]]
T = TypeVar("T", bound=BaseModel)
DISTANCES = {d.value.lower(): d for d in m.Distance}


class QdrantError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [dump(v) for v in value]
    return value


def parse(model: type[T], body: Any) -> T:
    try:
        return model.model_validate(body if body is not None else {})
    except ValidationError as exc:
        raise QdrantError(400, f"Format error in JSON body: {exc.errors()[0].get('msg')}") from None


def _no_fsync_per_commit() -> None:
    """Qdrant acknowledges a write once it is in its WAL, and flushes in the background; qdrant-client's
    embedded storage commits every upsert to SQLite with an fsync, which on a busy disk takes 10-100 ms and
    made the lab's own healthy requests log SLOW lines. Its connections skip the fsync (``synchronous=OFF``:
    a crash of this process loses nothing, only one of the machine could)."""
    from qdrant_client.local import persistence

    cls = persistence.CollectionPersistence
    if getattr(cls, "_lab_no_fsync", False):
        return
    original = cls.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.storage.execute("PRAGMA synchronous=OFF")

    cls.__init__ = init  # type: ignore[method-assign]
    cls._lab_no_fsync = True  # type: ignore[attr-defined]


class Store:
    def __init__(self, storage: Path) -> None:
        self.storage = storage
        _no_fsync_per_commit()
        self.client = QdrantClient(path=str(storage))
        self.lock = threading.RLock()

    def close(self) -> None:
        with self.lock:
            self.client.close()

    # --- helpers ---
    def collection_names(self) -> list[str]:
        with self.lock:
            return [c.name for c in self.client.get_collections().collections]

    def count_points(self, name: str) -> int:
        with self.lock:
            return int(self.client.count(name, exact=True).count)

    def _need(self, name: str) -> m.CollectionInfo:
        with self.lock:
            if not self.client.collection_exists(name):
                raise QdrantError(404, f"Not found: Collection `{name}` doesn't exist!")
            return self.client.get_collection(name)

    def _dim(self, name: str) -> int | None:
        vectors = self._need(name).config.params.vectors
        return vectors.size if isinstance(vectors, m.VectorParams) else None

    @staticmethod
    def _check_dim(expected: int | None, vector: Any) -> None:
        if expected is not None and isinstance(vector, list) and len(vector) != expected:
            raise QdrantError(400, f"Wrong input: Vector dimension error: expected dim: {expected}, "
                                   f"got {len(vector)}")

    def _run(self, fn: Any, *a: Any, **kw: Any) -> Any:
        with self.lock:
            try:
                return fn(*a, **kw)
            except (ValueError, TypeError, KeyError, AssertionError) as exc:
                text = str(exc)
                code = 404 if "not found" in text.lower() else 400
                raise QdrantError(code, text if text.startswith("Wrong input") else f"Wrong input: {text}") from None

    def ensure_collection(self, name: str, size: int, distance: str) -> None:
        dist = DISTANCES.get(distance.lower())
        if dist is None:
            raise QdrantError(400, f"unknown distance {distance}")
        with self.lock:
            if not self.client.collection_exists(name):
                self.client.create_collection(name, vectors_config=m.VectorParams(size=size, distance=dist))

    # --- collections ---
    def list_collections(self, args: Args, body: Any, query: Query) -> Any:
        return {"collections": [{"name": n} for n in self.collection_names()]}

    def get_collection(self, args: Args, body: Any, query: Query) -> Any:
        return dump(self._need(args["c"]))

    def collection_exists(self, args: Args, body: Any, query: Query) -> Any:
        with self.lock:
            return {"exists": bool(self.client.collection_exists(args["c"]))}

    def create_collection(self, args: Args, body: Any, query: Query) -> Any:
        req = parse(m.CreateCollection, body)
        with self.lock:
            if self.client.collection_exists(args["c"]):
                raise QdrantError(409, f"Wrong input: Collection `{args['c']}` already exists!")
            return self._run(self.client.create_collection, args["c"], vectors_config=req.vectors,
                             sparse_vectors_config=req.sparse_vectors)

    def update_collection(self, args: Args, body: Any, query: Query) -> Any:
        self._need(args["c"])
        return True

    def delete_collection(self, args: Args, body: Any, query: Query) -> Any:
        with self.lock:
            return bool(self.client.delete_collection(args["c"]))

    def create_index(self, args: Args, body: Any, query: Query) -> Any:
        self._need(args["c"])
        return {"operation_id": 0, "status": "completed"}

    # --- points ---
    def upsert(self, args: Args, body: Any, query: Query) -> Any:
        dim = self._dim(args["c"])
        points: Any
        if isinstance(body, dict) and "batch" in body:
            batch = parse(m.PointsBatch, body).batch
            for v in batch.vectors if isinstance(batch.vectors, list) else []:
                self._check_dim(dim, v)
            points = m.Batch(ids=batch.ids, vectors=batch.vectors, payloads=batch.payloads)
        else:
            points = parse(m.PointsList, body).points
            for p in points:
                self._check_dim(dim, p.vector)
        return dump(self._run(self.client.upsert, args["c"], points=points))

    def retrieve(self, args: Args, body: Any, query: Query) -> Any:
        self._need(args["c"])
        req = parse(m.PointRequest, body)
        return dump(self._run(self.client.retrieve, args["c"], ids=req.ids,
                              with_payload=req.with_payload if req.with_payload is not None else True,
                              with_vectors=req.with_vector or False))

    def get_point(self, args: Args, body: Any, query: Query) -> Any:
        self._need(args["c"])
        raw = args["id"]
        pid: int | str = int(raw) if raw.isdigit() else raw
        found = self._run(self.client.retrieve, args["c"], ids=[pid], with_payload=True, with_vectors=True)
        if not found:
            raise QdrantError(404, f"Not found: No point with id {raw} found")
        return dump(found[0])

    def delete_points(self, args: Args, body: Any, query: Query) -> Any:
        self._need(args["c"])
        selector: Any = parse(m.FilterSelector, body) if "filter" in (body or {}) else parse(m.PointIdsList, body)
        return dump(self._run(self.client.delete, args["c"], points_selector=selector))

    def query(self, args: Args, body: Any, query: Query) -> Any:
        dim = self._dim(args["c"])
        req = parse(m.QueryRequest, body)
        if req.using is None:
            self._check_dim(dim, req.query)
        res = self._run(self.client.query_points, args["c"], query=req.query, using=req.using,
                        prefetch=req.prefetch, query_filter=req.filter, search_params=req.params,
                        limit=req.limit or 10, offset=req.offset, with_payload=req.with_payload or False,
                        with_vectors=req.with_vector or False, score_threshold=req.score_threshold,
                        lookup_from=req.lookup_from)
        return dump(res)

    def search(self, args: Args, body: Any, query: Query) -> Any:
        """The legacy ``POST /points/search`` (its request model is gone from qdrant-client 1.20)."""
        dim = self._dim(args["c"])
        if not isinstance(body, dict) or "vector" not in body:
            raise QdrantError(400, "Format error in JSON body: missing field `vector`")
        vector: Any = body["vector"]
        using: str | None = None
        if isinstance(vector, dict):
            vector, using = vector.get("vector"), vector.get("name")
        if not isinstance(vector, list) or not all(isinstance(x, int | float) for x in vector):
            raise QdrantError(400, "Format error in JSON body: `vector` must be a list of numbers")
        if using is None:
            self._check_dim(dim, vector)
        flt = parse(m.Filter, body["filter"]) if body.get("filter") else None
        params = parse(m.SearchParams, body["params"]) if body.get("params") else None
        res = self._run(self.client.query_points, args["c"], query=vector, using=using,
                        query_filter=flt, search_params=params, limit=int(body.get("limit", 10)),
                        offset=body.get("offset"), with_payload=body.get("with_payload") or False,
                        with_vectors=body.get("with_vector") or False,
                        score_threshold=body.get("score_threshold"))
        return dump(res.points)

    def count(self, args: Args, body: Any, query: Query) -> Any:
        self._need(args["c"])
        req = parse(m.CountRequest, body)
        return dump(self._run(self.client.count, args["c"], count_filter=req.filter, exact=True))

    def scroll(self, args: Args, body: Any, query: Query) -> Any:
        self._need(args["c"])
        req = parse(m.ScrollRequest, body)
        records, nxt = self._run(self.client.scroll, args["c"], scroll_filter=req.filter,
                                 limit=req.limit or 10, offset=req.offset, order_by=req.order_by,
                                 with_payload=req.with_payload if req.with_payload is not None else True,
                                 with_vectors=req.with_vector or False)
        return {"points": dump(records), "next_page_offset": nxt}

    # --- snapshots ---
    def _all_points(self, name: str) -> Iterator[dict[str, Any]]:
        offset = None
        while True:
            records, offset = self.client.scroll(name, limit=snaps.BATCH, offset=offset, with_payload=True,
                                                 with_vectors=True)
            for r in records:
                yield {"id": r.id, "vector": r.vector, "payload": r.payload}
            if offset is None:
                return

    def create_snapshot(self, args: Args, body: Any, query: Query) -> Any:
        info = self._need(args["c"])
        params = info.config.params
        config = {"vectors": dump(params.vectors), "sparse_vectors": dump(params.sparse_vectors)}
        with self.lock:
            path = snaps.write_snapshot(self.storage, args["c"], config, self._all_points(args["c"]))
        return snaps.describe(path)

    def list_snapshots(self, args: Args, body: Any, query: Query) -> Any:
        self._need(args["c"])
        return snaps.list_snapshots(self.storage, args["c"])

    def snapshot_bytes(self, collection: str, name: str) -> bytes:
        try:
            return snaps.find_snapshot(self.storage, collection, name).read_bytes()
        except snaps.SnapshotError as exc:
            raise QdrantError(400, str(exc)) from None
        except FileNotFoundError as exc:
            raise QdrantError(404, f"Not found: {exc}") from None

    def delete_snapshot(self, args: Args, body: Any, query: Query) -> Any:
        path = self.storage / "snapshots" / args["c"] / args["snap"]
        self.snapshot_bytes(args["c"], args["snap"])
        path.unlink()
        return True

    def recover_snapshot(self, args: Args, body: Any, query: Query) -> Any:
        req = parse(m.SnapshotRecover, body)
        url = urlsplit(req.location)
        try:
            if url.scheme == "file":
                data = Path(unquote(url.path)).read_bytes()
            elif url.scheme in ("http", "https"):
                resp = httpx.get(req.location, timeout=30.0)
                resp.raise_for_status()
                data = resp.content
            else:
                data = Path(req.location).read_bytes()
        except (OSError, httpx.HTTPError) as exc:
            raise QdrantError(400, f"Bad request: cannot read snapshot {req.location}: {exc}") from None
        return self._restore(args["c"], data)

    def upload_snapshot(self, args: Args, body: Any, query: Query) -> Any:
        try:
            data = snaps.multipart_file(body["_ctype"], body["_raw"])
        except snaps.SnapshotError as exc:
            raise QdrantError(400, f"Bad request: {exc}") from None
        return self._restore(args["c"], data)

    def _restore(self, name: str, data: bytes) -> bool:
        try:
            config, points = snaps.read_snapshot(data)
        except snaps.SnapshotError as exc:
            raise QdrantError(400, f"Bad request: {exc}") from None
        req = parse(m.CreateCollection, config)
        with self.lock:
            if self.client.collection_exists(name):
                self.client.delete_collection(name)
            self._run(self.client.create_collection, name, vectors_config=req.vectors,
                      sparse_vectors_config=req.sparse_vectors)
            for chunk in snaps.batches(points):
                structs = [m.PointStruct(id=p["id"], vector=p["vector"], payload=p.get("payload")) for p in chunk]
                self._run(self.client.upsert, name, points=structs)
        return True
