"""The probe session is the only door, and every door is closed: commands leave no session open."""

from __future__ import annotations

from pathlib import Path

import pytest

from es_doctor.cli.main import main
from es_doctor.config import Target
from es_doctor.probes.session import ProbeSession, open_sessions, service_headers


@pytest.fixture
def unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A target whose every address refuses at once (port 9 of loopback, a Docker socket that is not there)."""
    for name in [n for n in __import__("os").environ if n.startswith("ES_DOCTOR_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("ES_DOCTOR_LAB_DIR", str(tmp_path / "nolab"))
    config = tmp_path / "es-doctor.yaml"
    config.write_text(f"""
state_dir: {tmp_path / 'state'}
targets:
  gone:
    service: {{api_url: "http://127.0.0.1:9", metrics_url: "http://127.0.0.1:9/metrics",
               pprof_url: "http://127.0.0.1:9/debug/pprof", log_dir: "{tmp_path / 'logs'}"}}
    qdrant: {{url: "http://127.0.0.1:9"}}
    postgres: {{dsn: "postgresql://u@127.0.0.1:9/db"}}
    prometheus: {{url: "http://127.0.0.1:9"}}
    docker: {{host: "unix://{tmp_path / 'no-docker.sock'}"}}
    check_timeout_s: 2
    deadline_s: 10
""", encoding="utf-8")
    return config


def test_a_session_is_counted_until_closed() -> None:
    before = open_sessions()
    session = ProbeSession(Target(), timeout=1)
    assert open_sessions() == before + 1
    session.close()
    session.close()  # twice is harmless
    assert open_sessions() == before
    with ProbeSession(Target(), timeout=1):
        assert open_sessions() == before + 1
    assert open_sessions() == before


@pytest.mark.parametrize("args", [
    ["emergency", "status"],
    ["logs", "--source", "docker"],
    ["emergency", "validate"],
    ["diagnose", "--class", "startup"],
    ["fix", "emergency-readonly", "--yes"],
], ids=" ".join)
def test_commands_close_every_session(unreachable: Path, args: list[str]) -> None:
    """Before: ``emergency status`` left its session open, ``logs`` built a Docker probe of its own, the
    backup code opened sessions it never closed."""
    before = open_sessions()
    code = main(["--config", str(unreachable), "-t", "gone", *args])
    assert code not in (64, 70, 78), f"the command did not run (exit {code})"
    assert open_sessions() == before


def test_one_bearer_header() -> None:
    assert service_headers(Target.model_validate({"service": {"api_key": "k1"}})) == {"Authorization": "Bearer k1"}
    assert service_headers(Target()) == {}
