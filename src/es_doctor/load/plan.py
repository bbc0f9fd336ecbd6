"""What a load test sends, and when: scenarios, the fixed-rate schedule, the caps of a target.

The model is open: request *i* is due at ``i / rps`` seconds after the start, whatever happened to the
requests before it, so a slow server cannot slow the generator down and hide its own slowness
(coordinated omission). Which operation request *i* performs is fixed by the scenario's weights
(smooth weighted round robin: the mix holds over any window, not only on average).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from es_doctor import units
from es_doctor.errors import UsageError

if TYPE_CHECKING:
    from es_doctor.config import LoadConfig

#: the marker every record a load test writes carries (its title starts with it, and with the run id)
MARKER = "es-doctor-load"
#: a request sent more than this after its due time is late (the generator fell behind)
LATE_AFTER_S = 0.010
#: the share of late requests over which the generator, not the server, may explain the latency
GENERATOR_LIMITED_PCT = 5.0
#: search words: reads that find existing tasks (no write)
WORDS = ("invoice", "newsletter", "welcome", "reminder", "report", "digest", "receipt", "survey")


class Op(StrEnum):
    """One operation of the service's API (STACK.md; ``tasks/search`` is the vector search the lab serves)."""

    HEALTH = "health"
    MANAGERS = "managers"
    MODE = "mode"
    CREATE = "create"
    SEARCH = "search"

    @property
    def method(self) -> str:
        return "POST" if self is Op.CREATE else "GET"

    @property
    def path(self) -> str:
        return {Op.HEALTH: "/health", Op.MANAGERS: "/api/v1/managers/status", Op.MODE: "/api/v1/maintenance",
                Op.CREATE: "/api/v1/tasks", Op.SEARCH: "/api/v1/tasks/search"}[self]

    @property
    def writes(self) -> bool:
        return self is Op.CREATE


class Scenario(StrEnum):
    api = "api"
    vectors = "vectors"
    mixed = "mixed"


#: the operations of each scenario and their weights
MIX: dict[Scenario, tuple[tuple[Op, int], ...]] = {
    # the guide's k6 API load test: reads of the API, some task creation
    Scenario.api: ((Op.HEALTH, 2), (Op.MANAGERS, 4), (Op.MODE, 2), (Op.CREATE, 2)),
    # the guide's vector stress test: task creation (vectorised on insert) and vector search
    Scenario.vectors: ((Op.CREATE, 2), (Op.SEARCH, 3)),
    Scenario.mixed: ((Op.HEALTH, 1), (Op.MANAGERS, 3), (Op.MODE, 1), (Op.CREATE, 2), (Op.SEARCH, 3)),
}


@dataclass(frozen=True)
class Plan:
    scenario: Scenario
    rps: float
    duration_s: float
    concurrency: int
    timeout_s: float
    run_id: str

    @property
    def total(self) -> int:
        """How many requests the run sends if it is not stopped."""
        return max(1, round(self.rps * self.duration_s))

    @property
    def marker(self) -> str:
        """The prefix of every record this run writes: ``es-doctor-load-<run id>``."""
        return f"{MARKER}-{self.run_id}"

    def due(self, index: int) -> float:
        """Seconds after the start at which request ``index`` is due."""
        return index / self.rps

    def title(self, index: int) -> str:
        return f"{self.marker} task {index}"


def new_run_id() -> str:
    return secrets.token_hex(6)


def operations(scenario: Scenario, count: int) -> list[Op]:
    """The first ``count`` operations of ``scenario``: smooth weighted round robin over its mix."""
    mix = MIX[scenario]
    total = sum(weight for _op, weight in mix)
    current = [0] * len(mix)
    out: list[Op] = []
    for _ in range(count):
        for i, (_op, weight) in enumerate(mix):
            current[i] += weight
        best = max(range(len(mix)), key=lambda i: current[i])
        current[best] -= total
        out.append(mix[best][0])
    return out


def parse_duration(text: str, name: str = "--duration") -> float:
    """:func:`es_doctor.units.parse_duration`, a usage error when ``text`` is not a duration."""
    try:
        return units.parse_duration(text, name=name)
    except units.DurationError as exc:
        raise UsageError(str(exc)) from exc


def make_plan(scenario: Scenario, rps: float, duration: str, concurrency: int, timeout: str,
              caps: LoadConfig, target_name: str) -> Plan:
    """The plan, refused (usage error) when a value is not positive or goes over the target's caps."""
    duration_s, timeout_s = parse_duration(duration, "--duration"), parse_duration(timeout, "--timeout")
    where = f"target '{target_name}'"
    for name, value in (("--rps", rps), ("--duration", duration_s), ("--concurrency", concurrency),
                        ("--timeout", timeout_s)):
        if not value > 0:
            raise UsageError(f"{name} must be more than 0")
    if rps > caps.max_rps:
        raise UsageError(f"--rps {rps:g} is over the cap of {where}: {caps.max_rps:g} requests/s "
                         "(load.max_rps in es-doctor.yaml)")
    if duration_s > caps.max_duration_s:
        raise UsageError(f"--duration {duration} ({duration_s:g} s) is over the cap of {where}: "
                         f"{caps.max_duration_s:g} s (load.max_duration_s in es-doctor.yaml)")
    if concurrency > caps.max_concurrency:
        raise UsageError(f"--concurrency {concurrency} is over the cap of {where}: {caps.max_concurrency} "
                         "(load.max_concurrency in es-doctor.yaml)")
    if timeout_s > 60:
        raise UsageError("--timeout is at most 60s")
    return Plan(scenario, rps, duration_s, concurrency, timeout_s, new_run_id())
