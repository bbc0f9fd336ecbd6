"""A terminal gets colours and a spinner; a pipe, a file and NO_COLOR get none. The terminal is a real
pseudo-terminal (the stdlib ``pty``): es-doctor runs as a separate process whose stdout is its slave side."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from es_doctor.cli.output import line_printer, working
from support import isolated_env

ESC = "\x1b["
COLOUR = re.compile(r"\x1b\[[0-9;]*(?:3[0-7]|9[0-7]|38;[0-9;]+)m")  # a foreground colour, not bold
SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


@pytest.fixture
def hung_service() -> Iterator[int]:
    """A port that accepts connections and never answers: /health waits until its check times out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


def _env(port: int, tmp_path: Path, **extra: str) -> dict[str, str]:
    return isolated_env(tmp_path, {"TERM": "xterm-256color", "COLUMNS": "120",
                                   "ES_DOCTOR_SERVICE__API_URL": f"http://127.0.0.1:{port}", **extra},
                        drop=("NO_COLOR",))


ARGS = ["-m", "es_doctor", "diagnose", "--check", "startup.health", "--timeout", "1.5", "--deadline", "4"]


def _on_a_terminal(args: list[str], env: dict[str, str], timeout: float = 60,
                   interrupt_after: float | None = None) -> tuple[int, str]:
    """Run ``python args`` with stdout and stderr on a pseudo-terminal; its exit code and all it wrote
    (``interrupt_after``: Ctrl-C, a SIGINT, once it has written that many seconds after its first output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, *args], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    interrupt_at: float | None = None
    try:
        while time.monotonic() < deadline:
            if interrupt_after is not None and chunks and interrupt_at is None:
                interrupt_at = time.monotonic() + interrupt_after
            if interrupt_at is not None and time.monotonic() >= interrupt_at and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                interrupt_after, interrupt_at = None, float("inf")
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_diagnose_on_a_terminal_shows_a_spinner_then_a_coloured_report(hung_service: int, tmp_path: Path) -> None:
    code, out = _on_a_terminal(ARGS, _env(hung_service, tmp_path))
    assert code == 3, out  # the hung /health is UNKNOWN
    assert "diagnosing default…" in out
    assert any(frame in out for frame in SPINNER_FRAMES)
    assert COLOUR.search(out), out
    report = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.rsplit("diagnosing default…", 1)[1])
    assert "es-doctor diagnose: target default" in report and "startup.health" in report


def test_no_color_on_a_terminal_has_no_colour(hung_service: int, tmp_path: Path) -> None:
    code, out = _on_a_terminal(ARGS, _env(hung_service, tmp_path, NO_COLOR="1"))
    assert code == 3, out
    assert "es-doctor diagnose: target" in out
    assert not COLOUR.search(out), out


def test_diagnose_in_a_pipe_has_no_spinner_and_no_escape(hung_service: int, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, *ARGS], capture_output=True, text=True, check=False,
                            env=_env(hung_service, tmp_path), timeout=60)
    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith("es-doctor diagnose: target default")
    for stream in (result.stdout, result.stderr):
        assert ESC not in stream and "diagnosing" not in stream
        assert not any(frame in stream for frame in SPINNER_FRAMES)


def test_json_on_a_terminal_has_no_spinner(hung_service: int, tmp_path: Path) -> None:
    import json

    code, out = _on_a_terminal([*ARGS, "--format", "json"], _env(hung_service, tmp_path))
    assert code == 3
    assert ESC not in out and "diagnosing" not in out
    assert json.loads(out.replace("\r\n", "\n"))["findings"]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_line_printer_highlights_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    tty = _Tty()
    monkeypatch.setattr(sys, "stdout", tty)
    line_printer()("event-bus-purge: FIXED")
    line_printer()("    ✗ step [bold]2[/] failed")  # brackets are text, never rich markup
    assert COLOUR.search(tty.getvalue())
    assert "[bold]2[/]" in tty.getvalue()

    monkeypatch.setenv("NO_COLOR", "1")
    plain_tty = _Tty()
    monkeypatch.setattr(sys, "stdout", plain_tty)
    line_printer()("event-bus-purge: NOT FIXED")
    text = plain_tty.getvalue()
    assert "NOT FIXED" in re.sub(r"\x1b\[[0-9;]*m", "", text) and not COLOUR.search(text)


def test_line_printer_and_spinner_in_a_pipe_write_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    with working("busy…"):
        line_printer()("event-bus-purge: FIXED")
    out = capsys.readouterr().out
    assert out == "event-bus-purge: FIXED\n"


ESCALATE = ["-m", "es_doctor", "escalate", "--level", "1", "--issue", "startup.health: hangs", "--severity", "low"]


def _escalate_env(port: int, tmp_path: Path) -> dict[str, str]:
    return _env(port, tmp_path, ES_DOCTOR_STATE_DIR=str(tmp_path / "state"), ES_DOCTOR_CHECK_TIMEOUT_S="1.5",
                ES_DOCTOR_DEADLINE_S="3")


def test_escalate_shows_a_spinner_on_a_terminal_only(hung_service: int, tmp_path: Path) -> None:
    code, out = _on_a_terminal(ESCALATE, _escalate_env(hung_service, tmp_path))
    assert code == 0, out  # no channel configured: the bundle only
    assert "diagnosing default for the incident bundle…" in out
    assert any(frame in out for frame in SPINNER_FRAMES)
    assert "bundle: " in out

    piped = subprocess.run([sys.executable, *ESCALATE], capture_output=True, text=True, check=False,
                           env=_escalate_env(hung_service, tmp_path), timeout=60)
    assert piped.returncode == 0, piped.stderr
    assert "bundle: " in piped.stdout
    for stream in (piped.stdout, piped.stderr):
        assert ESC not in stream and "diagnosing" not in stream


def test_ctrl_c_during_the_spinner_stops_cleanly(hung_service: int, tmp_path: Path) -> None:
    args = ["-m", "es_doctor", "diagnose", "--check", "startup.health", "--timeout", "20", "--deadline", "30"]
    begin = time.monotonic()
    code, out = _on_a_terminal(args, _env(hung_service, tmp_path), interrupt_after=0.5)
    assert code == 130, out
    assert time.monotonic() - begin < 15  # not the 20 s check timeout
    assert "diagnosing default…" in out and "Traceback" not in out
    assert out.rindex("\x1b[?25h") > out.rindex("\x1b[?25l")  # the cursor the spinner hid is shown again


def test_several_targets_on_a_terminal_are_coloured_with_their_summary(hung_service: int, tmp_path: Path) -> None:
    config = tmp_path / "es-doctor.yaml"
    url = f"http://127.0.0.1:{hung_service}"
    targets = "".join(f"  {name}: {{service: {{api_url: '{url}'}}}}\n" for name in ("alpha", "beta"))
    config.write_text("targets:\n" + targets, encoding="utf-8")
    env = {k: v for k, v in _env(hung_service, tmp_path).items() if k != "ES_DOCTOR_SERVICE__API_URL"}
    args = ["-m", "es_doctor", "-c", str(config), "diagnose", "--all-targets", "--check", "startup.health",
            "--timeout", "1.5", "--deadline", "4"]
    code, out = _on_a_terminal(args, env)
    assert code == 3, out
    assert "diagnosing 2 targets…" in out and COLOUR.search(out)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert "target alpha" in plain and "target beta" in plain and "targets:" in plain
    piped = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False, env=env, timeout=60)
    assert piped.returncode == 3 and ESC not in piped.stdout and "targets:" in piped.stdout
