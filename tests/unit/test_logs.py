"""``es-doctor logs``: parsing, normalisation, --since, the big-file scans and the follower, on real files."""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from es_doctor import logview
from es_doctor.errors import EsDoctorError, ExitStatus
from es_doctor.logview import Patterns, Query, SinceError, normalise, parse_since, to_entry
from es_doctor.probes import logs as plogs
from es_doctor.probes.logs import LineSplitter, Notice, RawLine, follow_file, line_epoch, open_log
from es_doctor.probes.result import FailureKind
from support import CliResult, run_cli

NOW = 1_790_000_000.0  # 2026-09-21


def stamp(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def record(epoch: float, level: str = "INFO", component: str = "http", message: str = "ok", **extra: object) -> str:
    return json.dumps({"timestamp": stamp(epoch), "level": level, "component": component, "message": message,
                       "error": extra.get("error"), "request_id": extra.get("request_id"),
                       "user_id": extra.get("user_id"), "duration_ms": extra.get("duration_ms")})


# --------------------------------------------------------------------------- --since
def test_since_durations_are_seconds_ago() -> None:
    assert parse_since("15m", NOW) == NOW - 900
    assert parse_since("30s", NOW) == NOW - 30
    assert parse_since("2h", NOW) == NOW - 7200
    assert parse_since("1d", NOW) == NOW - 86400
    assert parse_since("1h30m", NOW) == NOW - 5400
    assert parse_since("1.5h", NOW) == NOW - 5400
    assert parse_since(" 15M ", NOW) == NOW - 900


def test_since_iso_times_and_all() -> None:
    assert parse_since("2026-11-29T10:00:00Z", NOW) == datetime(2026, 11, 29, 10, tzinfo=UTC).timestamp()
    assert parse_since("2026-11-29T11:00:00+01:00", NOW) == datetime(2026, 11, 29, 10, tzinfo=UTC).timestamp()
    assert parse_since("2026-11-29T10:00:00", NOW) == datetime(2026, 11, 29, 10, tzinfo=UTC).timestamp()
    assert parse_since("all", NOW) is None


@pytest.mark.parametrize("text", ["15", "soon", "-5m", "0s", "15 minutes", "2026-13-45T99:00:00Z", "", "m"])
def test_since_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(SinceError, match="--since"):
        parse_since(text, NOW)


# --------------------------------------------------------------------------- entries
def test_a_json_record_is_an_entry_with_its_own_time() -> None:
    entry = to_entry(RawLine(record(NOW, "ERROR", "vector-service", "Failed", request_id="req-1").encode()))
    assert (entry.kind, entry.level, entry.field("component"), entry.field("request_id")) == (
        "json", "ERROR", "vector-service", "req-1")
    assert entry.stamp == pytest.approx(NOW, abs=0.001)
    assert entry.field("error") == ""  # null reads as empty


def test_truncated_and_text_lines_are_told_apart() -> None:
    truncated = to_entry(RawLine(b'{"timestamp":"2026-11-29T10:00:00Z","level":"ERR'))
    text = to_entry(RawLine(b"panic: runtime error: index out of range [3] with length 3"))
    cut = to_entry(RawLine(record(NOW).encode()[:40], cut=True))
    array = to_entry(RawLine(b"[1, 2, 3]"))
    assert (truncated.kind, text.kind, cut.kind, array.kind) == ("truncated", "text", "truncated", "text")
    assert text.level == "" and to_entry(RawLine(b"ERROR something broke")).level == "ERROR"


def test_a_warning_level_reads_warn() -> None:
    assert to_entry(RawLine(record(NOW, "warning").encode())).level == "WARN"


def test_query_filters_level_component_and_raw_lines() -> None:
    error = to_entry(RawLine(record(NOW, "ERROR", "EventBus").encode()))
    fatal = to_entry(RawLine(record(NOW, "FATAL", "main").encode()))
    info = to_entry(RawLine(record(NOW, "INFO", "EventBus").encode()))
    text = to_entry(RawLine(b"ERROR plain text"))
    at_error = Query(min_level=logview.LEVEL_RANK["ERROR"])
    assert [at_error.wants(e) for e in (error, fatal, info, text)] == [True, True, False, False]
    with_raw = Query(min_level=logview.LEVEL_RANK["ERROR"], raw=True)
    assert with_raw.wants(text) and not with_raw.wants(to_entry(RawLine(b"INFO plain text")))
    by_component = Query(components=frozenset({"eventbus"}), raw=True)
    assert [by_component.wants(e) for e in (error, fatal, info, text)] == [True, False, True, False]
    window = Query(since=NOW - 60)
    assert window.in_window(error) and not window.in_window(to_entry(RawLine(record(NOW - 61).encode())))


# --------------------------------------------------------------------------- normalisation and patterns
@pytest.mark.parametrize(("message", "shape"), [
    ("Failed to insert vector for task 123", "Failed to insert vector for task <n>"),
    ("request req-123456 by user-789 failed", "request <id> by <id> failed"),
    ("task 3f2b8c1e-9d4a-4b7e-8f00-123456789abc not found", "task <uuid> not found"),
    ("dial tcp 10.0.3.17:6333: connect: connection refused", "dial tcp <ip:port>: connect: connection refused"),
    ("dial tcp [::1]:5432: refused", "dial tcp <ip:port>: refused"),
    ("blocked 192.168.1.20", "blocked <ip>"),
    ("postgres.internal:5432 timed out", "<host:port> timed out"),
    ("SLOW query: SELECT 1 took 1234ms", "SLOW query: SELECT <n> took <dur>"),
    ("retry in 1.5s after 2m30s", "retry in <dur> after <dur>"),
    ("bad pointer 0xc000123abc in deadbeefcafe1234", "bad pointer <hex> in <hex>"),
    ("mail to alice@example.com bounced", "mail to <email> bounced"),
    ("cursor expired at 2026-11-29T10:00:00.123Z", "cursor expired at <time>"),
    ("GET /api/v1/tasks/42 returned 500", "GET /api/v1/tasks/<n> returned <n>"),
    ("  spaces   collapse\tand tabs ", "spaces collapse and tabs"),
])
def test_normalise(message: str, shape: str) -> None:
    assert normalise(message) == shape


def test_normalise_keeps_words_and_versions() -> None:
    assert normalise("manager discovery degraded in v2 api") == "manager discovery degraded in v2 api"
    assert len(normalise("x " * 5000)) <= 300


def _entry(epoch: float, component: str, message: str, request_id: str = "", level: str = "ERROR") -> logview.Entry:
    return to_entry(RawLine(record(epoch, level, component, message, request_id=request_id or None).encode()))


def test_patterns_group_count_and_sort() -> None:
    table = Patterns()
    for i in range(5):
        table.add(_entry(NOW + i, "vector-service", f"Failed to insert vector {i}", f"req-{i}"))
    for i in range(2):
        table.add(_entry(NOW + 10 + i, "http", f"handler failed: /api/v1/tasks/{i}"))
    table.add(_entry(NOW + 20, "vector-service", "handler failed: /api/v1/tasks/9", level="FATAL"))
    rows = table.rows()
    assert [(r.count, r.component, r.pattern) for r in rows] == [
        (5, "vector-service", "Failed to insert vector <n>"),
        (2, "http", "handler failed: /api/v1/tasks/<n>"),
        (1, "vector-service", "handler failed: /api/v1/tasks/<n>"),
    ]
    first = rows[0]
    assert (first.first, first.last, first.request_id) == (pytest.approx(NOW), pytest.approx(NOW + 4), "req-0")
    assert first.as_dict()["first_seen"] == stamp(NOW) and rows[2].level == "FATAL"
    assert rows[1].request_id == ""  # none of its lines had one


def test_patterns_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logview, "MAX_PATTERNS", 3)
    table = Patterns()
    for word in ("alpha", "beta", "gamma", "delta", "epsilon"):
        table.add(_entry(NOW, "c", f"{word} failed"))
    table.add(_entry(NOW, "c", "alpha failed"))
    assert len(table.groups) == 3 and table.overflow == 2
    assert table.rows()[0].count == 2


def test_collect_keeps_the_newest_matches_and_counts_every_line() -> None:
    lines = [record(NOW + i, "ERROR" if i % 2 else "INFO", message=f"m{i}") for i in range(10)]
    lines[3] = "not json"
    lines[4] = '{"truncated'
    scan = logview.collect((to_entry(RawLine(x.encode())) for x in lines), Query(min_level=40), 2, patterns=False)
    assert [e.field("message") for e in scan.entries] == ["m7", "m9"]
    assert (scan.counts.read, scan.counts.json, scan.counts.text, scan.counts.truncated, scan.counts.matched) == (
        10, 8, 1, 1, 4)


# --------------------------------------------------------------------------- big files
def write_log(path: Path, count: int, seed: int = 1, noise: bool = True) -> list[tuple[float, str]]:
    """A log of ``count`` lines a second apart, with non-JSON lines and long lines mixed in (noise)."""
    rng = random.Random(seed)
    out: list[tuple[float, str]] = []
    for i in range(count):
        epoch = NOW + i
        if noise and rng.random() < 0.05:
            out.append((epoch, "goroutine 1 [running]: not json " + "x" * rng.randrange(0, 300)))
        else:
            out.append((epoch, record(epoch, message="m" * rng.randrange(1, 2000))))
    path.write_text("".join(text + "\n" for _e, text in out), encoding="utf-8")
    return out


def reference_offset(lines: list[tuple[float, str]], since: float) -> int:
    """The byte offset of the first line stamped at or after ``since`` (a linear reading)."""
    offset = 0
    for _epoch, text in lines:
        stamp_ = line_epoch(text.encode())
        if stamp_ is not None and stamp_ >= since:
            return offset
        offset += len(text.encode()) + 1
    return offset


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_binary_search_finds_the_first_line_of_the_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          seed: int) -> None:
    monkeypatch.setattr(plogs, "PROBE_WINDOW", 4096)  # many probe points on a small file
    path = tmp_path / "app.log"
    lines = write_log(path, 3000, seed)
    log = open_log(path).unwrap()
    try:
        for since in (NOW - 10, NOW, NOW + 1, NOW + 1234.5, NOW + 2999, NOW + 5000):
            assert log.offset_since(since) == reference_offset(lines, since), since
    finally:
        log.close()


def test_window_reads_only_the_lines_after_the_cut(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    write_log(path, 2000, noise=False)
    scan = logview.scan_file(path, Query(since=NOW + 1900), 1000, patterns=False)
    assert scan.counts.read == 100
    assert scan.entries[0].field("timestamp") == stamp(NOW + 1900)


@pytest.mark.parametrize("block", [7, 64, 4096])
def test_backward_and_forward_scans_agree_across_block_edges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             block: int) -> None:
    monkeypatch.setattr(plogs, "SCAN_BLOCK", block)
    monkeypatch.setattr(plogs, "MAX_LINE_BYTES", 100)
    path = tmp_path / "app.log"
    long_line = "L" + "y" * 250
    path.write_bytes(f"first\n\n{long_line}\nshort\n{'z' * 99}\n{'w' * 101}\nlast without newline".encode())
    log = open_log(path).unwrap()
    try:
        forward = [(line.data, line.cut) for line in log.lines_from(0)]
        backward = [(line.data, line.cut) for line in log.lines_backward()]
    finally:
        log.close()
    assert forward == list(reversed(backward))
    assert forward == [(b"first", False), (long_line[:100].encode(), True), (b"short", False), (b"z" * 99, False),
                       (b"w" * 100, True), (b"last without newline", False)]


def test_newest_matches_are_found_reading_backwards(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("".join(record(NOW + i, "ERROR" if i in (10, 500, 990) else "INFO") + "\n" for i in range(1000)),
                    encoding="utf-8")
    scan = logview.scan_file(path, Query(min_level=40), 2, patterns=False)
    assert [e.field("timestamp") for e in scan.entries] == [stamp(NOW + 500), stamp(NOW + 990)]
    assert scan.counts.read == 500  # stopped once it had two


def test_a_binary_file_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "core"
    path.write_bytes(bytes(range(256)) * 400)
    result = open_log(path)
    assert result.failure is not None and result.failure.kind is FailureKind.BAD_RESPONSE
    assert "binary file" in result.failure.message


def test_a_log_with_a_few_nul_bytes_is_still_a_log(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"\0" * 10 + "".join(record(NOW + i) + "\n" for i in range(100)).encode())
    assert open_log(path).ok


def test_a_fifo_and_a_directory_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path):
        result = open_log(path)
        assert result.failure is not None and "not a log file" in result.failure.message


# --------------------------------------------------------------------------- following
def test_splitter_bounds_a_line_that_never_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plogs, "MAX_LINE_BYTES", 10)
    splitter = LineSplitter()
    out = splitter.feed(b"abc\n" + b"x" * 5)
    for _ in range(1000):
        out += splitter.feed(b"y" * 1000)
        assert len(splitter.pending) <= 11
    out += splitter.feed(b"tail\nnext")
    assert [(line.data, line.cut) for line in out] == [(b"abc", False), (b"xxxxxyyyyy", True)]
    assert [(line.data, line.cut) for line in splitter.flush()] == [(b"next", False)]


class Idle(Exception):
    pass


def follower(path: Path) -> Iterator[RawLine | Notice]:
    """follow_file from the file's current end, with a sleep that gives up after many idle polls (so a
    test cannot hang)."""
    idle = {"n": 0}
    start = path.stat().st_size if path.exists() else None

    def sleep(_seconds: float) -> None:
        idle["n"] += 1
        if idle["n"] > 500:
            raise Idle

    return follow_file(path, start, poll_s=0, sleep=sleep)


def take(items: Iterator[RawLine | Notice], count: int) -> list[str]:
    out = []
    for _ in range(count):
        item = next(items)
        out.append(f"notice: {item.text}" if isinstance(item, Notice) else item.text())
    return out


def append(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write("".join(line + "\n" for line in lines))


def test_follow_reads_appended_lines_from_the_end(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    append(path, "old")
    items = follower(path)
    append(path, "one", "two")
    assert take(items, 2) == ["one", "two"]
    with path.open("a", encoding="utf-8") as out:  # a line written in two pieces is one line
        out.write("thr")
        out.flush()
        out.write("ee\n")
    assert take(items, 1) == ["three"]


def test_follow_survives_rename_and_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    append(path, "before")
    items = follower(path)
    append(path, "a")
    assert take(items, 1) == ["a"]
    writer = path.open("a", encoding="utf-8")  # the service still holds the old file
    path.rename(tmp_path / "app.log.1")
    writer.write("written to the old file after the rename\n")
    writer.flush()
    append(path, "first of the new file")
    assert take(items, 3) == ["written to the old file after the rename",
                              f"notice: {path} was rotated: reading the new file", "first of the new file"]
    writer.close()
    append(path, "second")
    assert take(items, 1) == ["second"]


def test_follow_survives_copytruncate(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    append(path, "x" * 100)
    items = follower(path)
    append(path, "b")
    assert take(items, 1) == ["b"]
    (tmp_path / "app.log.1").write_bytes(path.read_bytes())
    with path.open("r+b") as handle:
        handle.truncate(0)
    append(path, "after truncate")
    assert take(items, 2) == [f"notice: {path} was truncated: reading it from its start", "after truncate"]


def test_follow_waits_for_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    items = follower(path)
    assert take(items, 1) == [f"notice: waiting for {path} to appear"]
    append(path, "hello")
    assert take(items, 1) == ["hello"]


def test_follow_gives_up_quietly_when_nothing_comes(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    append(path, "old")
    with pytest.raises(Idle):
        take(follower(path), 1)


def test_engine_timestamps_are_split_off_docker_lines() -> None:
    ns, line = logview.engine_split(RawLine(b'2026-11-29T10:00:00.123456789Z {"level":"ERROR"}'))
    assert ns == int(datetime(2026, 11, 29, 10, tzinfo=UTC).timestamp()) * 10**9 + 123456789
    assert line.data == b'{"level":"ERROR"}'
    assert logview.engine_split(RawLine(b"no stamp")) == (None, RawLine(b"no stamp"))


# --------------------------------------------------------------------------- the command
@pytest.fixture
def target_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in [k for k in os.environ if k.startswith("ES_DOCTOR_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ES_DOCTOR_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("LOGS_TEST_PW", "Sup3rSecretPw")
    logs = tmp_path / "logs"
    logs.mkdir()
    (tmp_path / "es-doctor.yaml").write_text(
        f"state_dir: {tmp_path / 'state'}\ntargets:\n  t:\n    service:\n      log_dir: {logs}\n"
        "    postgres:\n      password: env:LOGS_TEST_PW\n    absent: {docker: none here}\n", encoding="utf-8")
    return tmp_path


def logs_cli(target_dir: Path, *args: str) -> CliResult:
    """``es-doctor -c <the target's config> logs ARGS`` in process, isolated under ``target_dir``."""
    return run_cli("-c", str(target_dir / "es-doctor.yaml"), "logs", *args, home=target_dir, in_process=True)


def test_cli_patterns_table_and_json(target_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    now = time.time()
    lines = [record(now - 7200, "ERROR", "db", "too old 1")]
    lines += [record(now - 60 + i, "ERROR", "vector-service", f"Failed to insert vector {i}", request_id=f"req-{i}")
              for i in range(3)]
    lines += [record(now - 30, "ERROR", "http", "handler failed: /api/v1/tasks/7"), "garbage line",
              record(now - 20, "INFO", "http", "fine")]
    (target_dir / "logs" / "email-sender.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = logs_cli(target_dir, "--patterns", "--since", "15m")
    assert code == 0
    rows = out.splitlines()
    assert rows[0].split()[:4] == ["3", "ERROR", "vector-service", "Failed"] and "request_id=req-0" in rows[0]
    assert "handler failed: /api/v1/tasks/<n>" in rows[1] and len(rows) == 2
    assert "1 not JSON" in err and "4 matching record(s) in 2 pattern(s)" in err
    code, out, _err = logs_cli(target_dir, "--patterns", "--since", "15m", "--format", "json")
    report = json.loads(out)
    assert [(p["count"], p["pattern"]) for p in report["patterns"]] == [
        (3, "Failed to insert vector <n>"), (1, "handler failed: /api/v1/tasks/<n>")]
    assert report["counts"]["text"] == 1 and report["source"]["type"] == "file"


def test_cli_lists_masks_secrets_and_shows_raw_lines(target_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = target_dir / "logs" / "email-sender.log"
    log.write_text(record(NOW, "ERROR", "db", "auth failed with Sup3rSecretPw") + "\n"
                   + "plain \x1b[31mERROR\x1b[0m text\n", encoding="utf-8")
    code, out, _err = logs_cli(target_dir, "--level", "error")
    assert code == 0 and "Sup3rSecretPw" not in out and "auth failed with ********" in out
    assert "plain" not in out
    code, out, _err = logs_cli(target_dir, "--level", "ERROR", "--raw")
    assert "[raw] plain [31mERROR[0m text" in out and "\x1b" not in out
    code, out, _err = logs_cli(target_dir, "--format", "json", "--raw")
    lines = json.loads(out)["lines"]
    assert lines[0]["message"] == "auth failed with ********" and lines[1]["kind"] == "text"


@pytest.mark.parametrize(("args", "status"), [
    (["--since", "15"], ExitStatus.USAGE),
    (["--patterns", "--follow"], ExitStatus.USAGE),
    (["--patterns", "--raw"], ExitStatus.USAGE),
    (["--source", "docker"], ExitStatus.USAGE),  # the target has no Docker
    (["--file", "nope.log"], ExitStatus.UNAVAILABLE),
    (["--file", "core"], ExitStatus.DATA),
    (["--level", "LOUD"], ExitStatus.USAGE),
])
def test_cli_bad_input_is_a_clear_error(target_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                        status: ExitStatus) -> None:
    (target_dir / "logs" / "core").write_bytes(bytes(range(256)) * 100)
    code, out, err = logs_cli(target_dir, *args)
    assert code == status
    assert "Traceback" not in out + err and err.strip()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("no_color", [False, True])
def test_levels_are_coloured_on_a_terminal_unless_no_color(monkeypatch: pytest.MonkeyPatch, no_color: bool) -> None:
    from es_doctor.cli import logs_cmd

    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    out = Terminal()
    console = logs_cmd._console(out)
    assert (console is None) is no_color
    logs_cmd._print_entry(_entry(NOW, "http", "boom [bold]not markup[/bold]"), [], out, console)
    text = out.getvalue()
    assert "boom [bold]not markup[/bold]" in text  # log text is never read as rich markup
    assert ("\x1b[" in text) is not no_color


def test_no_colour_in_a_pipe() -> None:
    from es_doctor.cli import logs_cmd

    out = io.StringIO()
    assert logs_cmd._console(out) is None
    logs_cmd._print_entry(_entry(NOW, "http", "boom"), [], out, None)
    assert "\x1b" not in out.getvalue() and "ERROR" in out.getvalue()


def test_lines_below_the_level_are_counted_alike_without_being_parsed() -> None:
    rng = random.Random(5)
    lines = []
    for i in range(2000):
        level = rng.choice(["DEBUG", "info", "WARN", "warning", "ERROR", "error", "FATAL"])
        lines.append(RawLine(record(NOW + i, level, rng.choice(["a", "b"]), f"m {i % 7}").encode()))
    lines += [RawLine(b"plain ERROR text"), RawLine(b'{"level":"INFO","cut'), RawLine(b'{"level":"INFO"} x')]
    for minimum in (0, 20, 30, 40, 50):
        query = Query(min_level=minimum, raw=True)
        slow = logview.collect((to_entry(x) for x in lines), query, 10_000, patterns=False)
        fast = logview.collect((logview.to_entry_below(x, minimum) for x in lines), query, 10_000, patterns=False)
        assert vars(fast.counts) == vars(slow.counts)
        assert [e.text for e in fast.entries] == [e.text for e in slow.entries]
        grouped = logview.collect((logview.to_entry_below(x, minimum) for x in lines), query, 10, patterns=True)
        assert grouped.patterns is not None
        assert sum(p.count for p in grouped.patterns.rows()) == sum(e.kind == "json" for e in slow.entries)


def test_a_window_of_a_log_without_timestamps_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("".join(f"plain line {i}\n" for i in range(1000)), encoding="utf-8")
    with pytest.raises(EsDoctorError, match="no JSON line with a timestamp") as raised:
        logview.scan_file(path, Query(since=NOW), 10, patterns=False)
    assert raised.value.exit_status is ExitStatus.DATA
    assert [e.text for e in logview.scan_file(path, Query(raw=True), 2, patterns=False).entries] == [
        "plain line 998", "plain line 999"]
    assert logview.scan_file(path, Query(), 2, patterns=True).counts.read == 1000  # --since all


def test_follow_starts_with_the_backlog_or_at_since(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("".join(record(NOW + i, "ERROR" if i % 2 else "INFO", message=f"m{i}") + "\n" for i in range(9)),
                    encoding="utf-8")
    backlog = logview.follow_path(path, None, Query(min_level=40), 2)
    assert [item.field("message") for item in (next(backlog), next(backlog)) if isinstance(item, logview.Entry)] == [
        "m5", "m7"]
    backlog.close()
    since = logview.follow_path(path, NOW + 6, Query(), 2)
    assert [item.field("message") for item in (next(since), next(since), next(since))
            if isinstance(item, logview.Entry)] == ["m6", "m7", "m8"]
    since.close()
