"""Prometheus HTTP API probe: targets, alerts, rules, instant queries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from es_doctor.probes.http import HttpProbe
from es_doctor.probes.result import FailureKind, Result, failed, success


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    url: str
    health: str
    last_error: str


@dataclass(frozen=True)
class Alert:
    name: str
    state: str
    labels: dict[str, str]


@dataclass(frozen=True)
class Uptime:
    """One scrape target's ``up`` over a window: how many scrapes Prometheus holds, how many succeeded,
    and how far back the oldest of them is (less than the window when Prometheus holds less history)."""

    labels: dict[str, str]
    scrapes: int
    successes: float
    history_s: float | None

    @property
    def ratio(self) -> float:
        return self.successes / self.scrapes if self.scrapes else 0.0


def job_selector(jobs: list[str], metric: str = "") -> str:
    """``metric{job=~"a|b"}``: each job name escaped for the regex, then for the PromQL string."""
    # RE2's metacharacters only (a job name reads as itself: email-sender, not email\-sender)
    regex = "|".join(re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", j).replace("\\", "\\\\").replace('"', '\\"')
                     for j in jobs)
    return f'{metric}{{job=~"{regex}"}}'


def uptime_step(seconds: float) -> int:
    """The subquery step that finds the oldest scrape held: 1/1440 of the window (a minute in a day), >= 1 s."""
    return max(1, int(seconds) // 1440)


def uptime_queries(jobs: list[str], seconds: float) -> tuple[str, str, str]:
    """The PromQL of :meth:`PrometheusProbe.uptime`: scrapes held, successful scrapes, age of the oldest."""
    window = max(1, int(seconds))
    step = uptime_step(seconds)
    up = job_selector(jobs, "up")
    return (f"count_over_time({up}[{window}s])", f"sum_over_time({up}[{window}s])",
            f"time() - min_over_time(timestamp({up})[{window}s:{step}s])")


#: one series of a range query: its labels (``__name__`` included) and its (time, value) samples
Series = tuple[dict[str, str], list[tuple[float, float]]]


class PrometheusProbe:
    def __init__(self, url: str, http: HttpProbe) -> None:
        self.url = url.rstrip("/")
        self.http = http

    def _data(self, path: str) -> Result[Any]:
        result = self.http.get_json(f"{self.url}{path}")
        if result.failure is not None:
            return result
        body = result.value
        if not isinstance(body, dict) or body.get("status") != "success":
            return failed(FailureKind.BAD_RESPONSE, f"{path}: not a Prometheus API answer")
        return Result(value=body.get("data"), elapsed_ms=result.elapsed_ms)

    def ready(self) -> Result[bool]:
        response = self.http.get(f"{self.url}/-/ready")
        if response.failure is not None:
            return Result(failure=response.failure, elapsed_ms=response.elapsed_ms)
        return success(True, response.elapsed_ms)

    def targets(self) -> Result[list[ScrapeTarget]]:
        data = self._data("/api/v1/targets?state=active")
        if data.failure is not None:
            return Result(failure=data.failure)
        out = []
        for item in (data.value or {}).get("activeTargets", []) if isinstance(data.value, dict) else []:
            labels = item.get("labels") or {}
            out.append(ScrapeTarget(str(labels.get("job", item.get("scrapePool", ""))), str(item.get("scrapeUrl", "")),
                                    str(item.get("health", "unknown")), str(item.get("lastError", ""))))
        return success(out, data.elapsed_ms)

    def alerts(self) -> Result[list[Alert]]:
        data = self._data("/api/v1/alerts")
        if data.failure is not None:
            return Result(failure=data.failure)
        items = (data.value or {}).get("alerts", []) if isinstance(data.value, dict) else []
        return success([Alert(str((a.get("labels") or {}).get("alertname", "?")), str(a.get("state", "")),
                              dict(a.get("labels") or {})) for a in items], data.elapsed_ms)

    def rule_count(self) -> Result[int]:
        data = self._data("/api/v1/rules")
        if data.failure is not None:
            return Result(failure=data.failure)
        groups = (data.value or {}).get("groups", []) if isinstance(data.value, dict) else []
        return success(sum(len(g.get("rules") or []) for g in groups), data.elapsed_ms)

    def query(self, expr: str) -> Result[list[tuple[dict[str, str], float]]]:
        data = self._data(f"/api/v1/query?query={quote(expr)}")
        if data.failure is not None:
            return Result(failure=data.failure)
        out = []
        for item in (data.value or {}).get("result", []) if isinstance(data.value, dict) else []:
            try:
                out.append((dict(item.get("metric") or {}), float(item["value"][1])))
            except (KeyError, IndexError, TypeError, ValueError):
                continue
        return success(out, data.elapsed_ms)

    def range_samples(self, selector: str, seconds: int) -> Result[list[Series]]:
        """Raw samples of ``selector`` over the last ``seconds``: (labels with ``__name__``, [(time, value)])."""
        data = self._data(f"/api/v1/query?query={quote(f'{selector}[{int(seconds)}s]')}")
        if data.failure is not None:
            return Result(failure=data.failure)
        out = []
        for item in (data.value or {}).get("result", []) if isinstance(data.value, dict) else []:
            try:
                values = [(float(t), float(v)) for t, v in item.get("values") or []]
                out.append((dict(item.get("metric") or {}), values))
            except (TypeError, ValueError):
                continue
        return success(out, data.elapsed_ms)

    def uptime(self, jobs: list[str], seconds: float) -> Result[list[Uptime]]:
        """``up`` of ``jobs`` over the last ``seconds``, per target (job, instance): scrapes held, successes,
        and the age of the oldest scrape held (to a subquery step: 1/1440 of the window, at least 1 s)."""
        answers = []
        for expr in uptime_queries(jobs, seconds):
            answer = self.query(expr)
            if answer.failure is not None:
                return Result(failure=answer.failure)
            answers.append({_target_key(labels): value for labels, value in answer.unwrap()})
        counts, sums, ages = answers
        step = uptime_step(seconds)
        if step > 1 and any(key not in ages for key in counts):
            # the subquery sees the samples up to its last step: a history shorter than one step shows only
            # at a step of 1 s over that step
            recent = self.query(uptime_queries(jobs, step)[2])
            if recent.failure is not None:
                return Result(failure=recent.failure)
            ages = {**{_target_key(labels): value for labels, value in recent.unwrap()}, **ages}
        out = [Uptime(dict(key), int(count), sums.get(key, 0.0), ages.get(key))
               for key, count in sorted(counts.items()) if count > 0]
        return success(out)


def _target_key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))
