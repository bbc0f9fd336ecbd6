"""The service's event bus: a bounded queue fed by publishers and drained by worker threads."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

from es_doctor.lab.jsonlog import JsonLogger
from es_doctor.lab.metrics import Metrics

COMPONENT = "EventBus"
#: seconds a worker spends "handling" one event
HANDLE_S = 0.002


class EventBus:
    def __init__(self, capacity: int, workers: int, metrics: Metrics, journal: JsonLogger) -> None:
        self.capacity = capacity
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._cond = threading.Condition()
        self._paused = False
        self._stopped = False
        self._metrics = metrics
        self._journal = journal
        self._last_drop_log = 0.0
        self._drops_since_log = 0
        self.processed = 0
        metrics.bus_capacity.set(capacity)
        metrics.bus_depth.set_function(self.depth)
        self._threads = [
            threading.Thread(target=self._work, name=f"eventbus-worker-{i}", daemon=True)
            for i in range(workers)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()
        self._journal.info(COMPONENT, f"event bus started: buffer_size={self.capacity} workers={len(self._threads)}")

    def depth(self) -> int:
        return len(self._queue)

    @property
    def paused(self) -> bool:
        return self._paused

    def publish(self, kind: str, **data: Any) -> bool:
        """Enqueue one event; when the queue is full, drop it (counted and logged, rate-limited)."""
        with self._cond:
            if len(self._queue) >= self.capacity:
                dropped = True
            else:
                dropped = False
                self._queue.append({"type": kind, "ts": time.time(), **data})
                self._cond.notify()
        if dropped:
            self._metrics.bus_dropped.inc()
            self._log_drop(kind)
            return False
        self._metrics.bus_published.inc()
        return True

    def _log_drop(self, kind: str) -> None:
        now = time.monotonic()
        with self._cond:
            self._drops_since_log += 1
            if now - self._last_drop_log < 0.5:
                return
            self._last_drop_log, n, self._drops_since_log = now, self._drops_since_log, 0
        depth = self.depth()
        self._journal.error(
            COMPONENT,
            f"event bus queue full, dropping event type={kind} "
            f"(depth {depth}/{self.capacity}, {n} dropped since last report)",
            error="buffer full",
        )

    def saturate(self) -> int:
        """The ``event-bus-saturated`` fault: pause the workers, then publish a burst beyond capacity."""
        with self._cond:
            self._paused = True
        self._journal.warn(COMPONENT, "event bus workers stalled: handlers blocked, queue backing up")
        burst = self.capacity + max(10, self.capacity // 10)
        accepted = sum(1 for i in range(burst) if self.publish("burst", seq=i))
        self._journal.warn(
            COMPONENT, f"event bus saturated: depth {self.depth()}/{self.capacity} "
            f"({100.0 * self.depth() / self.capacity:.0f}%), workers stalled",
        )
        return accepted

    def purge(self) -> int:
        """Empty the queue and resume stalled workers; returns how many events were discarded."""
        with self._cond:
            n = len(self._queue)
            self._queue.clear()
            was_paused, self._paused = self._paused, False
            self._cond.notify_all()
        self._journal.warn(COMPONENT, f"event bus purged: {n} events discarded"
                       + (", workers resumed" if was_paused else ""))
        return n

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (self._paused or not self._queue):
                    self._cond.wait(0.5)
                if self._stopped:
                    return
                self._queue.popleft()
            time.sleep(HANDLE_S)
            self.processed += 1
