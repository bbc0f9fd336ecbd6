"""The CLI end to end through its real entry point: exit codes, help, config show/init, secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from es_doctor.cli.main import main
from es_doctor.config import Target
from es_doctor.errors import ExitStatus
from es_doctor.findings import REPORT_SCHEMA_VERSION
from support import run_cli

PY = sys.executable


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "ES_DOCTOR_LAB_DIR": str(tmp_path / "nolab"),
            "HOME": str(tmp_path)}


def test_version() -> None:
    from es_doctor import __version__

    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"es-doctor {__version__}"


def _commands() -> list[list[str]]:
    from es_doctor.cli.main import command

    root = command()
    paths: list[list[str]] = [[]]

    def walk(cmd: object, prefix: list[str]) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(root, [])
    return paths


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "root")
def test_help_on_every_command(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == ExitStatus.OK
    out = capsys.readouterr().out
    assert "Usage" in out


def test_help_imports_no_heavy_sdk() -> None:
    code = ("import sys\nfrom es_doctor.cli.main import main\nrc = main(['--help'])\n"
            "heavy = [m for m in ('docker', 'psycopg', 'qdrant_client') if m in sys.modules]\n"
            "print('HEAVY=' + ','.join(heavy))\nsys.exit(rc)")
    result = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "HEAVY=\n" in result.stdout


def test_shell_completion_is_offered(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--help"])
    assert "--install-completion" in capsys.readouterr().out


def test_usage_error_never_shares_the_critical_code(home: dict[str, str]) -> None:
    result = run_cli("diagnose", "--format", "yaml", env=home)
    assert result.returncode == ExitStatus.USAGE == 64
    result = run_cli("no-such-command", env=home)
    assert result.returncode == ExitStatus.USAGE
    result = run_cli("diagnose", "--class", "nonsense", env=home)
    assert result.returncode == ExitStatus.USAGE
    assert "unknown class 'nonsense'" in result.stderr
    result = run_cli("diagnose", "--check", "vectors.colection", env=home)
    assert result.returncode == ExitStatus.USAGE
    assert "did you mean vectors.collection" in result.stderr


def test_config_error_exit_code_and_message(tmp_path: Path, home: dict[str, str]) -> None:
    bad = tmp_path / "es-doctor.yaml"
    bad.write_text("targets:\n  prod:\n    service:\n      api_ulr: http://x\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_cli("--config", str(bad), "diagnose", env=home, cwd=tmp_path)
    assert result.returncode == ExitStatus.CONFIG == 78
    assert f"{bad}:4: key 'targets.prod.service.api_ulr': unknown key" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def _secret_fields(model: type, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    from pydantic import BaseModel

    out = []
    for name, info in model.model_fields.items():  # type: ignore[attr-defined]
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        annotation = info.annotation
        if extra.get("secret"):
            out.append((*prefix, name))
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.extend(_secret_fields(annotation, (*prefix, name)))
    return out


def test_config_show_never_prints_a_secret(tmp_path: Path, home: dict[str, str]) -> None:
    fields = _secret_fields(Target)
    assert len(fields) >= 6  # api_key, openai key, qdrant key, dsn, password, redis url …
    planted: dict[str, str] = {}
    lines = ["targets:", "  prod:"]
    sections: dict[str, list[str]] = {}
    env = dict(home)
    for index, path in enumerate(fields):
        secret = f"PLANTED-SECRET-{index}-x9"
        planted[".".join(path)] = secret
        value = f"postgresql://user:{secret}@db:5432/x" if path[-1] in ("dsn", "url") else secret
        sections.setdefault(path[0], []).append(f"      {path[1]}: '{value}'")
    for section, entries in sections.items():
        lines.append(f"    {section}:")
        lines.extend(entries)
    lines += ["escalation:", "  channels:",
              "    ops: {type: slack, url: 'https://hooks.slack.com/services/T0/B0/PLANTED-ESC-URL-x9'}",
              "    pd: {type: pagerduty, routing_key: 'PLANTED-ESC-KEY-x9'}",
              "    hook: {type: webhook, url: 'https://user:PLANTED-ESC-PW-x9@hooks.example/in'}"]
    config = tmp_path / "c.yaml"
    config.write_text("\n".join(lines) + "\n")
    env["ES_DOCTOR_SERVICE__API_KEY"] = "PLANTED-ENV-SECRET-x9"
    outputs = []
    for args in (["config", "show", "-t", "prod"], ["config", "show", "--all"]):
        result = run_cli("--config", str(config), *args, env=env)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    joined = "\n".join(outputs)
    assert "PLANTED" not in joined
    assert "********" in joined
    assert "user:********@db" in joined
    assert "hooks.slack.com" in joined and "routing_key: '********'" in joined, "the escalation section is shown"


def test_config_init_writes_a_valid_example_and_never_overwrites(tmp_path: Path, home: dict[str, str]) -> None:
    target = tmp_path / "es-doctor.yaml"
    assert run_cli("config", "init", str(target), env=home).returncode == 0
    text = target.read_text()
    assert "env:PGPASSWORD" in text
    assert run_cli("--config", str(target), "config", "show", env=home).returncode == 0
    target.write_text("mine: true\n")
    result = run_cli("config", "init", str(target), env=home)
    assert result.returncode == ExitStatus.CONFIG
    assert target.read_text() == "mine: true\n"


def test_checks_lists_every_check(home: dict[str, str]) -> None:
    from es_doctor.checks.registry import load_all

    result = run_cli("checks", env={**home, "COLUMNS": "250"})
    assert result.returncode == 0
    for check_id in load_all():
        assert check_id in result.stdout


def test_json_report_schema_flag_matches_docs() -> None:
    shipped = json.loads((Path(__file__).parents[2] / "docs" / "report.schema.json").read_text())
    assert shipped["properties"]["schema_version"]["default"] == REPORT_SCHEMA_VERSION


def test_runbooks_list_reports_a_malformed_user_runbook_and_lists_the_others(tmp_path: Path) -> None:
    (tmp_path / "rbs").mkdir()
    (tmp_path / "rbs" / "broken.yaml").write_text("id: broken\ntitle: x\n  bad: [\n", encoding="utf-8")
    config = tmp_path / "es-doctor.yaml"
    config.write_text(f"runbook_dirs: [{tmp_path / 'rbs'}]\n", encoding="utf-8")
    result = run_cli("-c", str(config), "runbooks", "list", env={"HOME": str(tmp_path)})
    assert result.returncode == 65
    assert "broken.yaml:3" in result.stderr
    assert "service-restart" in result.stdout and "qdrant-collection-restore" in result.stdout


def test_several_global_targets_are_honoured_or_refused(tmp_path: Path, home: dict[str, str]) -> None:
    """#24 item 17: ``es-doctor -t a -t b diagnose`` diagnosed only ``b``; a command that takes one target
    now refuses several instead of keeping the last."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    config = tmp_path / "two.yaml"
    config.write_text("targets:\n" + "".join(
        f"  {name}:\n    service:\n      api_url: http://127.0.0.1:{closed}\n" for name in ("alpha", "beta")),
        encoding="utf-8")
    both = run_cli("-c", str(config), "-t", "alpha", "-t", "beta", "diagnose", "--check", "startup.api-port",
               "-f", "json", env=home)
    assert both.returncode in (1, 2, 3), both.stderr
    assert {r["target"] for r in json.loads(both.stdout)["reports"]} == {"alpha", "beta"}
    one = run_cli("-c", str(config), "-t", "alpha", "-t", "beta", "config", "show", env=home)
    assert one.returncode == ExitStatus.USAGE
    assert "-t was given 2 times (alpha, beta): this command takes one target" in one.stderr
    assert "Traceback" not in one.stderr
    same = run_cli("-c", str(config), "-t", "alpha", "-t", "alpha", "config", "show", env=home)
    assert same.returncode == 0 and "target: alpha" in same.stdout
