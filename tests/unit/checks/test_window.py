"""The metrics window of a run without Prometheus starts at the previous run's last scrape (a real
CheckContext; the metrics URL answers from the fake HTTP probe)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fakes import Answer, FakeHttp

from es_doctor.checks.context import CheckContext
from es_doctor.checks.window import FROM_PREVIOUS_RUN, FROM_TWO_SCRAPES
from es_doctor.config import Target

START = "process_start_time_seconds"


class _Ctx(CheckContext):
    """A real CheckContext whose metrics URL answers from a FakeHttp (no Prometheus in the target)."""

    def __init__(self, target: Target, scrapes: Path, answers: list[Answer]) -> None:
        super().__init__(target, "t", scrapes_dir=scrapes)
        self.fake = FakeHttp({target.service.metrics_url: list(answers)})

    def plain_http(self) -> FakeHttp:  # type: ignore[override]
        return self.fake


def _exposition(requests: int, start: float = 1000.0) -> Answer:
    return Answer(200, f"email_sender_http_requests_total{{code=\"200\"}} {requests}\n{START} {start}\n")


def test_the_next_run_starts_its_window_at_the_previous_runs_scrape(tmp_path: Path) -> None:
    target = Target.model_validate({"absent": {"prometheus": "none"}, "thresholds": {"scrape_window_s": 0.3}})
    first = _Ctx(target, tmp_path, [_exposition(10), _exposition(12)]).metrics_window().unwrap()
    assert first.source == FROM_TWO_SCRAPES
    time.sleep(0.1)  # younger than the window: the next run waits only what is left of it
    ctx = _Ctx(target, tmp_path, [_exposition(20)])
    second = ctx.metrics_window().unwrap()
    assert second.source == FROM_PREVIOUS_RUN
    assert second.before.taken_at == pytest.approx(first.after.taken_at)
    assert second.seconds >= 0.3  # it waited for the rest of the window before its one scrape
    assert len(ctx.fake.calls) == 1  # one scrape now
    # the service restarted since: its start time changed, so two scrapes again
    third = _Ctx(target, tmp_path, [_exposition(30, start=5000.0), _exposition(31, start=5000.0)])
    assert third.metrics_window().unwrap().source == FROM_TWO_SCRAPES
    assert len(third.fake.calls) == 2


def test_without_a_state_dir_every_run_scrapes_twice(tmp_path: Path) -> None:
    target = Target.model_validate({"absent": {"prometheus": "none"}, "thresholds": {"scrape_window_s": 0.1}})
    ctx = CheckContext(target, "t")
    assert ctx.scrapes_dir is None
    fake = FakeHttp({target.service.metrics_url: [_exposition(1), _exposition(2)]})
    ctx.plain_http = lambda: fake  # type: ignore[method-assign]
    assert ctx.metrics_window().unwrap().source == FROM_TWO_SCRAPES
    assert list(tmp_path.iterdir()) == []
