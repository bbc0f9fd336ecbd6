"""``es-doctor profile`` against a real Go runtime: the lab's Go program (lab/go/pprofd.go, built here with
Debian's golang-go, offline) serves net/http/pprof; the lab's goroutine-leak and heap-growth faults make
it leak; es-doctor's summaries are checked against ``go tool pprof -top`` on the very files it saved.
Also: 404, a text page, binary garbage, an unreachable endpoint, Ctrl-C during a CPU profile, the
progress bar on a terminal only. With CI=true a missing ``go`` fails these tests."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from support import cli_command, isolated_env, require, started_process_lab

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def go_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from es_doctor.lab import pprofd

    require("Go (golang-go)", pprofd.unavailable_reason())
    with started_process_lab(tmp_path_factory.mktemp("golab")) as stack:
        yield stack


@pytest.fixture
def lab(go_lab: Any) -> Iterator[Any]:
    from es_doctor.lab import faults

    faults.clear(go_lab, None, wait=60)
    yield go_lab
    faults.clear(go_lab, None, wait=60)


def es_doctor(lab: Any, state: Path, *args: str, env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full = isolated_env(state)
    full.update({"ES_DOCTOR_LAB_DIR": str(lab.lab_dir), "ES_DOCTOR_STATE_DIR": str(state), "COLUMNS": "200",
                 **(env or {})})
    full.pop("DOCKER_HOST", None)
    return subprocess.run(cli_command(*args), capture_output=True, text=True, env=full,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL)


def profile(lab: Any, state: Path, *args: str, **kw: Any) -> dict[str, Any]:
    result = es_doctor(lab, state, "-t", "lab", "profile", *args, "--format", "json", "--top", "15", **kw)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


_ROW = re.compile(r"^\s*(\d+(?:\.\d+)?)(?:B|ns)?\s+\S+%\s+\S+%\s+(\d+(?:\.\d+)?)(?:B|ns)?\s+\S+%\s+(.+)$")


def go_tool_top(path: str, kind: str) -> tuple[int, list[tuple[str, int, int]]]:
    """`go tool pprof -top` on a saved profile: its total and its (function, flat, cum) rows."""
    unit = {"heap": ["-unit=B"], "cpu": ["-unit=ns"]}.get(kind, [])
    go = shutil.which("go")
    assert go
    out = subprocess.run([go, "tool", "pprof", "-top", "-nodecount=15", *unit, path], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    total = re.search(r"of (\d+)(?:B|ns)? total", out)
    assert total, out
    rows = []
    for line in out.splitlines():
        match = _ROW.match(line)
        if match:
            rows.append((match[3].removesuffix(" (inline)").strip(), int(float(match[1])), int(float(match[2]))))
    return int(total[1]), rows


def assert_same_as_go_tool_pprof(doc: dict[str, Any]) -> None:
    total, rows = go_tool_top(doc["saved"], doc["kind"])
    assert rows, "go tool pprof listed nothing"
    assert doc["total"] == total
    mine = [(e["function"], e["flat"], e["cum"]) for e in doc["top_flat"]]
    n = min(len(rows), len(mine))
    assert [flat for _f, flat, _c in mine[:n]] == [flat for _f, flat, _c in rows[:n]], (mine, rows)
    by_name = {f: (flat, cum) for f, flat, cum in mine}
    for function, flat, cum in rows[:n]:
        if function in by_name:  # ties may put another function of the same value in the last rows
            assert by_name[function] == (flat, cum), function
    # the top entry with a value of its own is the same function
    assert mine[0][0] == rows[0][0] or mine[0][1] == rows[1][1]


def test_lab_status_says_pprof_is_served_by_the_go_program(lab: Any, tmp_path: Path) -> None:
    result = es_doctor(lab, tmp_path, "lab", "status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"pprof: running (Go net/http/pprof on http://127.0.0.1:{lab.settings.ports.pprof}" in result.stdout
    assert lab.target.service.pprof_url == f"http://127.0.0.1:{lab.settings.ports.pprof}/debug/pprof"


def test_a_goroutine_leak_shows_in_profile_goroutine_and_its_compare(lab: Any, tmp_path: Path) -> None:
    before = profile(lab, tmp_path, "goroutine")
    assert_same_as_go_tool_pprof(before)
    assert "main.leakWorker" not in before["goroutines"]["by_function"]
    added = es_doctor(lab, tmp_path, "lab", "fault", "add", "goroutine-leak")
    assert added.returncode == 0, added.stderr
    time.sleep(2.5)
    after = profile(lab, tmp_path, "goroutine", "--compare", "last")
    assert_same_as_go_tool_pprof(after)
    leaked = after["goroutines"]["by_function"]["main.leakWorker"]
    assert leaked >= 40 and after["goroutines"]["by_state"]["chan receive"] >= leaked
    grew = after["compare"]["grew"]
    assert grew[0]["function"] == "main.leakWorker" and grew[0]["delta"] == leaked
    assert after["compare"]["with"] == before["saved"] and after["saved"] != before["saved"]
    for path in (before["saved"], after["saved"]):
        assert Path(path).stat().st_mode & 0o777 == 0o600 and Path(path).parent.stat().st_mode & 0o777 == 0o700
    # `lab fault clear` is the cure: the goroutines end
    cleared = es_doctor(lab, tmp_path, "lab", "fault", "clear", "goroutine-leak")
    assert cleared.returncode == 0, cleared.stderr
    time.sleep(1.5)
    assert "main.leakWorker" not in profile(lab, tmp_path, "goroutine")["goroutines"]["by_function"]


def test_heap_growth_shows_in_profile_heap_and_its_compare(lab: Any, tmp_path: Path) -> None:
    first = profile(lab, tmp_path, "heap")
    assert_same_as_go_tool_pprof(first)
    assert es_doctor(lab, tmp_path, "lab", "fault", "add", "heap-growth").returncode == 0
    # Go samples the heap (one record per 512 KiB allocated, on average), so the in-use estimate of 256 KiB
    # kept every 0.5 s is noisy: profile again (up to 30 s) until the growth is past 1 MiB
    taken, deadline = 1, time.monotonic() + 30
    while True:
        time.sleep(2)
        after = profile(lab, tmp_path, "heap", "--compare", Path(first["saved"]).name)
        taken += 1
        grew = after["compare"]["grew"]
        if (grew and grew[0]["delta"] >= 1024 * 1024) or time.monotonic() > deadline:
            break
    assert_same_as_go_tool_pprof(after)
    assert after["top_flat"][0]["function"] == "main.growCache"
    grew = after["compare"]["grew"]
    assert grew[0]["function"] == "main.growCache" and grew[0]["delta"] >= 1024 * 1024
    deadline = time.monotonic() + 30  # the same sampling: the growth since the last profile may need a while
    while True:
        time.sleep(2)
        text = es_doctor(lab, tmp_path, "-t", "lab", "profile", "heap", "--compare", "last")
        taken += 1
        if "what grew" in text.stdout or text.returncode != 0 or time.monotonic() > deadline:
            break
    assert text.returncode == 0 and "what grew (heap in use by function)" in text.stdout
    assert re.search(r"go tool pprof -top \S+-heap(-\d+)?\.pb\.gz", text.stdout)
    listed = es_doctor(lab, tmp_path, "-t", "lab", "profile", "list", "--format", "json")
    assert [p["kind"] for p in json.loads(listed.stdout)["profiles"]] == ["heap"] * taken


def test_a_cpu_profile_matches_go_tool_pprof(lab: Any, tmp_path: Path) -> None:
    doc = profile(lab, tmp_path, "cpu", "--seconds", "2")
    assert 1.5 < doc["duration_s"] < 3 and doc["unit"] == "nanoseconds"
    assert_same_as_go_tool_pprof(doc)
    assert any(e["function"] == "main.checksumLoop" for e in doc["top_cum"])


def test_ctrl_c_stops_a_cpu_profile_and_saves_nothing(lab: Any, tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    env.update({"ES_DOCTOR_LAB_DIR": str(lab.lab_dir), "ES_DOCTOR_STATE_DIR": str(tmp_path)})
    proc = subprocess.Popen(cli_command("-t", "lab", "profile", "cpu", "--seconds", "20"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, stdin=subprocess.DEVNULL)
    time.sleep(2.0)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - sent < 5, "Ctrl-C stops the profile at once"
    assert b"Traceback" not in err and out == b""
    saved = list((tmp_path / "profiles").rglob("*")) if (tmp_path / "profiles").exists() else []
    assert [p for p in saved if p.is_file()] == [], "nothing saved, nothing half-written"


def test_the_progress_bar_shows_on_a_terminal_only(lab: Any, tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    env.update({"ES_DOCTOR_LAB_DIR": str(lab.lab_dir), "ES_DOCTOR_STATE_DIR": str(tmp_path), "TERM": "xterm",
                "COLUMNS": "120"})
    env.pop("NO_COLOR", None)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(cli_command("-t", "lab", "profile", "cpu", "--seconds", "3"),
                            stdout=subprocess.PIPE, stderr=follower, env=env, stdin=subprocess.DEVNULL)
    os.close(follower)
    seen = bytearray()
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=30)
    os.close(leader)
    assert proc.returncode == 0
    assert b"CPU profile" in seen and re.search(rb"\d/3 s", seen), seen[-500:]
    assert b"CPU profile" in out and b"\x1b[" not in out  # stdout (not a terminal) stays plain
    plain = profile(lab, tmp_path, "cpu", "--seconds", "1")  # no terminal: no bar anywhere
    assert plain["kind"] == "cpu"


class _Garbage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = bytes(range(256)) * 8
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def garbage_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/debug/pprof"
    server.shutdown()
    server.server_close()


def test_bad_endpoints_are_clear_errors(lab: Any, tmp_path: Path, garbage_server: str) -> None:
    from es_doctor.lab.infra import free_port

    go = f"http://127.0.0.1:{lab.settings.ports.pprof}"
    metrics = lab.target.service.metrics_url.removesuffix("/metrics")
    cases = [  # (pprof_url, kind, what the error must say)
        (f"{go}/not-pprof", "heap", "GO_PROFILE=true"),  # the Go program's own 404
        (f"{metrics}/debug/pprof", "goroutine", "pprof unavailable"),  # the Python stand-in's text page
        (garbage_server, "heap", "binary data"),
        (f"http://127.0.0.1:{free_port()}/debug/pprof", "goroutine", "pprof endpoint unreachable"),
    ]
    for url, kind, words in cases:
        result = es_doctor(lab, tmp_path, "-t", "lab", "profile", kind, env={"ES_DOCTOR_SERVICE__PPROF_URL": url})
        assert result.returncode == 69, (url, result.stdout, result.stderr)
        assert words in result.stderr and "Traceback" not in result.stderr and result.stdout == "", result.stderr
    assert not (tmp_path / "profiles").exists() or not any(p.is_file() for p in (tmp_path / "profiles").rglob("*"))
