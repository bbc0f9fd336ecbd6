"""``diagnose --output FILE``: the report written atomically beside FILE then renamed (node_exporter's
textfile collector), for every format; a write that fails leaves the old file whole and no temporary."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from es_doctor.cli.main import main
from es_doctor.errors import ExitStatus


@pytest.fixture
def refused_target(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The default target with its API on a port nobody listens on: startup.api-port is CRIT at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name in [k for k in os.environ if k.startswith("ES_DOCTOR_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("ES_DOCTOR_SERVICE__API_URL", f"http://127.0.0.1:{port}")
    monkeypatch.chdir(tmp_path)


ARGS = ["diagnose", "--check", "startup.api-port"]


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".es-doctor-tmp")]


@pytest.mark.usefixtures("refused_target")
def test_prometheus_to_a_textfile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "textfile" / "es_doctor.prom"
    out.parent.mkdir()
    assert main([*ARGS, "--format", "prometheus", "--output", str(out)]) == ExitStatus.CRITICAL
    assert capsys.readouterr().out == ""  # the report went to the file only
    families = {f.name: f for f in text_string_to_metric_families(out.read_text(encoding="utf-8"))}
    status = {s.labels["check"]: s.value for s in families["es_doctor_check_status"].samples}
    assert status == {"startup.api-port": 2.0}
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # the collector (another user) reads it
    assert _leftovers(out.parent) == []


@pytest.mark.usefixtures("refused_target")
@pytest.mark.parametrize("fmt", ["table", "json", "junit", "nagios"])
def test_every_format_can_be_written(fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"report.{fmt}"
    assert main([*ARGS, "--format", fmt, "-o", str(out)]) == ExitStatus.CRITICAL
    assert capsys.readouterr().out == ""
    text = out.read_text(encoding="utf-8")
    assert "startup.api-port" in text and "\x1b[" not in text
    if fmt == "json":
        assert json.loads(text)["findings"][0]["status"] == "CRIT"


@pytest.mark.usefixtures("refused_target")
def test_a_rewrite_replaces_the_file_and_keeps_its_mode(tmp_path: Path) -> None:
    out = tmp_path / "es_doctor.prom"
    out.write_text("# old\n", encoding="utf-8")
    out.chmod(0o640)
    before = out.stat().st_ino
    assert main([*ARGS, "-f", "prometheus", "-o", str(out)]) == ExitStatus.CRITICAL
    assert out.stat().st_ino != before  # renamed over, never rewritten in place
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert "es_doctor_check_status" in out.read_text(encoding="utf-8")


@pytest.mark.usefixtures("refused_target")
def test_a_failed_write_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "es_doctor.prom"
    out.write_text("# the previous report\n", encoding="utf-8")

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert main([*ARGS, "-f", "prometheus", "-o", str(out)]) == ExitStatus.CANT_CREATE
    assert "cannot write the report to" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == "# the previous report\n"
    assert _leftovers(tmp_path) == []


@pytest.mark.usefixtures("refused_target")
@pytest.mark.parametrize("where", ["missing-dir/x.prom", "."])
def test_an_unwritable_output_is_exit_73_naming_it(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import es_doctor.runner

    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the checks ran before the output was known to be writable")

    monkeypatch.setattr(es_doctor.runner, "diagnose", never)
    assert main([*ARGS, "-f", "prometheus", "-o", str(tmp_path / where)]) == ExitStatus.CANT_CREATE
    err = capsys.readouterr().err
    assert "cannot write the report to" in err and "Traceback" not in err
