"""Where es-doctor keeps its state (XDG_STATE_HOME through platformdirs; ES_DOCTOR_STATE_DIR wins) and what
``config show`` says about where the shown target comes from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from es_doctor.cli.main import main
from es_doctor.config import lab_dir, load_config
from es_doctor.errors import ExitStatus


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [k for k in os.environ if k.startswith(("ES_DOCTOR_", "XDG_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def _show(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main([*args, "config", "show"]) == ExitStatus.OK
    data: dict[str, object] = yaml.safe_load(capsys.readouterr().out)
    return data


def test_state_defaults_to_xdg_state_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    config = load_config().config
    assert config.state_dir == str(tmp_path / "xdg-state" / "es-doctor")
    assert config.audit_log == str(tmp_path / "xdg-state" / "es-doctor" / "audit.jsonl")
    assert lab_dir() == tmp_path / "xdg-state" / "es-doctor" / "lab"


def test_without_xdg_state_home_it_is_under_local_state(tmp_path: Path) -> None:
    assert load_config().config.state_dir == str(tmp_path / "home" / ".local" / "state" / "es-doctor")


def test_es_doctor_state_dir_wins_and_takes_the_audit_log_along(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("ES_DOCTOR_STATE_DIR", str(tmp_path / "mine"))
    config = load_config().config
    assert config.state_dir == str(tmp_path / "mine")
    assert config.audit_log == str(tmp_path / "mine" / "audit.jsonl")
    # a file that names its audit log keeps it; ES_DOCTOR_AUDIT_LOG wins over both
    (tmp_path / "es-doctor.yaml").write_text(f"audit_log: {tmp_path / 'elsewhere.jsonl'}\n", encoding="utf-8")
    assert load_config().config.audit_log == str(tmp_path / "elsewhere.jsonl")
    monkeypatch.setenv("ES_DOCTOR_AUDIT_LOG", str(tmp_path / "env.jsonl"))
    assert load_config().config.audit_log == str(tmp_path / "env.jsonl")


def test_config_show_names_the_defaults_and_expands_paths(capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text("audit_log: ~/audit/es.jsonl\n", encoding="utf-8")
    data = _show(capsys)
    assert data["source"] == "built-in defaults (no config file found)"
    data = _show(capsys, "-c", str(tmp_path / "cfg.yaml"))
    assert data["source"] == str(tmp_path / "cfg.yaml")
    assert data["audit_log"] == str(tmp_path / "home" / "audit" / "es.jsonl")  # no ~ left
    assert "~" not in str(data["state_dir"]) and "~" not in str(data["backup_dir"])


def test_config_show_names_the_lab_target_file_and_the_env_overrides(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "target.yaml").write_text("service: {api_url: 'http://127.0.0.1:18080'}\n", encoding="utf-8")
    monkeypatch.setenv("ES_DOCTOR_LAB_DIR", str(lab))
    monkeypatch.setenv("ES_DOCTOR_THRESHOLDS__LATENCY_P95_WARN_MS", "150")
    data = _show(capsys, "-t", "lab")
    assert data["source"] == f"{lab / 'target.yaml'} (the lab's target, written by es-doctor lab up)"
    assert data["env_overrides"] == ["ES_DOCTOR_THRESHOLDS__LATENCY_P95_WARN_MS"]


def test_the_files_state_dir_takes_the_audit_log_and_the_crash_logs_along(tmp_path: Path) -> None:
    """Before: only ES_DOCTOR_STATE_DIR moved them; a file's ``state_dir`` left both in the default place."""
    from es_doctor.cli import main as cli_main

    state = tmp_path / "from-file"
    (tmp_path / "es-doctor.yaml").write_text(f"state_dir: {state}\n", encoding="utf-8")
    config = load_config().config
    assert config.state_dir == str(state)
    assert config.audit_log == str(state / "audit.jsonl")
    crash = cli_main._crash_log(RuntimeError("boom"))
    assert crash.parent == state / "crash"
    # a file that names its audit log keeps it
    (tmp_path / "es-doctor.yaml").write_text(f"state_dir: {state}\naudit_log: {tmp_path / 'a.jsonl'}\n",
                                             encoding="utf-8")
    assert load_config().config.audit_log == str(tmp_path / "a.jsonl")


def test_a_fix_writes_its_audit_record_into_the_files_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "from-file"
    (tmp_path / "es-doctor.yaml").write_text(
        f"state_dir: {state}\ntargets:\n  t:\n    service: {{api_url: 'http://127.0.0.1:9'}}\n"
        "    absent: {docker: t, postgres: t, qdrant: t, redis: t, prometheus: t, grafana: t}\n", encoding="utf-8")
    main(["fix", "emergency-readonly", "--yes"])
    assert (state / "audit.jsonl").is_file()
    assert not (tmp_path / "home" / ".local" / "state" / "es-doctor" / "audit.jsonl").exists()
