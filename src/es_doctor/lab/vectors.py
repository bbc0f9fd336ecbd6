"""The service's vector service: embeddings (cached) and Qdrant over HTTP (httpx, not qdrant-client)."""

from __future__ import annotations

import hashlib
import random
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NoReturn

import httpx

from es_doctor.lab.fault_table import used
from es_doctor.lab.jsonlog import JsonLogger
from es_doctor.lab.metrics import Metrics
from es_doctor.lab.service_config import ServiceConfig

#: the runtime faults this program acts on (names checked against the lab's fault table)
FAULTS = used("service", "qdrant-flaky", "vector-insert-errors")

COMPONENT = "vector-service"
FLAKY_RATE = 0.30
BAD_DIM_RATE = 0.15
WRONG_DIM = 768


class VectorError(Exception):
    """A vector operation failed (the message is what the API answers)."""


def closed_port() -> int:
    """A local port nothing listens on (bound then released): connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class EmbeddingCache:
    """The ``vector_cache`` knobs: an LRU of embeddings with a TTL."""

    def __init__(self, max_size: int, ttl_s: float) -> None:
        self.max_size, self.ttl_s = max(1, max_size), ttl_s
        self._data: OrderedDict[str, tuple[float, list[float]]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: str, compute: Callable[[], list[float]]) -> list[float]:
        now = time.monotonic()
        with self._lock:
            item = self._data.get(key)
            if item is not None and now - item[0] < self.ttl_s:
                self._data.move_to_end(key)
                self.hits += 1
                return item[1]
            self.misses += 1
        value = compute()
        with self._lock:
            self._data[key] = (now, value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_size:
                self._data.popitem(last=False)
        return value


def embed(text: str, dim: int) -> list[float]:
    """A deterministic unit vector for ``text`` (stands in for the embedding API)."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    v = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = sum(x * x for x in v) ** 0.5 or 1.0
    return [round(x / norm, 5) for x in v]


class VectorService:
    def __init__(self, cfg: ServiceConfig, metrics: Metrics, journal: JsonLogger,
                 fault: Callable[[str], bool]) -> None:
        self.cfg, self._metrics, self._journal, self._fault = cfg, metrics, journal, fault
        self.cache = EmbeddingCache(cfg.cache_max_size, cfg.cache_ttl_s)
        limits = httpx.Limits(max_connections=cfg.pool_max_connections,
                              max_keepalive_connections=cfg.pool_max_connections,
                              keepalive_expiry=cfg.pool_idle_timeout_s)
        self._http = httpx.Client(timeout=httpx.Timeout(5.0, connect=2.0), limits=limits)
        self._dead_url = f"http://127.0.0.1:{closed_port()}"

    def close(self) -> None:
        self._http.close()

    def _base(self) -> str:
        if self._fault("qdrant-flaky") and random.random() < FLAKY_RATE:
            return self._dead_url
        return self.cfg.qdrant_url

    def _call(self, op: str, method: str, path: str, body: dict[str, Any], request_id: str | None
              ) -> dict[str, Any]:
        url = self._base() + path
        started = time.perf_counter()
        try:
            resp = self._http.request(method, url, json=body)
        except httpx.TransportError as exc:
            self._metrics.qdrant_conn_errors.inc()
            self._fail(op, f"qdrant connection error: {type(exc).__name__}: {exc or 'connection refused'}",
                       request_id, started)
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("status", {}).get("error") or resp.text
            except ValueError:
                detail = resp.text
            self._fail(op, f"qdrant answered {resp.status_code}: {detail}", request_id, started)
        self._metrics.vector_ops.labels(op=op, result="ok").inc()
        data: dict[str, Any] = resp.json()
        return data

    def _fail(self, op: str, error: str, request_id: str | None, started: float) -> NoReturn:
        self._metrics.vector_ops.labels(op=op, result="error").inc()
        what = "Failed to insert vector" if op == "insert" else "Vector search failed"
        self._journal.error(COMPONENT, what, error=error, request_id=request_id,
                        duration_ms=round((time.perf_counter() - started) * 1000, 1))
        raise VectorError(f"{what}: {error}")

    def insert(self, task_id: int, title: str, request_id: str | None = None) -> None:
        dim = self.cfg.vector_size
        if self._fault("vector-insert-errors") and random.random() < BAD_DIM_RATE:
            dim = WRONG_DIM if self.cfg.vector_size != WRONG_DIM else WRONG_DIM // 2
        vector = self.cache.get(f"{dim}:{title}", lambda: embed(title, dim))
        body = {"points": [{"id": task_id, "vector": vector, "payload": {"task_id": task_id, "title": title}}]}
        self._call("insert", "PUT", f"/collections/{self.cfg.collection}/points?wait=true", body, request_id)

    def search(self, text: str, limit: int = 5, request_id: str | None = None) -> list[dict[str, Any]]:
        dim = self.cfg.vector_size
        vector = self.cache.get(f"{dim}:{text}", lambda: embed(text, dim))
        started = time.perf_counter()
        try:
            data = self._call("search", "POST", f"/collections/{self.cfg.collection}/points/query",
                              {"query": vector, "limit": limit, "with_payload": True}, request_id)
        finally:
            self._metrics.vector_search.observe(time.perf_counter() - started)
        points = (data.get("result") or {}).get("points") or []
        return [{"id": p.get("id"), "score": p.get("score"), "payload": p.get("payload")} for p in points]

    def reachable(self) -> bool:
        try:
            return self._http.get(self.cfg.qdrant_url + "/", timeout=1.0).status_code < 500
        except httpx.HTTPError:
            return False
