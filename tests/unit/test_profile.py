"""es-doctor profile's pure parts: the pprof reader, summaries, comparisons, the store and the output,
on real profiles of the lab's Go program (tests/unit/fixtures/pprof, made by scripts/make-pprof-fixtures.py
together with what `go tool pprof -top` said of each)."""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from es_doctor.profiles import render, store
from es_doctor.profiles.capture import describe, profile_url
from es_doctor.profiles.proto import MAX_DECOMPRESSED, ProfileError, decompress, parse
from es_doctor.profiles.summary import Summary, compare, entry_function, goroutine_state, kind_of, summarize
from support import CliResult, run_cli
from support.protobuf import field as pb_field
from support.protobuf import varint as pb_varint

FIXTURES = Path(__file__).parent / "fixtures" / "pprof"
NAMES = ["goroutine-base", "goroutine-leak", "heap-base", "heap-growth", "cpu"]


def fixture(name: str) -> Summary:
    return summarize(parse((FIXTURES / f"{name}.pb.gz").read_bytes()))


# ------------------------------------------------------------------ what `go tool pprof -top` said

_VALUE = re.compile(r"^(\d+(?:\.\d+)?)(B|ns)?$")


def go_top(name: str) -> list[tuple[str, int, int]]:
    """(function, flat, cum) rows of the saved `go tool pprof -top -unit=B|ns` output."""
    rows = []
    lines = (FIXTURES / f"{name}.top.txt").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["flat", "flat%"]) + 1
    for line in lines[start:]:
        parts = line.split()
        if len(parts) < 6:
            continue
        flat, cum = (_VALUE.match(parts[0]), _VALUE.match(parts[3]))
        assert flat and cum, line
        function = " ".join(parts[5:]).removesuffix(" (inline)")
        rows.append((function, int(float(flat[1])), int(float(cum[1]))))
    return rows


@pytest.mark.parametrize("name", NAMES)
def test_the_summary_matches_go_tool_pprof_top(name: str) -> None:
    rows = go_top(name)
    summary = fixture(name)
    assert rows, "go tool pprof listed nothing"
    mine = {e.function: (e.flat, e.cum) for e in summary.entries}
    for function, flat, cum in rows:
        assert mine[function] == (flat, cum), function
    # the same order by flat (ties may list their functions in another order, never other values)
    assert [e.flat for e in summary.top(len(rows))] == [flat for _f, flat, _c in rows]
    total = re.search(r"of (\d+)(?:B|ns)? total", (FIXTURES / f"{name}.top.txt").read_text())
    assert total and int(total[1]) == summary.total


def test_kinds_and_units_come_from_the_sample_types() -> None:
    assert [(fixture(n).kind, fixture(n).unit) for n in ("cpu", "heap-base", "goroutine-base")] == [
        ("cpu", "nanoseconds"), ("heap", "bytes"), ("goroutine", "count")]
    cpu = parse((FIXTURES / "cpu.pb.gz").read_bytes())
    assert kind_of(cpu) == "cpu" and 1.5 < cpu.duration_nanos / 1e9 < 3 and cpu.period_type == ("cpu", "nanoseconds")
    assert fixture("cpu").top(1)[0].function == "crypto/sha256.block"  # pprofd's checksumLoop


def test_a_goroutine_leak_shows_its_function_and_state() -> None:
    leak = fixture("goroutine-leak")
    leaked = dict(leak.started_in)["main.leakWorker"]
    assert leak.started_in[0] == ("main.leakWorker", leaked) and leaked >= 60  # 20 every 0.5 s
    assert dict(leak.states)["chan receive"] >= leaked  # parked on <-release
    assert sum(n for _s, n in leak.states) == leak.total == sum(n for _f, n in leak.started_in)
    grown = compare(fixture("goroutine-base"), leak).grew()
    assert grown[0].function == "main.leakWorker" and grown[0].delta == leaked and grown[0].before == 0


def test_heap_growth_shows_the_function_that_holds_it() -> None:
    growth = fixture("heap-growth")
    grown = compare(fixture("heap-base"), growth).grew()
    assert grown[0].function == "main.growCache"
    assert grown[0].after == next(e.flat for e in growth.entries if e.function == "main.growCache") > 0
    assert growth.top(1)[0].function == "main.growCache"


def test_compare_refuses_other_kinds_and_cpu() -> None:
    with pytest.raises(ProfileError, match="cannot compare"):
        compare(fixture("heap-base"), fixture("goroutine-base"))
    with pytest.raises(ProfileError, match="not cpu"):
        compare(fixture("cpu"), fixture("cpu"))
    assert compare(fixture("heap-base"), fixture("heap-base")).grew() == ()


@pytest.mark.parametrize(("stack", "state"), [
    (("runtime.gopark", "runtime.chanrecv", "runtime.chanrecv1", "main.f"), "chan receive"),
    (("runtime.gopark", "runtime.chansend1", "main.f"), "chan send"),
    (("runtime.gopark", "runtime.selectgo", "main.f"), "select"),
    (("runtime.gopark", "runtime.netpollblock", "internal/poll.runtime_pollWait"), "IO wait"),
    (("runtime.gopark", "runtime.goparkunlock", "sync.runtime_SemacquireMutex", "sync.(*Mutex).Lock"), "semacquire"),
    (("runtime.goparkunlock", "sync.runtime_notifyListWait", "sync.(*Cond).Wait"), "sync.Cond.Wait"),
    (("runtime.gopark", "time.Sleep", "main.f"), "sleep"),
    (("runtime.notetsleepg", "os/signal.signal_recv"), "syscall"),
    (("runtime.gopark", "runtime.gcBgMarkWorker"), "GC worker (idle)"),
    (("runtime.gopark", "main.custom"), "waiting"),
    (("main.busy", "main.f"), "running"),
    ((), "unknown"),
])
def test_goroutine_state_from_where_it_waits(stack: tuple[str, ...], state: str) -> None:
    assert goroutine_state(stack) == state


def test_entry_function_is_the_outermost_non_runtime_frame() -> None:
    assert entry_function(("runtime.gopark", "main.leakWorker")) == "main.leakWorker"
    assert entry_function(("runtime.gopark", "net/http.Serve", "main.main", "runtime.main")) == "main.main"
    assert entry_function(("runtime.gopark", "runtime.bgsweep")) == "runtime.bgsweep"
    assert entry_function(()) == "(no stack)"


# ------------------------------------------------------------------ malformed input: ProfileError only




def _profile(*, strings: tuple[str, ...] = ("", "goroutine", "count", "main.f"), function_name: int = 3,
             location_function: int = 1, sample_location: int = 1, values: tuple[int, ...] = (5,)) -> bytes:
    packed = b"".join(pb_varint(v) for v in values)
    return b"".join([
        pb_field(1, pb_field(1, 1) + pb_field(2, 2)),
        pb_field(2, pb_field(1, pb_varint(sample_location)) + pb_field(2, packed)),
        pb_field(4, pb_field(1, 1) + pb_field(4, pb_field(1, location_function) + pb_field(2, 12))),
        pb_field(5, pb_field(1, 1) + pb_field(2, function_name)),
        *(pb_field(6, s.encode()) for s in strings),
    ])


def test_a_hand_built_profile_reads_and_its_gzip_too() -> None:
    data = _profile()
    assert parse(data).samples[0].stack == ("main.f",) and parse(gzip.compress(data)).samples[0].values == (5,)
    assert summarize(parse(data)).started_in == (("main.f", 5),)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"<html><body>404 page not found</body></html>", "wire type"),
    (b"heap profile: 12 objects", "expected a varint"),
    (_profile(function_name=9), "string index 9"),
    (_profile(location_function=7), "unknown function 7"),
    (_profile(sample_location=3), "unknown location 3"),
    (_profile(values=(1, 2)), "2 values for 1 sample types"),
    (_profile(strings=("x", "goroutine", "count", "main.f")), "string table"),
    (pb_field(1, b"\x08") + pb_field(6, b""), "truncated varint"),
    (b"\x0a\xff\xff\xff\xff\x0f", "announced"),
    (b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
    (gzip.compress(b"not a profile at all")[:-6], "truncated gzip"),
    (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xff\xff\xff", "bad gzip"),
    (pb_field(6, b"") + pb_field(6, b"\xff\xfe"), "not UTF-8"),
])
def test_malformed_profiles_are_a_profile_error(data: bytes, message: str) -> None:
    with pytest.raises(ProfileError, match=re.escape(message)):
        parse(data)


def test_a_decompression_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (4 * 1024 * 1024))
    with pytest.raises(ProfileError, match="larger than"):
        decompress(bomb, limit=1024 * 1024)
    assert MAX_DECOMPRESSED >= 64 * 1024 * 1024


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_raise_anything_but_profile_error(data: bytes) -> None:
    try:
        profile = parse(data)
        summary = summarize(profile)
    except ProfileError as exc:
        assert str(exc), "a refusal says why"
    else:  # the rare random input that is a valid profile is summarised consistently
        index = profile.index(summary.sample_type)
        assert index is not None and summary.total == sum(s.values[index] for s in profile.samples)


def test_every_truncation_of_a_real_profile_is_read_or_refused_cleanly() -> None:
    raw = gzip.decompress((FIXTURES / "goroutine-leak.pb.gz").read_bytes())
    refused = 0
    for cut in range(len(raw)):
        try:
            summarize(parse(raw[:cut]))
        except ProfileError:
            refused += 1
    assert refused > len(raw) // 2


# ------------------------------------------------------------------ the store


def test_saved_profiles_are_private_and_never_overwritten(tmp_path: Path) -> None:
    data = (FIXTURES / "heap-base.pb.gz").read_bytes()
    now = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
    first = store.save(tmp_path, "staging", "heap", data, now)
    second = store.save(tmp_path, "staging", "heap", b"other", now)
    assert (first.name, second.name) == ("20261129T120000Z-heap.pb.gz", "20261129T120000Z-heap-2.pb.gz")
    assert first.read_bytes() == data and second.read_bytes() == b"other"
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    for directory in (first.parent, first.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")], "no temporary file left"


def test_a_target_name_cannot_leave_the_profile_root(tmp_path: Path) -> None:
    path = store.save(tmp_path, "../../etc", "cpu", b"x")
    assert path.resolve().is_relative_to((tmp_path / "profiles").resolve())


def test_listing_and_resolving_saved_profiles(tmp_path: Path) -> None:
    early, late = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    old = store.save(tmp_path, "lab", "goroutine", b"a", early)
    new = store.save(tmp_path, "lab", "goroutine", b"b", late)
    store.save(tmp_path, "lab", "heap", b"c", late)
    store.save(tmp_path, "prod", "goroutine", b"d", early)
    (old.parent / "notes.txt").write_text("not a profile")
    (old.parent / "20261399T250000Z-heap.pb.gz").write_text("a name es-doctor never writes")
    assert [s.name for s in store.listing(tmp_path, "lab", "goroutine")] == [old.name, new.name]
    assert {s.target for s in store.listing(tmp_path)} == {"lab", "prod"}
    assert store.resolve(tmp_path, "lab", "last", "goroutine") == new
    assert store.resolve(tmp_path, "lab", old.name, "goroutine") == old
    assert store.resolve(tmp_path, "lab", str(old), "goroutine") == old
    with pytest.raises(FileNotFoundError, match="no saved cpu profile"):
        store.resolve(tmp_path, "lab", "last", "cpu")
    with pytest.raises(FileNotFoundError, match="profile list"):
        store.resolve(tmp_path, "lab", "nope.pb.gz", "heap")
    assert store.listing(tmp_path / "nothing") == []


# ------------------------------------------------------------------ output


def test_text_output_names_the_file_and_the_go_tool_pprof_command(tmp_path: Path) -> None:
    summary, before = fixture("goroutine-leak"), fixture("goroutine-base")
    path = tmp_path / "x y" / "20261129T120000Z-goroutine.pb.gz"
    out = render.text(summary, target="lab", url="http://127.0.0.1:1/debug/pprof/goroutine", path=path, top=5,
                      comparison=compare(before, summary), previous=tmp_path / "before.pb.gz")
    assert f"go tool pprof -top '{path}'" in out
    assert "main.leakWorker" in out and "chan receive" in out and "what grew" in out
    assert len(re.findall(r"^ +\d\S* +[\d.]+% +\S+ +[\d.]+%  ", out, re.M)) == 5 * 2  # flat and cum: 5 rows each


def test_json_output_is_one_documented_object(tmp_path: Path) -> None:
    summary = fixture("heap-growth")
    doc = json.loads(render.as_json(summary, target="lab", url="u", path=tmp_path / "p", top=3,
                                    comparison=compare(fixture("heap-base"), summary), previous=tmp_path / "b"))
    assert doc["schema"] == "es-doctor.profile/1" and doc["kind"] == "heap" and doc["unit"] == "bytes"
    assert len(doc["top_flat"]) == 3 and doc["top_flat"][0]["function"] == "main.growCache"
    assert doc["compare"]["grew"][0]["function"] == "main.growCache" and doc["compare"]["grew"][0]["delta"] > 0
    assert doc["total"] == summary.total and "goroutines" not in doc


def test_control_characters_from_a_server_never_reach_the_terminal(tmp_path: Path) -> None:
    data = _profile(strings=("", "goroutine", "count", "main.\x1b[31mred\x07"))
    out = render.text(summarize(parse(data)), target="t", url="u", path=tmp_path / "p", top=3)
    assert "\x1b" not in out and "\x07" not in out and "main.[31mred" in out


@pytest.mark.parametrize(("value", "unit", "shown"), [
    (2 * 1024 * 1024, "bytes", "2.00 MiB"), (512, "bytes", "512 B"), (1536, "bytes", "1.50 KiB"),
    (40_000_000, "nanoseconds", "40 ms"), (2_500_000_000, "nanoseconds", "2.50 s"), (7, "count", "7"),
])
def test_amounts_read_like_pprof(value: int, unit: str, shown: str) -> None:
    assert render.amount(value, unit) == shown


def test_urls_of_each_kind() -> None:
    assert profile_url("http://h:8081/debug/pprof/", "cpu", 30) == "http://h:8081/debug/pprof/profile?seconds=30"
    assert profile_url("http://h/debug/pprof", "heap", 0).endswith("/debug/pprof/heap?gc=1")
    assert profile_url("http://h/debug/pprof", "goroutine", 0).endswith("/debug/pprof/goroutine")


def test_what_a_server_sent_instead_of_a_profile() -> None:
    assert describe(b"404 page not found\n", "text/plain; charset=utf-8") == (
        True, "text/plain, 19 bytes: '404 page not found'")
    assert describe(b"\x00\x01\x02", "") == (False, "no content type, 3 bytes of binary data")
    assert describe(b"", "application/octet-stream") == (False, "application/octet-stream, an empty body")


def test_fixture_files_are_what_the_script_writes() -> None:
    assert sorted(p.name for p in FIXTURES.glob("*.pb.gz")) == sorted(f"{n}.pb.gz" for n in NAMES)
    assert all(os.path.getsize(FIXTURES / f"{n}.pb.gz") < 8192 for n in NAMES)


# ------------------------------------------------------------------ the command's refusals (before any fetch)


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., CliResult]:
    """es-doctor in process, isolated under ``tmp_path``, its pprof endpoint on port 9 where nothing
    listens: a refusal proves the command never got as far as fetching."""
    return functools.partial(run_cli, home=tmp_path, cwd=tmp_path, in_process=True,
                             env={"ES_DOCTOR_STATE_DIR": str(tmp_path / "state"),
                                  "ES_DOCTOR_SERVICE__PPROF_URL": "http://127.0.0.1:9/debug/pprof"})


def test_compare_arguments_are_checked_before_a_profile_is_taken(
        tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    code, _out, err = cli("profile", "cpu", "--compare", "last")
    assert code == 64 and "No such option: --compare" in err  # growth is for heap and goroutine profiles
    code, _out, err = cli("profile", "heap", "--compare", "last")
    assert code == 64 and "no saved heap profile" in err
    garbage = tmp_path / "garbage.pb.gz"
    garbage.write_bytes(b"\x1f\x8b not gzip at all")
    code, _out, err = cli("profile", "goroutine", "--compare", str(garbage))
    assert code == 65 and "not a readable goroutine profile" in err and "Traceback" not in err
    code, _out, err = cli("profile", "goroutine", "--compare",
                          str(FIXTURES / "heap-base.pb.gz"))
    assert code == 65 and "no goroutine values" in err
    fifo = tmp_path / "fifo.pb.gz"
    os.mkfifo(fifo)  # no writer: a plain open() would wait for one forever
    code, _out, err = cli("profile", "heap", "--compare", str(fifo))
    assert code in (64, 65) and "Traceback" not in err and str(fifo) in err, err


def test_an_unreachable_endpoint_is_a_clear_error_and_nothing_is_saved(cli: Callable[..., CliResult]) -> None:
    code, out, err = cli("profile", "goroutine")
    assert code == 69 and "pprof endpoint unreachable" in err and "127.0.0.1:9" in err and out == ""
    code, out, _err = cli("profile", "list", "--format", "json")
    assert code == 0 and json.loads(out)["profiles"] == []


def test_profile_list_shows_saved_profiles(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    store.save(tmp_path / "state", "default", "heap", b"x", datetime(2026, 11, 29, 12, 0, tzinfo=UTC))
    code, out, _err = cli("profile", "list")
    assert code == 0 and "20261129T120000Z-heap.pb.gz" in out and "2026-11-29 12:00:00" in out


# ------------------------------------------------------------------ the lab without Go


def test_without_go_the_lab_says_pprof_is_unavailable_and_how_to_get_it(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from es_doctor.lab import faults, infra, pprofd

    monkeypatch.setenv("PATH", str(tmp_path))  # no go on it
    reason = pprofd.unavailable_reason()
    assert reason == "go is not installed (apt-get install golang-go, then es-doctor lab down && es-doctor lab up)"
    assert pprofd.state(tmp_path, 1) == f"unavailable: {reason}"
    with pytest.raises(infra.InfraError, match="pprof unavailable: go is not installed"):
        pprofd.build(tmp_path)
    lab = SimpleNamespace(mode="process", settings=SimpleNamespace(absent={}))
    assert faults.unavailable_reason(lab, "heap-growth") == f"heap-growth needs the lab's Go program: {reason}"  # type: ignore[arg-type]


@pytest.mark.parametrize(("served", "port"), [(True, 6), (False, 2)])
def test_the_lab_target_points_pprof_at_the_go_program_where_it_runs(tmp_path: Path, served: bool, port: int) -> None:
    from es_doctor.lab.layout import LabPaths, LabPorts, LabSettings, build_target

    settings = LabSettings(mode="process", ports=LabPorts(1, 2, 3, 4, 5, 6), pprof=served)
    assert build_target(LabPaths(tmp_path), settings).service.pprof_url == f"http://127.0.0.1:{port}/debug/pprof"


def test_a_go_program_that_failed_to_start_is_reported_by_lab_status(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from es_doctor.lab import pprofd

    monkeypatch.setattr(pprofd, "unavailable_reason", lambda: None)  # Go is there, the build failed
    assert pprofd.state(tmp_path, 1) == "not running (es-doctor lab up starts it)"
    why = "building the lab's pprof program failed: go exited 1: syntax error"
    pprofd.failed(tmp_path, why)
    assert pprofd.state(tmp_path, 1) == f"unavailable: {why}"
