"""One module for units (#20 "small facts repeated", #21 item 7): one duration grammar everywhere,
numbers for humans, one way to write a UTC stamp."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from es_doctor import units
from es_doctor.units import (
    DurationError,
    format_bytes,
    format_duration,
    format_ms,
    format_number,
    format_percent,
    format_value,
    go_duration,
    parse_duration,
    parse_duration_or,
    parse_utc_stamp,
    utc_display,
    utc_iso,
    utc_stamp,
)


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("1m30s", 90), ("1h30m", 5400), ("500ms", 0.5), ("1.5m", 90), ("45", 45), ("2d", 172800),
    ("1h 30m", 5400), ("1H30M", 5400), (" 30s ", 30), ("0", 0), ("1w", 604800), (12, 12), (2.5, 2.5),
])
def test_one_duration_grammar(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "1x", "m", "1m30", "-5s", "1.2.3s", "s30", "nan", "1h-30m", "inf"])
def test_a_bad_duration_is_named_with_examples(bad: str) -> None:
    with pytest.raises(DurationError, match=r"--watch: not a duration: .*1m30s"):
        parse_duration(bad, name="--watch")


def test_lenient_reading_keeps_the_default() -> None:
    assert parse_duration_or("1m30s", 7) == 90
    assert parse_duration_or("soon", 7) == 7 and parse_duration_or(None, 7) == 7 and parse_duration_or([], 7) == 7


@pytest.mark.parametrize(("seconds", "text"), [(5400, "1h30m"), (90, "1m30s"), (0.5, "500ms"), (0, "0s"),
                                               (86400, "24h"), (61.25, "1m1s250ms")])
def test_go_duration_round_trips(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text
    assert parse_duration(text) == seconds


def test_numbers_never_print_an_exponent() -> None:
    assert format_number(1000.0) == "1000" and format_number(1e6) == "1000000"
    assert format_number(12.5) == "12.5" and format_number(0.071) == "0.07" and format_number(3.0) == "3"
    assert format_number(0.0004) == "0.0004" and format_number(0) == "0" and format_number(-0.0) == "0"
    assert "e" not in format_number(123456789.123) and "e" not in format_number(1e-9)


def test_sizes_in_iec_units() -> None:
    assert format_bytes(241664000) == "230 MiB"
    assert format_bytes(512) == "512 B" and format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 1024**3) == "3 GiB"


def test_durations_and_percents_for_humans() -> None:
    assert format_duration(0.048) == "48 ms" and format_ms(48) == "48 ms" and format_ms(0.4) == "0.4 ms"
    assert format_duration(1.5) == "1.5 s" and format_duration(150) == "2 min 30 s"
    assert format_duration(5400) == "1 h 30 min" and format_duration(3600) == "1 h"
    assert format_duration(2 * 86400 + 3 * 3600) == "2 d 3 h"
    assert format_percent(0.714) == "0.71 %" and format_percent(5) == "5 %" and format_percent(100) == "100 %"


def test_format_value_by_unit() -> None:
    assert format_value(241664000, "bytes") == "230 MiB"
    assert format_value(48.2, "ms") == "48.2 ms"
    assert format_value(1e3, "requests") == "1000 requests"
    assert format_value("up", None) == "up" and format_value(None, "ms") == "" and format_value(True) == "True"


def test_one_utc_stamp() -> None:
    moment = dt.datetime(2026, 12, 7, 3, 8, 53, 123456, tzinfo=dt.UTC)
    assert utc_stamp(moment) == "20261207T030853Z"
    assert parse_utc_stamp("20261207T030853Z") == moment.replace(microsecond=0)
    assert utc_iso(moment) == "2026-12-07T03:08:53Z" and utc_iso(moment, ms=True) == "2026-12-07T03:08:53.123Z"
    assert utc_iso(moment.timestamp()) == "2026-12-07T03:08:53Z"
    assert utc_display(moment) == "2026-12-07 03:08:53 UTC"
    paris = moment.astimezone(dt.timezone(dt.timedelta(hours=1)))
    assert utc_stamp(paris) == "20261207T030853Z"
    with pytest.raises(ValueError):
        parse_utc_stamp("20261307T030853Z")


def test_no_other_module_writes_a_stamp_or_parses_a_duration() -> None:
    """The formats live in units.py only: a new copy elsewhere breaks this (the stack's own deploy-log
    name in the lab's faults is the stack's format, not es-doctor's)."""
    from pathlib import Path

    src = Path(units.__file__).parent
    offenders = []
    for path in src.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name == "units.py":
            continue
        for needle in ('"%Y%m%dT%H%M%SZ"', '%H:%M:%S.', '.replace("+00:00", "Z")', "def parse_duration(",
                       '"ms": 0.001'):
            if needle in text and not (path.name == "plan.py" and needle == "def parse_duration("):
                offenders.append(f"{path.relative_to(src)}: {needle}")
    assert offenders == []


def test_every_command_reads_the_same_durations(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """#21 item 7: ``load --duration 1m30s``, ``serve --interval 1m30s`` and ``diagnose --watch 1m`` were
    refused (``serve``: "not a duration"; ``diagnose``: pydantic's "Input should be a valid number")."""
    from es_doctor.cli.main import main
    from es_doctor.config import LoadConfig
    from es_doctor.load.plan import Scenario, make_plan

    for name in [k for k in os.environ if k.startswith("ES_DOCTOR_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("ES_DOCTOR_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HOME", str(tmp_path))
    plan = make_plan(Scenario.mixed, 5, "1m30s", 2, "1.5s", LoadConfig(), "default")
    assert plan.duration_s == 90 and plan.timeout_s == 1.5
    assert main(["serve", "--interval", "1m30s", "--print-scrape-config"]) == 0
    assert "scrape_interval: 60s" in capsys.readouterr().out
    # the duration is read (the unknown check is what stops it, before any run)
    assert main(["diagnose", "--watch", "1m", "--timeout", "1s500ms", "--check", "nosuch"]) == 64
    assert "unknown check 'nosuch'" in capsys.readouterr().err
    assert main(["diagnose", "--watch", "1m30x"]) == 64
    assert "not a duration: '1m30x' (e.g. 90s, 1m30s" in capsys.readouterr().err
    config = tmp_path / "es-doctor.yaml"
    config.write_text("targets:\n  default:\n    thresholds:\n      log_window_s: 1m30s\n", encoding="utf-8")
    assert main(["-c", str(config), "config", "show"]) == 0
    assert "log_window_s: 90.0" in capsys.readouterr().out
