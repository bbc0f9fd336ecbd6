"""The test harness itself (tests/support): isolation, run_cli in both modes, eventually, require."""

from __future__ import annotations

from pathlib import Path

import pytest

from es_doctor import __version__
from support import eventually, in_ci, isolated_env, require, run_cli


def test_the_developers_variables_never_reach_a_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ES_DOCTOR_SERVICE__API_KEY", "developer-secret")
    monkeypatch.setenv("ES_DOCTOR_TARGET", "prod")
    monkeypatch.setenv("XDG_CONFIG_HOME", "/home/dev/.config")
    env = isolated_env(tmp_path, {"ES_DOCTOR_TARGET": "t"})
    assert "ES_DOCTOR_SERVICE__API_KEY" not in env
    assert env["ES_DOCTOR_TARGET"] == "t"  # the test's own variables win
    assert env["HOME"] == str(tmp_path / "home") and Path(env["HOME"]).is_dir()
    assert env["XDG_CONFIG_HOME"].startswith(str(tmp_path))
    assert env["ES_DOCTOR_LAB_DIR"] == str(tmp_path / "nolab")


def test_a_subprocess_run_does_not_see_the_developers_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ES_DOCTOR_CONFIG", str(tmp_path / "developer.yaml"))
    (tmp_path / "developer.yaml").write_text("targets: {devbox: {service: {api_url: 'http://127.0.0.1:9'}}}\n")
    result = run_cli("config", "show", home=tmp_path / "h")
    assert "devbox" not in result.output


@pytest.mark.parametrize("in_process", [False, True])
def test_run_cli_gives_code_and_output_either_way(in_process: bool) -> None:
    result = run_cli("--version", in_process=in_process)
    assert result.code == 0 and result.stdout.strip() == f"es-doctor {__version__}", result.output
    bad = run_cli("no-such-command", in_process=in_process)
    assert bad.code == 64 and "no-such-command" in bad.stderr, bad.output


def test_eventually_returns_the_value_or_fails_saying_what() -> None:
    calls = iter([0, 0, 7])
    assert eventually(lambda: next(calls), 5, 0.01) == 7
    with pytest.raises(AssertionError, match=r"not within 0.2 s: the sky falls; last value: False"):
        eventually(lambda: False, 0.2, 0.05, "the sky falls")
    tries = iter([ConnectionError("refused"), "up"])

    def starting() -> str:
        item = next(tries)
        if isinstance(item, Exception):
            raise item
        return item

    assert eventually(starting, 5, 0.01, ignoring=(ConnectionError,)) == "up"


def test_require_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert in_ci()
    with pytest.raises(pytest.fail.Exception, match="CI=true and no-such-program-x unavailable"):
        require("no-such-program-x")
    monkeypatch.setenv("CI", "")
    assert not in_ci()
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL unavailable: no initdb"):
        require("PostgreSQL", "no initdb")
    assert require("sh").endswith("/sh")
    assert require("PostgreSQL", None) == "PostgreSQL"
