"""Hostile inputs: bombs are refused fast with file:line, bad values refused with their exit codes,
secrets masked in every form, foreign text sanitized, malformed local files give a clear message.

CLI behaviour is tested on the real ``es-doctor`` run as a subprocess; pure logic in-process.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import stat
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from es_doctor import secrets
from es_doctor.config import Target, load_config
from es_doctor.errors import CantCreateError, ConfigError, UnavailableError
from es_doctor.findings import Evidence, Finding, Report, Status
from es_doctor.probes import postgres
from es_doctor.render import Format, renderer
from es_doctor.yamlsource import MAX_DEPTH, YamlSyntaxError, load_yaml_file, parse_yaml
from support import CliResult, run_cli
from support.protobuf import field as pb_field
from support.protobuf import varint as pb_varint

PY = sys.executable

BILLION_LAUGHS = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)]) + "\n"


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120,
        stdin: str | None = None) -> CliResult:
    """es-doctor isolated under ``cwd``, with no Docker engine to find."""
    return run_cli(*args, home=cwd, cwd=cwd, env={"DOCKER_HOST": f"unix://{cwd}/no-docker.sock", **(env or {})},
                   timeout=timeout, input=stdin)


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(("text", "secret"), [
    ("postgresql://u:S3CRET@h:5432/db", "S3CRET"),
    ("postgresql://u@h/db?sslmode=disable&password=S3CRET", "S3CRET"),
    ("host=h user=u password=S3CRET dbname=d", "S3CRET"),
    ("host=h password='S3 CRET' dbname=d", "S3 CRET"),
    ("GET http://admin:S3CRET@prometheus:9090/api/v1/query failed", "S3CRET"),
    ("redis://:S3CRET@redis:6379/0", "S3CRET"),
    ("https://hooks.example/x?token=S3CRET&a=1", "S3CRET"),
    ('body: {"user": "u", "password": "S3CRET", "n": 1}', "S3CRET"),
    ('{"api_key":"S3CRET"}', "S3CRET"),
])
def test_scrub_masks_every_password_form(text: str, secret: str) -> None:
    masked = secrets.scrub(text)
    assert secret not in masked and secrets.MASK in masked


def test_scrub_masks_known_values_in_their_encoded_forms_and_keeps_env_references() -> None:
    assert secrets.scrub("x SEK%40RET y", ["SEK@RET"]) == f"x {secrets.MASK} y"
    assert secrets.scrub("postgresql://u:env:PGPW@h/db") == "postgresql://u:env:PGPW@h/db"


@pytest.mark.parametrize(("text", "secret"), [
    ("echo: Basic c3ZjOlVTRVJJTkZPLVBMQU5URUQ=", "c3ZjOlVTRVJJTkZPLVBMQU5URUQ"),
    ("upstream said Authorization: Bearer abcDEF123456", "abcDEF123456"),
    ("headers={'Authorization': 'Digest username=x, response=9f8e7d'}", "9f8e7d"),
    ("proxy sent Cookie: session=AbC123; theme=dark", "AbC123"),
    ("login failed for bob session=8f3a9c2e from 10.0.0.1", "8f3a9c2e"),
    ("redirect ?next=/x&sid=Z9y8X7w6", "Z9y8X7w6"),
    ("X-Api-Key: k-123-secret", "k-123-secret"),
])
def test_scrub_masks_credential_patterns_in_log_lines_and_echoes(text: str, secret: str) -> None:
    masked = secrets.scrub(text)
    assert secret not in masked and secrets.MASK in masked, masked


def test_scrub_keeps_prose_and_masks_the_base64_forms_of_known_secrets() -> None:
    import base64

    for prose in ("Basic authentication failed", "Bearer token expired", "the session ended"):
        assert secrets.scrub(prose) == prose
    for form in (base64.b64encode(b"TOKEN-42x").decode(), base64.urlsafe_b64encode(b"TOKEN-42x").decode()):
        assert secrets.scrub(f"seen {form} here", ["TOKEN-42x"]) == f"seen {secrets.MASK} here"
    target = Target.model_validate({"service": {"api_url": "http://svc:PA%40SS-word@127.0.0.1:1"}})
    known = secrets.secret_values(target)
    basic = base64.b64encode(b"svc:PA@SS-word").decode()
    assert basic in known and secrets.scrub(f"x {basic} y", known) == f"x {secrets.MASK} y"


def test_mask_data_masks_secret_named_keys_and_dsn_passwords() -> None:
    data = {"api_key": "abc123", "dsn": "postgresql://u:pw123@h/db", "webhook": "https://h/T/abc",
            "nested": [{"password": "x"}], "plain": "http://u:pw9@h/"}
    masked = secrets.mask_data(data)
    assert masked["api_key"] == secrets.MASK and masked["webhook"] == secrets.MASK
    assert masked["dsn"] == f"postgresql://u:{secrets.MASK}@h/db"
    assert masked["nested"][0]["password"] == secrets.MASK
    assert "pw9" not in masked["plain"]
    assert secrets.mask_data({"env": {"OPENAI_API_KEY": "set", "DB_PASSWORD": "unset"}}) == {
        "env": {"OPENAI_API_KEY": "set", "DB_PASSWORD": "unset"}}  # presence is not a secret


def test_an_env_password_is_percent_encoded_in_a_url_and_quoted_in_key_value(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW", "SEK@RET:/4x' \\")
    url = secrets.resolve_secret("postgresql://u:env:PW@db.example:5432/email_sender")
    assert url is not None and "db.example" in url
    assert postgres.split_dsn(url) == ("postgresql://u@db.example:5432/email_sender", "SEK@RET:/4x' \\")
    kv = secrets.resolve_secret("host=db.example password=env:PW dbname=d")
    assert kv is not None
    clean, password = postgres.split_dsn(kv)
    assert password == "SEK@RET:/4x' \\" and "password" not in clean and "host=db.example" in clean


def test_split_dsn_drops_a_query_password_and_decodes_it() -> None:
    clean, password = postgres.split_dsn("postgresql://u@h/db?sslmode=disable&password=a%20b%40c&application_name=a+b")
    assert password == "a b@c"
    assert clean == "postgresql://u@h/db?sslmode=disable&application_name=a+b"


def test_unset_needed_secret_is_named() -> None:
    target = Target.model_validate({"postgres": {"password": "env:ES_DOCTOR_TEST_SURELY_UNSET"}})
    assert ("postgres.password", "ES_DOCTOR_TEST_SURELY_UNSET") in secrets.unset_secrets(target)


@pytest.mark.parametrize(("status", "expected"), [(Status.CRIT, Status.UNKNOWN), (Status.OK, Status.OK)])
def test_a_failing_check_with_an_unset_secret_names_the_variable(status: Status, expected: Status) -> None:
    from es_doctor.checks.context import CheckContext
    from es_doctor.checks.registry import CheckSpec, Outcome
    from es_doctor.runner import run_checks

    spec = CheckSpec("startup.pgtest", "startup", "d",
                     lambda _ctx: Outcome(status, "fe_sendauth: no password supplied"), components=("postgres",))
    target = Target.model_validate({"postgres": {"password": "env:ES_DOCTOR_TEST_SURELY_UNSET"}})
    [finding] = run_checks([spec], CheckContext(target, "t")).findings
    assert finding.status is expected
    if expected is Status.UNKNOWN:  # the cause, not a restart hint; what the check saw kept
        assert "ES_DOCTOR_TEST_SURELY_UNSET" in finding.summary and finding.runbook is None
        assert any("fe_sendauth" in str(e.value) for e in finding.evidence)


def test_strip_control_removes_escape_sequences_and_nul() -> None:
    assert secrets.strip_control("a\x1b[2Jb\x00c\rd\x07\u009be\tf\ng") == "a[2Jbcde\tf\ng"


# --------------------------------------------------------------------------- YAML bombs and limits


def test_billion_laughs_config_is_refused_fast_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS, encoding="utf-8")
    assert len(BILLION_LAUGHS) < 400
    started = time.monotonic()
    with pytest.raises(YamlSyntaxError, match="aliases") as info:
        load_yaml_file(path)
    assert time.monotonic() - started < 0.5
    assert info.value.line is not None
    result = cli("-c", str(path), "config", "show", cwd=tmp_path)
    assert result.returncode == 78, result.stderr
    assert f"{path}:" in result.stderr and "70" not in str(result.returncode)


def test_billion_laughs_runbook_is_exit_65(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text("id: bomb\ntitle: t\nclass: deploy\nsteps: []\n" + BILLION_LAUGHS.replace("a:", "x:", 1),
                    encoding="utf-8")
    calm = tmp_path / "calm.yaml"
    calm.write_text("id: calm\ntitle: t\nclass: deploy\nsteps: []\n", encoding="utf-8")
    baseline = cli("runbooks", "validate", str(calm), cwd=tmp_path)
    result = cli("runbooks", "validate", str(path), cwd=tmp_path)
    assert result.returncode == 65, result.stderr
    assert f"{path}:" in result.stderr
    # refused by the alias bound, not by expanding: no more memory than a plain runbook (+64 MiB)
    assert 0 < result.peak_rss < baseline.peak_rss + 64 * 2**20, (result.peak_rss, baseline.peak_rss)


def test_a_few_reused_anchors_are_fine() -> None:
    doc = parse_yaml("base: &b {x: 1}\none: *b\ntwo: *b\n", "<t>")
    assert doc.data["two"] == {"x": 1}


@pytest.mark.parametrize("text", ["&a [*a]\n", "a: &x\n  b: [1, *x]\n"])
def test_a_document_that_contains_itself_is_refused_with_its_line_not_a_crash(tmp_path: Path, text: str) -> None:
    """A recursive alias once made the line map recurse for ever (RecursionError, a traceback)."""
    with pytest.raises(YamlSyntaxError, match="contains itself") as info:
        parse_yaml(text, "<t>")
    assert info.value.line == text.count("\n")
    path = tmp_path / "loop.yaml"
    path.write_text(text, encoding="utf-8")
    result = cli("-c", str(path), "config", "show", cwd=tmp_path)
    assert result.returncode == 78, result.stderr
    assert f"{path}:" in result.stderr and "contains itself" in result.stderr


@pytest.mark.parametrize("suffix", ["yaml-config", "runbook"])
def test_deep_nesting_is_refused_not_a_crash(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 30000 + "]" * 30000 + "\n", encoding="utf-8")
    if suffix == "runbook":
        result = cli("runbooks", "validate", str(path), cwd=tmp_path)
        assert result.returncode == 65, result.stderr
    else:
        result = cli("-c", str(path), "config", "show", cwd=tmp_path)
        assert result.returncode == 78, result.stderr
    assert f"{path}:1" in result.stderr and f"deeper than {MAX_DEPTH}" in result.stderr


def test_a_huge_config_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("targets: {}\n" + "# padding\n" * 2_000_000, encoding="utf-8")  # ~20 MB
    started = time.monotonic()
    with pytest.raises(YamlSyntaxError, match="larger than"):
        load_yaml_file(path)
    assert time.monotonic() - started < 0.5
    result = cli("-c", str(path), "config", "show", cwd=tmp_path)
    assert result.returncode == 78 and str(path) in result.stderr


@pytest.mark.parametrize("kind", ["aliases", "depth", "size", "fifo"])
def test_each_yaml_refusal_takes_well_under_a_second_in_process(tmp_path: Path, kind: str) -> None:
    from es_doctor.runbooks.loader import RunbookError, load_runbook_file

    path = tmp_path / "rb.yaml"
    if kind == "aliases":
        path.write_text("id: x\n" + BILLION_LAUGHS.replace("a:", "q:", 1), encoding="utf-8")
    elif kind == "depth":
        path.write_text("id: " + "{a: " * 30000 + "1" + "}" * 30000 + "\n", encoding="utf-8")
    elif kind == "size":
        path.write_text("id: x\n" + "#" * 20_000_000 + "\n", encoding="utf-8")
    else:
        os.mkfifo(path)
    started = time.monotonic()
    with pytest.raises(RunbookError) as info:
        load_runbook_file(path)
    assert time.monotonic() - started < 0.5
    assert str(path) in info.value.message
    if kind in ("aliases", "depth"):
        assert info.value.line is not None


def test_a_fifo_given_to_runbooks_validate_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "rb.yaml"
    os.mkfifo(fifo)
    # a reader that opened the FIFO would block for ever: the timeout (generous for a loaded machine) fails it
    result = cli("runbooks", "validate", str(fifo), cwd=tmp_path, timeout=120)
    assert result.returncode == 65, result.stderr
    assert "not a regular file" in result.stderr


@pytest.mark.parametrize("field", ["timeout: 1e300", "delay: 1e300"])
def test_a_runbook_step_duration_is_bounded(tmp_path: Path, field: str) -> None:
    """Issue 24 item 11: a step timeout of 1e300 validated, then the engine's clock arithmetic overflowed."""
    path = tmp_path / "rb.yaml"
    path.write_text(f"id: long\ntitle: long\nclass: deploy\nsteps:\n  - name: s\n    action: notify\n"
                    f"    {field}\n    inputs: {{message: hi}}\n", encoding="utf-8")
    result = cli("runbooks", "validate", str(path), cwd=tmp_path)
    assert result.returncode != 0 and field.split(":", maxsplit=1)[0] in result.stdout + result.stderr, result.stdout
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- template bombs


def _bomb_runbook(directory: Path, expression: str) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / "bomb.yaml"
    path.write_text(f"id: bomb\ntitle: bomb\nclass: deploy\nsteps:\n  - name: boom\n    action: notify\n"
                    f"    inputs: {{message: \"{expression}\"}}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("expression", ["{{ 7 ** 900000000 }}", "{{ 'A' * 300000000 }}",
                                        "x {{ 10 ** (10 ** 10) }}", "{{ '%0999999999d' % 1 }}"])
def test_template_bombs_neither_hang_validation_nor_the_dry_run_nor_emergency(tmp_path: Path,
                                                                               expression: str) -> None:
    path = _bomb_runbook(tmp_path / "rbs", expression)
    config = tmp_path / "es-doctor.yaml"
    config.write_text(f"runbook_dirs: [{tmp_path / 'rbs'}]\nstate_dir: {tmp_path / 'state'}\n"
                      f"audit_log: {tmp_path / 'state' / 'audit.jsonl'}\n", encoding="utf-8")
    # the calibration: the same commands on a harmless template, on this machine, now
    calm = _bomb_runbook(tmp_path / "calm", "{{ 7 * 9 }}")
    baseline = cli("runbooks", "validate", str(calm), cwd=tmp_path)
    assert baseline.returncode == 0 and baseline.peak_rss > 0, baseline.output
    bound = baseline.peak_rss + 256 * 2**20  # a bomb that ran would need GiBs (or never end: the timeout)

    validate = cli("runbooks", "validate", str(path), cwd=tmp_path)
    assert validate.returncode == 0, validate.stderr  # parsed, never evaluated
    assert validate.peak_rss < bound, (validate.peak_rss, baseline.peak_rss)
    dry = cli("-c", str(config), "fix", "bomb", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "template error" in dry.stdout  # refused by a bound, not by running out of memory
    assert dry.peak_rss < bound, (dry.peak_rss, baseline.peak_rss)
    run = cli("-c", str(config), "fix", "bomb", "--yes", cwd=tmp_path)
    assert run.returncode == 1 and "FAILED" in run.stdout, run.stdout + run.stderr
    assert "template error" in run.output and "MemoryError" not in run.output, run.output
    assert run.peak_rss < bound, (run.peak_rss, baseline.peak_rss)
    emergency = cli("-c", str(config), "emergency", "maintenance", "enable", "--dry-run", cwd=tmp_path)
    assert emergency.returncode == 0, emergency.stdout + emergency.stderr
    assert emergency.peak_rss < bound, (emergency.peak_rss, baseline.peak_rss)


@pytest.mark.parametrize("template", ["{% for i in params.x %}{{ i }}{% endfor %}", "{{ params.x.upper() }}",
                                      "{{ params.x | replace('a', 'b') }}"])
def test_statements_calls_and_unlisted_filters_are_refused_at_validation(tmp_path: Path, template: str) -> None:
    path = tmp_path / "rb.yaml"
    path.write_text("id: t\ntitle: t\nclass: deploy\nparams: {x: {type: str, default: ab}}\nsteps:\n"
                    f"  - name: s\n    action: notify\n    inputs: {{message: \"{template}\"}}\n", encoding="utf-8")
    result = cli("runbooks", "validate", str(path), cwd=tmp_path)
    assert result.returncode == 65 and f"{path}:8" in result.stderr, result.stderr


@pytest.mark.parametrize("value", [".nan", ".inf", "1e999"])
def test_a_runbook_step_timeout_must_be_finite(tmp_path: Path, value: str) -> None:
    path = tmp_path / "rb.yaml"
    path.write_text("id: t\ntitle: t\nclass: deploy\nsteps:\n  - name: s\n    action: notify\n"
                    f"    inputs: {{message: hi}}\n    timeout: {value}\n", encoding="utf-8")
    result = cli("runbooks", "validate", str(path), cwd=tmp_path)
    assert result.returncode == 65 and f"{path}:8" in result.stderr and "timeout" in result.stderr, result.stderr


# --------------------------------------------------------------------------- config values


@pytest.mark.parametrize(("snippet", "key"), [
    ("thresholds: {latency_p95_warn_ms: .nan}", "latency_p95_warn_ms"),
    ("thresholds: {latency_p95_warn_ms: 1e999}", "latency_p95_warn_ms"),
    ("check_timeout_s: -5", "check_timeout_s"),
    ("deadline_s: 0", "deadline_s"),
    ("service: {memory_limit: lots}", "memory_limit"),
    ("absent: {grafna: no grafana}", "absent"),
    # issue 24 item 11: these passed, then diagnose died with OverflowError (exit 70)
    ("check_timeout_s: 1e300", "check_timeout_s"),
    ("deadline_s: 1e300", "deadline_s"),
    ("thresholds: {scrape_window_s: 1e300}", "scrape_window_s"),
    ("thresholds: {uptime_window_s: 1e300}", "uptime_window_s"),
    ("load: {max_duration_s: 1e300}", "max_duration_s"),
])
def test_bad_values_are_refused_with_file_line_and_exit_78(tmp_path: Path, snippet: str, key: str) -> None:
    path = tmp_path / "es-doctor.yaml"
    path.write_text(f"targets:\n  t:\n    description: x\n    {snippet}\n", encoding="utf-8")
    result = cli("-c", str(path), "config", "show", cwd=tmp_path)
    assert result.returncode == 78, result.stdout + result.stderr
    assert f"{path}:4" in result.stderr and key in result.stderr


HUGE = "100000000000000"  # seconds: a number YAML reads as a number, far past every bound


HOOK = "escalation: {channels: {h: {type: webhook, url: 'env:X', %s: %s}}}"


@pytest.mark.parametrize("snippet", [f"serve: {{interval_s: {HUGE}}}", f"serve: {{history_retention_days: {HUGE}}}",
                                     HOOK % ("timeout_s", HUGE), HOOK % ("backoff_s", HUGE)])
def test_top_level_durations_are_bounded_too(tmp_path: Path, snippet: str) -> None:
    path = tmp_path / "es-doctor.yaml"
    path.write_text(f"{snippet}\ntargets:\n  t:\n    description: x\n", encoding="utf-8")
    result = cli("-c", str(path), "config", "show", cwd=tmp_path)
    assert result.returncode == 78 and "less than or equal" in result.stderr, result.stdout + result.stderr


def test_diagnose_deadline_and_timeout_options_are_bounded(tmp_path: Path) -> None:
    for option in ("--deadline", "--timeout"):
        result = cli("diagnose", option, "1e300", "--check", "startup.api-port", cwd=tmp_path)
        assert result.returncode == 64 and "Traceback" not in result.stderr, result.stderr


def test_one_targets_failure_never_loses_another_targets_report(monkeypatch: pytest.MonkeyPatch) -> None:
    from es_doctor import runner

    real = runner.diagnose

    def diagnose(target: Target, name: str, *args: Any, **kwargs: Any) -> Report:
        if name == "broken":
            raise OverflowError("timeout value is too large")
        return real(target, name, *args, **kwargs)

    monkeypatch.setattr(runner, "diagnose", diagnose)
    good = Target.model_validate({"service": {"api_url": "http://127.0.0.1:9"}})
    reports = runner.run_many([("broken", good), ("good", good)], ["startup.api-port"], deadline_s=10)
    assert [r.target for r in reports] == ["broken", "good"]
    assert [f.id for f in reports[1].findings] == ["startup.api-port"]
    [failed] = reports[0].findings
    assert failed.status is Status.UNKNOWN and "OverflowError: timeout value is too large" in failed.summary


def test_a_nan_env_override_is_refused(tmp_path: Path) -> None:
    result = cli("config", "show", cwd=tmp_path, env={"ES_DOCTOR_THRESHOLDS__LATENCY_P95_WARN_MS": "nan"})
    assert result.returncode == 78 and "ES_DOCTOR_THRESHOLDS__LATENCY_P95_WARN_MS" in result.stderr


@pytest.mark.parametrize("raw", ["s3cret #2", "0777", "yes", "12345", "[a, b]", "null"])
def test_env_overrides_of_text_fields_are_taken_verbatim(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         raw: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("ES_DOCTOR_POSTGRES__PASSWORD", raw)
    monkeypatch.setenv("ES_DOCTOR_SERVICE__CONTAINER", raw)
    monkeypatch.setenv("ES_DOCTOR_THRESHOLDS__LATENCY_P95_WARN_MS", "150")
    monkeypatch.setenv("ES_DOCTOR_CHECK_TIMEOUT_S", "7")
    target = load_config().target
    assert target.postgres.password == raw and target.service.container == raw
    assert target.thresholds.latency_p95_warn_ms == 150.0 and target.check_timeout_s == 7.0


def test_an_unknown_env_override_still_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("ES_DOCTOR_SERVICE__NOPE", "1")
    with pytest.raises(ConfigError, match="unknown key"):
        load_config()


# --------------------------------------------------------------------------- output integrity


def _hostile_report() -> Report:
    import datetime as dt

    evil = "ok\x1b[2J\x1b]0;pwned\x07\x00 see http://admin:PLANTEDPW@h/x"
    return Report(tool_version="t", target="t\x1b[31m", started_at=dt.datetime.now(dt.UTC), duration_ms=1.0,
                  findings=[Finding(**{"id": "startup.health", "class": "startup", "status": Status.CRIT,
                                       "summary": evil, "runbook": "service-restart",
                                       "evidence": [Evidence(name="body\x00", value=evil),
                                                    Evidence(name="rate", value=math.nan),
                                                    Evidence(name="mem", value={"x": evil, "password": "p"})]})])


@pytest.mark.parametrize("fmt", list(Format))
def test_renderers_strip_control_characters_and_secrets(fmt: Format) -> None:
    text = renderer(fmt)(_hostile_report(), True)
    for bad in ("\x1b", "\x00", "\x07", "PLANTEDPW"):
        assert bad not in text, (fmt, text)
    if fmt is Format.junit:
        assert ET.fromstring(text.encode()).tag == "testsuites"
    if fmt is Format.json:
        def refuse(constant: str) -> Any:
            raise AssertionError(f"non-JSON constant {constant}")

        data = json.loads(text, parse_constant=refuse)
        assert data["findings"][0]["evidence"][1]["value"] == "nan"


def test_nan_counters_and_negative_memory_are_left_out_of_a_scrape() -> None:
    from es_doctor.probes.metrics import parse_exposition

    scrape = parse_exposition(
        "# TYPE email_sender_http_requests_total counter\n"
        'email_sender_http_requests_total{status="200"} NaN\n'
        'email_sender_http_requests_total{status="500"} 3\n'
        "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes -1e308\n"
        "# TYPE some_gauge gauge\nsome_gauge +Inf\n")
    assert [s.value for s in scrape.get("email_sender_http_requests_total")] == [3.0]
    assert scrape.total("process_resident_memory_bytes") is None
    assert scrape.get("some_gauge") == []


# --------------------------------------------------------------------------- local files


def test_a_lock_file_holding_a_json_list_gives_a_clear_message(tmp_path: Path) -> None:
    from es_doctor.runbooks.audit import fix_lock

    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "t.lock").write_text("[1, 2, 3]", encoding="utf-8")
    holder = os.open(locks / "t.lock", os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another fix holds it
    try:
        with pytest.raises(UnavailableError, match="another fix is running on target t"), \
                fix_lock(tmp_path, "t", "rb"):
            pass
    finally:
        os.close(holder)


def test_a_lock_path_that_is_a_directory_gives_a_clear_message(tmp_path: Path) -> None:
    from es_doctor.runbooks.audit import fix_lock

    (tmp_path / "locks" / "t.lock").mkdir(parents=True)
    with pytest.raises(UnavailableError, match="cannot open the lock file"), fix_lock(tmp_path, "t", "rb"):
        pass


def test_an_audit_log_that_is_a_directory_is_exit_73_not_70(tmp_path: Path) -> None:
    (tmp_path / "audit.jsonl").mkdir()
    (tmp_path / "rbs").mkdir()
    (tmp_path / "rbs" / "hello.yaml").write_text(
        "id: hello\ntitle: hello\nclass: deploy\nsteps:\n  - name: s\n    action: notify\n"
        "    inputs: {message: hi}\n", encoding="utf-8")
    config = tmp_path / "es-doctor.yaml"
    config.write_text(f"runbook_dirs: [{tmp_path / 'rbs'}]\nstate_dir: {tmp_path / 'state'}\n"
                      f"audit_log: {tmp_path / 'audit.jsonl'}\n", encoding="utf-8")
    result = cli("-c", str(config), "fix", "hello", "--yes", cwd=tmp_path)
    assert result.returncode == int(CantCreateError.exit_status) == 73, result.stderr
    assert "audit log" in result.stderr and "Traceback" not in result.stderr


def test_a_backup_directory_that_names_no_real_time_is_ignored(tmp_path: Path) -> None:
    from es_doctor.backup import BackupError, BackupStore

    bogus = tmp_path / "backups" / "20261399T250000Z"
    bogus.mkdir(parents=True)
    (bogus / "manifest.json").write_text("{}", encoding="utf-8")
    store = BackupStore(tmp_path / "backups")
    assert store.complete() == []
    with pytest.raises(BackupError, match="not a backup id"):
        store.path("20261399T250000Z")
    result = cli("emergency", "status", cwd=tmp_path, env={"ES_DOCTOR_STATE_DIR": str(tmp_path)})
    assert result.returncode != 70 and "internal error" not in result.stderr, result.stderr


def test_a_malformed_user_runbook_is_reported_and_skipped_by_commands_that_do_not_use_it(tmp_path: Path) -> None:
    (tmp_path / "rbs").mkdir()
    (tmp_path / "rbs" / "broken.yaml").write_text("id: broken\ntitle: [unclosed\n", encoding="utf-8")
    config = tmp_path / "es-doctor.yaml"
    config.write_text(f"runbook_dirs: [{tmp_path / 'rbs'}]\nstate_dir: {tmp_path / 'state'}\n"
                      f"audit_log: {tmp_path / 'state' / 'audit.jsonl'}\n", encoding="utf-8")
    other = cli("-c", str(config), "fix", "service-restart", "--dry-run", cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    assert "skipped a malformed runbook" in other.stderr and "broken.yaml:3: bad YAML" in other.stderr
    emergency = cli("-c", str(config), "emergency", "maintenance", "enable", "--dry-run", cwd=tmp_path)
    assert emergency.returncode == 0 and "broken.yaml" in emergency.stderr, emergency.stdout + emergency.stderr
    asked = cli("-c", str(config), "fix", "broken", "--dry-run", cwd=tmp_path)
    assert asked.returncode == 65 and "could not be loaded" in asked.stderr
    validate = cli("runbooks", "validate", str(tmp_path / "rbs" / "broken.yaml"), cwd=tmp_path)
    assert validate.returncode == 65


def test_an_incidents_path_that_is_a_file_is_exit_73_not_70(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "incidents").write_text("not a directory", encoding="utf-8")
    config = tmp_path / "es-doctor.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\naudit_log: {tmp_path / 'state' / 'audit.jsonl'}\n",
                      encoding="utf-8")
    result = cli("-c", str(config), "escalate", "--level", "1", "--severity", "low", "--issue", "x",
                    "--no-attach-diagnosis", cwd=tmp_path)
    assert result.returncode == 73, result.stdout + result.stderr
    assert "incidents" in result.stderr and "internal error" not in result.stderr


def test_a_log_line_nested_beyond_the_json_parser_is_kept_as_text(tmp_path: Path) -> None:
    from es_doctor.escalation import audit_tail

    path = tmp_path / "audit.jsonl"
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n" + '{"event": "last"}\n', encoding="utf-8")
    tail = audit_tail(path)
    assert tail[-1] == {"event": "last"} and isinstance(tail[0], str)


def test_an_audit_log_with_a_60_mb_line_is_tailed_fast(tmp_path: Path) -> None:
    from es_doctor.escalation import audit_tail

    path = tmp_path / "audit.jsonl"
    with path.open("w", encoding="utf-8") as out:
        out.write('{"event": "first"}\n')
        out.write("x" * 60_000_000 + "\n")
        out.write('{"event": "last"}\n')
    started = time.monotonic()
    tail = audit_tail(path)
    assert time.monotonic() - started < 1.0
    assert tail[-1] == {"event": "last"}
    assert all(len(json.dumps(item)) < 1000 for item in tail)


# --------------------------------------------------------------------------- files es-doctor writes


def test_crash_logs_are_private_unpredictable_and_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from es_doctor.cli import main

    monkeypatch.setenv("ES_DOCTOR_STATE_DIR", str(tmp_path / "state"))
    # the old predictable path, planted as a symlink to a victim file: must stay untouched
    victim = tmp_path / "victim"
    victim.write_text("untouched", encoding="utf-8")
    old = Path("/tmp") / f"es-doctor-crash-{os.getpid()}.log"
    if not old.exists() and not old.is_symlink():
        old.symlink_to(victim)
    try:
        first = main._crash_log(RuntimeError("cannot reach postgresql://u:CRASHPW@h/db"))
        second = main._crash_log(RuntimeError("again"))
    finally:
        if old.is_symlink():
            old.unlink()
    assert victim.read_text(encoding="utf-8") == "untouched"
    assert first != second and first.parent == second.parent == tmp_path / "state" / "crash"
    assert stat.S_IMODE(first.stat().st_mode) == 0o600 and stat.S_IMODE(first.parent.stat().st_mode) == 0o700
    assert "CRASHPW" not in first.read_text(encoding="utf-8") and "RuntimeError" in first.read_text(encoding="utf-8")


def test_a_crash_directory_planted_as_a_symlink_is_not_followed(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from es_doctor.cli import main

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "crash").symlink_to(elsewhere)
    monkeypatch.setenv("ES_DOCTOR_STATE_DIR", str(tmp_path / "state"))
    log = main._crash_log(RuntimeError("x"))
    assert elsewhere not in log.parents and list(elsewhere.iterdir()) == []
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700


def test_config_set_keeps_comments_order_mode_and_replaces_atomically(tmp_path: Path) -> None:
    from es_doctor.runbooks.actions import REGISTRY, ActionContext

    config_set, config_restore = REGISTRY["config.set"].call, REGISTRY["config.restore"].call

    path = tmp_path / "config.yaml"
    original = ("# service config\nserver:\n  port: 8080  # the API\n  workers: 4\n"
                "database:\n  password: \"s3cret\"  # keep quoted\nz_last: true\n")
    path.write_text(original, encoding="utf-8")
    path.chmod(0o600)
    work = tmp_path / "state" / "runs" / "r1"
    work.mkdir(parents=True)
    ctx = ActionContext(Target(), "t", work)
    out = config_set({"file": str(path), "key": "server.workers", "value": 8}, ctx)
    assert out["changed"] and out["old"] == 4
    text = path.read_text(encoding="utf-8")
    assert text == original.replace("workers: 4", "workers: 8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if "tmp" in p.name] == []
    backup = Path(out["backup"])
    assert backup.read_text(encoding="utf-8") == original and stat.S_IMODE(backup.stat().st_mode) == 0o600
    again = config_set({"file": str(path), "key": "server.workers", "value": 8}, ctx)
    assert again["changed"] is False
    other = config_set({"file": str(path), "key": "server.port", "value": 9090}, ctx)  # same second: own copy
    assert other["changed"] and other["backup"] != out["backup"]
    assert "port: 9090  # the API" in path.read_text(encoding="utf-8")
    path.chmod(0o644)  # restoring from a private (0600) copy keeps the service's file readable
    restored = config_restore({"file": str(path), "from": out["backup"]}, ctx)
    assert restored["restored_from"] == out["backup"] and path.read_text(encoding="utf-8") == original
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_interrupt_without_rollback_steps_does_not_claim_a_rollback(tmp_path: Path) -> None:
    from es_doctor.runbooks.audit import AuditLog
    from es_doctor.runbooks.engine import Engine, RunOutcome, plan
    from es_doctor.runbooks.loader import load_runbook_file

    path = tmp_path / "rb.yaml"
    path.write_text("id: stopper\ntitle: t\nclass: deploy\nsteps:\n  - name: first\n    action: notify\n"
                    "    inputs: {message: one}\n  - name: stop\n    action: docker.stop\n"
                    "    inputs: {container: c}\n", encoding="utf-8")
    rb = load_runbook_file(path)
    target = Target.model_validate({"absent": {"docker": "unit"}})

    def interrupt(_question: str) -> bool:
        raise KeyboardInterrupt

    engine = Engine(target, "t", AuditLog(tmp_path / "audit.jsonl", []), tmp_path / "state", confirm=interrupt,
                    say=lambda _t: None)
    result = engine.run(plan(rb, target, "t"), yes=False)
    assert result.outcome is RunOutcome.INTERRUPTED
    assert "rolled back" not in result.message and "no rollback steps" in result.message


def test_run_directories_are_private(tmp_path: Path) -> None:
    from es_doctor.files import private_dir

    made = private_dir(tmp_path / "state" / "runs" / "abc")
    for directory in (made, made.parent, made.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_render_is_bounded_even_off_the_main_thread() -> None:
    from es_doctor.runbooks.templating import TemplateError, render

    errors: list[str] = []

    def go() -> None:
        try:
            render("{{ ('x' * 60000) * 60000 }}", {"params": {}})
        except TemplateError as exc:
            errors.append(exc.message)

    worker = threading.Thread(target=go)
    started = time.monotonic()
    worker.start()
    worker.join(5)
    assert not worker.is_alive() and time.monotonic() - started < 1.0
    assert errors and "larger than" in errors[0]


def test_concatenation_chains_stay_bounded() -> None:
    from es_doctor.runbooks.templating import MAX_REPEAT, TemplateError, render

    chunk = f"('A' * {MAX_REPEAT})"
    started = time.monotonic()
    with pytest.raises(TemplateError, match=r"larger than|builds more than"):
        render("{{ " + " + ".join([chunk] * 40) + " }}", {"params": {}})
    assert time.monotonic() - started < 1.0
    assert render("{{ 'ab' + 'cd' }}", {"params": {}}) == "abcd"


#: each builds gigabytes from values that pass every single-operation limit (issue #24 item 7)
AMPLIFIERS = [
    "{{ ('A' * 65536) | list | join('B' * 65536) }}",
    "{{ (['A' * 65536] * 65536) | join }}",
    "{{ (['A' * 65536] * 65536) | string }}",
    "{{ (['A' * 65536] * 65536) ~ '' }}",
    "x {{ ['A' * 65536] * 65536 }}",
    "{{ (['A' * 65536] * 4096) + (['A' * 65536] * 4096) }}",
    "{{ ('A' * 65536) ~ ('A' * 65536) ~ ('A' * 65536) ~ ('A' * 65536) ~ ('A' * 65536) ~ ('A' * 65536)"
    " ~ ('A' * 65536) ~ ('A' * 65536) ~ ('A' * 65536) ~ ('A' * 65536) ~ ('A' * 65536) ~ ('A' * 65536)"
    " ~ ('A' * 65536) ~ ('A' * 65536) ~ ('A' * 65536) ~ ('A' * 65536) ~ ('A' * 65536) ~ ('A' * 65536) }}",
]

_CAPPED_RENDER = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (768 * 1024 * 1024, 768 * 1024 * 1024))
from es_doctor.runbooks.templating import TemplateError, render
started = time.monotonic()
try:
    render(sys.argv[1], {"params": {}})
except TemplateError as exc:
    print("REFUSED", round(time.monotonic() - started, 2), exc)
    sys.exit(0)
except MemoryError:
    print("MEMORY")
    sys.exit(3)
print("RENDERED")
sys.exit(4)
"""


@pytest.mark.parametrize("template", AMPLIFIERS)
def test_template_amplifiers_are_refused_before_they_are_built(template: str) -> None:
    """Under a 768 MB address-space cap the render is refused (a TemplateError naming the bound), fast;
    before the bounds, join/string/~/output built gigabytes (MemoryError, or 16 GB uncapped)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _CAPPED_RENDER, template], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.startswith("REFUSED"), done.stdout + done.stderr
    assert float(done.stdout.split()[1]) < 5.0, done.stdout
    assert "larger than" in done.stdout or "more than" in done.stdout, done.stdout


def test_template_rendering_has_a_wall_clock_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many bounded operations still end at the render's time budget."""
    from es_doctor.runbooks import templating

    monkeypatch.setattr(templating, "RENDER_BUDGET_S", 0.05)
    heavy = " + ".join(["(params.big | max | length)"] * 80)  # each term weighs 60000 items: about 5 ms
    started = time.monotonic()
    with pytest.raises(templating.TemplateError, match="time budget"):
        templating.render("{{ " + heavy + " }}", {"params": {"big": ["x"] * 60000}})
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("operator", ["+", "*"])
def test_a_deeply_nested_expression_is_a_template_error_not_a_traceback(tmp_path: Path, operator: str) -> None:
    """Python's parser refuses more than 200 nested parentheses: the compiled template of a 250-term chain
    raised SyntaxError out of validation and rendering."""
    from es_doctor.runbooks.loader import RunbookError, load_runbook_file
    from es_doctor.runbooks.templating import TemplateError, render

    chain = "{{ " + f" {operator} ".join(["(1 | abs)"] * 250) + " }}"
    with pytest.raises(TemplateError):
        render(chain, {"params": {}})
    path = _bomb_runbook(tmp_path, chain)
    with pytest.raises(RunbookError) as info:
        load_runbook_file(path)
    assert f"{path}:" in info.value.message


def test_small_templates_still_render_after_the_bounds() -> None:
    from es_doctor.runbooks.templating import render

    ctx: dict[str, Any] = {"params": {"names": ["a", "b"], "n": 3}}
    assert render("{{ params.names | join(', ') }}", ctx) == "a, b"
    assert render("x{{ params.n }}-{{ params.names | list | string }}", ctx) == "x3-['a', 'b']"
    assert render("{{ 'a' ~ params.n ~ 'b' }}", ctx) == "a3b"
    assert render("{{ ('ab' * 3) | upper }}", ctx) == "ABABAB"


# --------------------------------------------------------------------------- -o/--out never replaces a non-regular file


def _refused_api_env(tmp_path: Path) -> dict[str, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {"ES_DOCTOR_SERVICE__API_URL": f"http://127.0.0.1:{port}", "HOME": str(tmp_path)}


def _writer_args(command: str, out: Path) -> list[str]:
    if command == "diagnose":
        return ["diagnose", "--check", "startup.api-port", "-f", "prometheus", "-o", str(out)]
    return ["dashboard", "--out", str(out)]


@pytest.mark.parametrize("command", ["diagnose", "dashboard"])
def test_out_to_a_fifo_is_written_through_and_the_fifo_stays(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as reader:  # a FIFO: blocks until the writer opens it
            got.append(reader.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.3)  # the reader is waiting on the FIFO
    result = cli(*_writer_args(command, fifo), cwd=tmp_path, env=_refused_api_env(tmp_path), timeout=60)
    reader.join(10)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced"
    assert result.returncode in (0, 2), result.stderr
    assert got and (b"es_doctor" in got[0] or b"panels" in got[0]), got


@pytest.mark.parametrize("command", ["diagnose", "dashboard"])
def test_out_to_a_fifo_without_a_reader_is_refused_at_once(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    # the calibration: the same command writing a regular file, on this machine, now
    baseline = cli(*_writer_args(command, tmp_path / "report.out"), cwd=tmp_path, env=_refused_api_env(tmp_path),
                   timeout=120)
    result = cli(*_writer_args(command, fifo), cwd=tmp_path, env=_refused_api_env(tmp_path), timeout=120)
    assert result.returncode == CantCreateError.exit_status, result.stderr
    assert "no reader" in result.stderr and "Traceback" not in result.stderr
    # at once: not waiting for a reader (a blocked open would run into the timeout)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and result.elapsed < baseline.elapsed + 15, (baseline.elapsed,
                                                                                             result.elapsed)


@pytest.mark.parametrize("command", ["diagnose", "dashboard"])
def test_out_to_a_character_device_writes_through_and_keeps_the_device(tmp_path: Path, command: str) -> None:
    device = tmp_path / "null"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.stat("/dev/null").st_rdev)  # a copy of /dev/null (root)
    result = cli(*_writer_args(command, device), cwd=tmp_path, env=_refused_api_env(tmp_path), timeout=60)
    assert result.returncode in (0, 2), result.stderr
    info = os.lstat(device)
    assert stat.S_ISCHR(info.st_mode) and info.st_rdev == os.stat("/dev/null").st_rdev, "the device was replaced"


@pytest.mark.parametrize("command", ["diagnose", "dashboard"])
def test_out_to_a_symlink_to_stdout_writes_through_and_keeps_the_link(tmp_path: Path, command: str) -> None:
    link = tmp_path / "out"
    link.symlink_to("/proc/self/fd/1")
    result = cli(*_writer_args(command, link), cwd=tmp_path, env=_refused_api_env(tmp_path), timeout=60)
    assert result.returncode in (0, 2), result.stderr
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1", "the symlink was replaced"
    assert "es_doctor" in result.stdout or "panels" in result.stdout  # written to the pipe stdout is


def test_out_to_a_symlink_to_a_file_replaces_the_file_and_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real" / "dash.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "dash.json"
    link.symlink_to(real)
    result = cli("dashboard", "--out", str(link), cwd=tmp_path, env={"HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and json.loads(real.read_text())["panels"]
    dangling = tmp_path / "nothing.json"
    dangling.symlink_to(tmp_path / "missing" / "x.json")
    result = cli("dashboard", "--out", str(dangling), cwd=tmp_path, env={"HOME": str(tmp_path)})
    assert result.returncode == CantCreateError.exit_status and "symbolic link to nothing" in result.stderr
    assert dangling.is_symlink() and not (tmp_path / "missing").exists()


# --------------------------------------------------------------------------- pprof: bounded in what a parse builds




def _goroutine_profile(samples: list[tuple[bytes, bytes]]) -> bytes:
    """A goroutine profile: location 1 in function main.f, one sample per (packed location ids, values)."""
    return b"".join([
        pb_field(1, pb_field(1, 1) + pb_field(2, 2)),
        *(pb_field(2, pb_field(1, locs) + pb_field(2, values)) for locs, values in samples),
        pb_field(4, pb_field(1, 1) + pb_field(4, pb_field(1, 1))),
        pb_field(5, pb_field(1, 1) + pb_field(2, 3)),
        *(pb_field(6, s.encode()) for s in ("", "goroutine", "count", "main.f")),
    ])


def test_a_small_gzip_profile_of_huge_stacks_is_refused_fast() -> None:
    """Issue 24 item 8: 120 samples x 2 M location ids, ~230 KB gzip, took 83 s and 2.2 GB."""
    import gzip
    import resource

    from es_doctor.profiles.proto import ProfileError, parse

    bomb = gzip.compress(_goroutine_profile([(b"\x01" * 2_000_000, pb_varint(1))] * 120), 6)
    assert len(bomb) < 400_000
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.process_time()
    with pytest.raises(ProfileError, match="more than 1024 locations"):
        parse(bomb)
    assert time.process_time() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 600 * 1024  # KiB: < 600 MiB


def test_many_samples_of_deep_stacks_stop_at_the_total_and_the_cpu_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    from es_doctor.profiles import proto

    assert proto.MAX_TOTAL_FRAMES <= 8_000_000
    monkeypatch.setattr(proto, "MAX_TOTAL_FRAMES", 200_000)  # the same rule, reached sooner
    deep = b"\x01" * 1000
    many = _goroutine_profile([(deep, pb_varint(1))] * 201)
    with pytest.raises(proto.ProfileError, match="frames in all"):
        proto.parse(many)
    with pytest.raises(proto.ProfileError, match="s of CPU"):
        proto.parse(many, cpu_budget_s=0.0)


@pytest.mark.parametrize("values", [[(1 << 64) - 1], [(1 << 63) - 1, (1 << 63) - 1], [1 << 63]])
def test_impossible_sample_values_are_refused_not_summed(values: list[int]) -> None:
    """The bomb printed "184467440737095516160 goroutines": a value past 2^63-1 (or negative), or a total
    past it, is not a real profile."""
    from es_doctor.profiles.proto import ProfileError, parse
    from es_doctor.profiles.summary import summarize

    data = _goroutine_profile([(b"\x01", pb_varint(v)) for v in values])
    with pytest.raises(ProfileError, match="2\\^63-1"):
        summarize(parse(data))
