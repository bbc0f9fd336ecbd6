"""The runner's scheduling rules and every output format (pure logic: checks defined here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from es_doctor.checks.context import CheckContext
from es_doctor.checks.registry import CheckSpec, Outcome, crit, ev, grade, ok, warn
from es_doctor.config import Target
from es_doctor.errors import ExitStatus
from es_doctor.findings import REPORT_SCHEMA_VERSION, Status
from es_doctor.render import Format, renderer
from es_doctor.runner import run_checks, with_prerequisites


def spec(check_id: str, fn: object, requires: tuple[str, ...] = (), components: tuple[str, ...] = ()) -> CheckSpec:
    return CheckSpec(check_id, check_id.split(".", maxsplit=1)[0], f"desc of {check_id}", fn,  # type: ignore[arg-type]
                     requires, components)


def sleepy(seconds: float) -> object:
    def fn(ctx: CheckContext) -> Outcome:
        time.sleep(seconds)
        return ok("slept")
    return fn


def test_failed_prerequisite_skips_dependants_with_reason() -> None:
    specs = [
        spec("vectors.qdrant", lambda ctx: crit("Qdrant unreachable")),
        spec("vectors.collection", lambda ctx: crit("collection missing"), requires=("vectors.qdrant",)),
    ]
    report = run_checks(specs, CheckContext(Target()))
    by_id = {f.id: f for f in report.findings}
    assert by_id["vectors.collection"].status is Status.SKIP
    assert "prerequisite vectors.qdrant is CRIT" in by_id["vectors.collection"].summary
    assert report.exit_status() is ExitStatus.CRITICAL


def test_absent_component_is_skip_not_crit() -> None:
    target = Target(absent={"grafana": "staging has no Grafana"})
    report = run_checks([spec("monitoring.g", lambda ctx: crit("down"), components=("grafana",))],
                        CheckContext(target))
    assert report.findings[0].status is Status.SKIP
    assert "staging has no Grafana" in report.findings[0].summary
    assert report.exit_status() is ExitStatus.OK


def test_checks_run_concurrently_and_timeouts_become_unknown() -> None:
    spans: list[tuple[float, float]] = []

    def timed(ctx: CheckContext) -> Outcome:
        start = time.monotonic()
        time.sleep(0.5)
        spans.append((start, time.monotonic()))
        return ok("slept")

    specs = [spec(f"startup.s{i}", timed) for i in range(6)] + [spec("startup.hang", sleepy(30))]
    begin = time.monotonic()
    report = run_checks(specs, CheckContext(Target()), timeout=1.0, deadline_s=5)
    elapsed = time.monotonic() - begin
    # in parallel: the checks' own spans overlap (whatever the machine's load), and the run is shorter than
    # the six in a row; the hanging check (30 s) was abandoned, not waited for
    assert len(spans) == 6
    assert max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans) >= 2, spans
    assert elapsed < 6 * 0.5, elapsed
    hang = next(f for f in report.findings if f.id == "startup.hang")
    assert hang.status is Status.UNKNOWN and "timed out after 1s" in hang.summary
    assert report.exit_status() is ExitStatus.UNKNOWN


def test_overall_deadline_bounds_the_run() -> None:
    specs = [spec("startup.a", sleepy(30)), spec("startup.b", sleepy(30), requires=("startup.a",))]
    begin = time.monotonic()
    report = run_checks(specs, CheckContext(Target()), timeout=20, deadline_s=1.0)
    assert time.monotonic() - begin < 2.0
    assert all(f.status in (Status.UNKNOWN, Status.SKIP) for f in report.findings)


def test_a_crashing_check_is_a_finding_not_a_traceback() -> None:
    def boom(ctx: CheckContext) -> Outcome:
        raise RuntimeError("kaboom")

    report = run_checks([spec("startup.boom", boom)], CheckContext(Target()))
    assert report.findings[0].status is Status.UNKNOWN
    assert "kaboom" in report.findings[0].summary


def test_with_prerequisites_pulls_dependencies() -> None:
    a = spec("startup.a", sleepy(0))
    b = spec("startup.b", sleepy(0), requires=("startup.a",))
    assert [s.id for s in with_prerequisites([b], {"startup.a": a, "startup.b": b})] == ["startup.a", "startup.b"]


def test_grade_thresholds_are_strictly_over() -> None:
    assert grade(100, 100, 500) is Status.OK
    assert grade(100.1, 100, 500) is Status.WARN
    assert grade(500.1, 100, 500) is Status.CRIT


def sample_report() -> object:
    specs = [
        spec("startup.ok", lambda ctx: ok("fine", ev("latency", 3.2, unit="ms"))),
        spec("performance.latency", lambda ctx: warn("p95 180 ms", ev("p95", 180.0, "> 100 ms WARN", "ms"))),
        spec("vectors.collection", lambda ctx: crit("collection task_vectors does not exist")),
    ]
    # a target with the service's config file: vector-cache-tune can run there (its cure is printed)
    return run_checks(specs, CheckContext(Target(service={"config_file": "/srv/config.yaml"}), "lab"))


def test_table_reads_like_flutter_doctor() -> None:
    text = renderer(Format.table)(sample_report(), False)  # type: ignore[arg-type]
    assert "[✗] vectors" in text and "[!] performance" in text and "[✓] startup" in text
    # the cures come from es_doctor.cures (the one table), by finding id
    assert "fix: es-doctor -t lab fix qdrant-collection-recreate" in text
    assert "fix: es-doctor -t lab fix vector-cache-tune" in text
    assert "p95: 180 ms (threshold > 100 ms WARN)" in text
    assert "(exit 2)" in text


def test_table_opens_with_the_problems_and_its_last_line_names_them() -> None:
    """#21 item 5: the table printed 34 rows by class (the CRIT scrolled away on a 40-line terminal) and
    closed with "2 issues found" without naming them."""
    from es_doctor.render.table import render

    report = sample_report()
    text = render(report)  # type: ignore[arg-type]
    lines = text.splitlines()
    assert lines[1] == "Problems (2):"
    crit = next(i for i, line in enumerate(lines) if "(vectors.collection)" in line)
    warn = next(i for i, line in enumerate(lines) if "(performance.latency)" in line)
    first_class = next(i for i, line in enumerate(lines) if line.startswith("[") and "]" in line[:4])
    assert crit < warn < first_class  # most severe first, and both before the rows by class
    assert lines[crit + 1].strip().startswith("fix: es-doctor -t lab fix qdrant-collection-recreate")
    assert lines[-1].startswith("• 2 problems: vectors.collection (CRIT), performance.latency (WARN). 1 OK in ")
    assert "issues found" not in text
    assert text.count("(performance.latency)") == 1  # a problem is not repeated under its class


def test_passing_rows_collapse_on_a_terminal_unless_all() -> None:
    from es_doctor.render.table import render

    report = sample_report()
    collapsed = render(report, collapsed=True)  # type: ignore[arg-type]
    assert "(startup.ok)" not in collapsed and "[✓] startup 1 OK" in collapsed
    assert "1 passing or skipped rows collapsed: --all (or -v) shows every row" in collapsed
    assert "(startup.ok)" in render(report, collapsed=False)  # type: ignore[arg-type]
    assert "latency: 3.2 ms" in render(report, detailed=True, collapsed=True)  # type: ignore[arg-type]


def test_evidence_is_words_and_units() -> None:
    """Evidence printed "241664000 B" and raw JSON log lines joined by commas."""
    from es_doctor.findings import Evidence
    from es_doctor.render.table import MAX_EVIDENCE_CHARS, evidence_text

    assert evidence_text(Evidence(name="memory", value=241664000, unit="bytes")) == "memory: 230 MiB"
    assert evidence_text(Evidence(name="p95", value=0.0483, unit="s")) == "p95: 48.3 ms"
    assert evidence_text(Evidence(name="errors", value=1e3)) == "errors: 1000"
    assert evidence_text(Evidence(name="share", value=0.714, unit="%", threshold="> 1 %")) == \
        "share: 0.71 % (threshold > 1 %)"
    log = ('{"timestamp":"2026-12-07T04:02:15.972Z","level":"WARN","component":"http","message":"SLOW request: '
           'POST /api/v1/tasks","error":null,"duration_ms":612.4}')
    assert evidence_text(Evidence(name="latest", value=log)) == \
        "latest: 04:02:15 WARN http: SLOW request: POST /api/v1/tasks (612 ms)"
    assert evidence_text(Evidence(name="latest", value=[log, log])) == \
        "latest: 04:02:15 WARN http: SLOW request: POST /api/v1/tasks (612 ms) (and 1 earlier)"
    cut = log[:110]  # a line the check cut short is still read as words
    assert evidence_text(Evidence(name="latest", value=cut)) == "latest: 04:02:15 WARN http: SLOW request: POST /api/v"
    line = '{"timestamp": "2026-12-07T03:08:53Z",\n "level": "ERROR", "message": "' + "x" * 300 + '"}'
    text = evidence_text(Evidence(name="latest error", value=line))
    assert "\n" not in text and len(text) <= MAX_EVIDENCE_CHARS and text.endswith("…")


def test_json_follows_the_versioned_schema() -> None:
    data = json.loads(renderer(Format.json)(sample_report(), False))  # type: ignore[arg-type]
    assert data["schema_version"] == REPORT_SCHEMA_VERSION
    assert data["status"] == "CRIT" and data["exit_code"] == 2
    assert {f["class"] for f in data["findings"]} == {"startup", "performance", "vectors"}
    from es_doctor.render.json_report import report_schema

    schema = report_schema()
    assert set(schema["required"]) >= {"schema_version", "findings", "status", "exit_code"}


def test_junit_parses_with_a_junit_reader(tmp_path: object) -> None:
    from junitparser import JUnitXml

    text = renderer(Format.junit)(sample_report(), False)  # type: ignore[arg-type]
    ET.fromstring(text)
    path = __import__("pathlib").Path(str(tmp_path)) / "r.xml"
    path.write_text(text)
    xml = JUnitXml.fromfile(str(path))
    cases = [case for suite in xml for case in suite]
    assert len(cases) == 3
    assert sum(1 for c in cases if not c.is_passed) == 2


#: one perfdata item per the plugin guidelines: 'label'=value[UOM];[warn];[crit];[min];[max], plain decimals
NUM = r"-?[0-9]+(?:\.[0-9]+)?"
PERFDATA = re.compile(rf"'[a-z0-9_.-]+'={NUM}(?:s|ms|%|B)?;(?:{NUM}:?)?;(?:{NUM}:?)?;(?:{NUM})?;(?:{NUM})?")


def test_nagios_status_line_perfdata_and_long_text() -> None:
    text = renderer(Format.nagios)(sample_report(), False)  # type: ignore[arg-type]
    first, *long_text = text.split("\n")
    status, perf = first.split(" | ")
    assert status.startswith("ES-DOCTOR CRITICAL: vectors.collection CRIT")
    for item in perf.split(" "):
        assert PERFDATA.fullmatch(item), item
    assert "'performance.latency.p95'=180ms;100;;0;" in perf.split(" ")
    # the plugin API's long text: one line per finding that is not OK, the most severe first, with its cure
    assert long_text == ["CRIT vectors.collection: collection task_vectors does not exist "
                         "(fix: es-doctor -t lab fix qdrant-collection-recreate)",
                         "WARN performance.latency: p95 180 ms (fix: es-doctor -t lab fix vector-cache-tune)"]


def test_nagios_perfdata_numbers_labels_and_limits() -> None:
    from es_doctor.render.nagios import number

    memory = spec("performance.memory", lambda ctx: warn(
        "memory 90 %", ev("memory", 90.19, "> 85 % WARN, > 95 % CRIT", "%"), ev("usage", 59187200.0, unit="B"),
        ev("limit", 268435456, unit="B"), ev("source", "docker stats")))
    uptime = spec("monitoring.uptime",
                  lambda ctx: warn("uptime 99.5 %", ev("uptime", 99.5, "WARN < 99.9, CRIT < 99", "%")))
    health = spec("startup.health", lambda ctx: ok("fine", ev("/health", 200), ev("port", 8080),
                                                   ev("huge", 1.5e20), ev("tiny", 1e-9), ev("nan", float("nan"))))
    report = run_checks([memory, uptime, health], CheckContext(Target(), "lab"))
    perf = renderer(Format.nagios)(report, False).split("\n")[0].split(" | ")[1].split(" ")  # type: ignore[arg-type]
    for item in perf:
        assert PERFDATA.fullmatch(item), item
        assert "e+" not in item and "e-" not in item and "._" not in item
    assert "'performance.memory.usage'=59187200B;;;0;268435456" in perf
    assert "'performance.memory.memory'=90.19%;85;95;0;100" in perf
    assert "'monitoring.uptime.uptime'=99.5%;99.9:;99:;0;100" in perf  # lower is worse: alert below
    assert "'startup.health.health'=200;;;0;" in perf
    assert "'startup.health.huge'=150000000000000000000;;;0;" in perf
    assert not any(item.startswith(("'startup.health.port'", "'startup.health.nan'")) for item in perf)
    assert number(1e-9) == "0" and number(0.125) == "0.125" and number(-2.5) == "-2.5"


def test_nagios_with_nothing_wrong_is_one_line() -> None:
    report = run_checks([spec("startup.ok", lambda ctx: ok("fine"))], CheckContext(Target(), "lab"))
    text = renderer(Format.nagios)(report, False)  # type: ignore[arg-type]
    assert "\n" not in text and text.startswith("ES-DOCTOR OK: 1 check OK | ")


@pytest.mark.skipif(shutil.which("promtool") is None and __import__("os").environ.get("CI") != "true",
                    reason="promtool not installed")
def test_prometheus_format_passes_promtool() -> None:
    text = renderer(Format.prometheus)(sample_report(), False) + "\n"  # type: ignore[arg-type]
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # the same series as serve's: one per check, its value the status, no status label
    assert 'es_doctor_check_status{check="vectors.collection",class="vectors",target="lab"} 2.0' in text
    assert 'status="' not in text.split("es_doctor_check_duration_seconds")[0]


def test_shipped_report_schema_is_current() -> None:
    from pathlib import Path

    from es_doctor.render.json_report import report_schema

    shipped = json.loads((Path(__file__).parents[2] / "docs" / "report.schema.json").read_text())
    assert shipped == report_schema(), "regenerate docs/report.schema.json (see README)"


@pytest.mark.parametrize(("value", "text"), [
    (2087.4, "p95: 2087 ms"), (12.345, "p95: 12.3 ms"), (0.0004, "p95: 0.0004 ms"),
    (["qdrant", "postgres"], "p95: qdrant, postgres ms"), ({"notification-manager": "CRIT"},
                                                           "p95: notification-manager (CRIT) ms"),
    ([], "p95: none ms"),
])
def test_evidence_reads_as_words_never_a_repr_or_an_exponent(value: object, text: str) -> None:
    from es_doctor.findings import Evidence

    rendered = Evidence(name="p95", value=value, unit="ms").render()
    assert rendered == text
    assert "[" not in rendered and "{" not in rendered and "e+" not in rendered
