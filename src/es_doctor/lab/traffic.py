"""Self-generated load: real HTTP requests to the service's own API at ``lab.traffic_rps``."""

from __future__ import annotations

import math
import random
import threading
import time

import httpx

WORDS = ("invoice", "newsletter", "welcome", "reminder", "password", "report", "digest", "alert",
         "campaign", "receipt", "survey", "onboarding")


#: the slowest answer (seconds) the clients keep their rate through: the lab's slow faults answer in up to 1 s
KEEP_RATE_THROUGH_S = 1.5


class TrafficGenerator:
    """``threads`` sequential clients sharing ``rps``, enough of them (by default) that a client still sends
    on time when each answer takes up to :data:`KEEP_RATE_THROUGH_S`: a production service's users do not
    slow down because it did, so a slow fault must not thin the sample its latency is graded on (with two
    clients, ``slow-api-crit`` cut the rate to ~2.5 requests/s and the short window held too few requests to
    grade, and a window widened into the history before the fault read it as fine)."""

    def __init__(self, base_url: str, rps: float, stop: threading.Event, threads: int | None = None) -> None:
        if threads is None:
            threads = max(2, math.ceil(rps * KEEP_RATE_THROUGH_S))
        self.base_url, self.rps, self._stop, self.threads = base_url, rps, stop, threads
        self.sent = 0

    def start(self) -> None:
        if self.rps <= 0:
            return
        for i in range(self.threads):
            threading.Thread(target=self._run, args=(i,), name=f"traffic-{i}", daemon=True).start()

    def _one(self, client: httpx.Client, rng: random.Random) -> None:
        roll = rng.random()
        user = {"X-User-ID": f"user-{rng.randint(100, 999)}"}
        if roll < 0.15:
            client.get("/health", headers=user)
        elif roll < 0.45:
            client.get("/api/v1/managers/status", headers=user)
        elif roll < 0.65:
            title = f"{rng.choice(WORDS)} {rng.choice(WORDS)} #{rng.randint(1, 10**6)}"
            client.post("/api/v1/tasks", json={"title": title}, headers=user)
        elif roll < 0.90:
            q = f"{rng.choice(WORDS)} {rng.choice(WORDS)}"
            client.get("/api/v1/tasks/search", params={"q": q}, headers=user)
        elif roll < 0.95:
            client.get("/api/v1/managers/discovery", headers=user)
        else:
            client.get("/api/v1/maintenance", headers=user)

    def _run(self, index: int) -> None:
        rng = random.Random(time.time_ns() + index)
        interval = self.threads / self.rps
        self._stop.wait(rng.uniform(0, interval))
        with httpx.Client(base_url=self.base_url, timeout=10.0) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self._one(client, rng)
                    self.sent += 1
                except httpx.HTTPError:
                    pass
                self._stop.wait(max(0.0, interval - (time.monotonic() - started)))
