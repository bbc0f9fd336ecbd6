"""Diagnose pays only for what it uses (#14): which SDKs a run imports, the TLS context built only for
a handshake, Qdrant's REST answers read without qdrant-client, and the metrics window that starts at
the previous run's scrape."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from es_doctor.checks.window import (
    MAX_REUSE_AGE_S,
    ScrapeStore,
    reusable,
    same_life,
    wait_before_reuse,
)
from es_doctor.config import Target
from es_doctor.probes import http
from es_doctor.probes.docker import DockerProbe, _engine_message, demultiplex
from es_doctor.probes.metrics import Scrape, parse_exposition
from es_doctor.probes.qdrant import _collection_info, _collection_names, _query_hits, _scroll_page, _then
from es_doctor.probes.result import Failure, FailureKind, success
from es_doctor.probes.session import sdk_modules
from support import isolated_env

PY = sys.executable
START = "process_start_time_seconds"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- what a run imports

IMPORTS = ("import sys\nfrom es_doctor.cli.main import main\nrc = main(sys.argv[1:])\n"
           "heavy = [m for m in ('qdrant_client', 'numpy', 'grpc', 'docker', 'psycopg', 'jinja2', "
           "'grafana_foundation_sdk', 'ruamel', 'rich') if m in sys.modules]\n"
           "sys.stderr.write('IMPORTED=' + ','.join(heavy) + '\\n')\n")


def _imported_by(tmp_path: Path, qdrant_url: str, *args: str) -> set[str]:
    port = _closed_port()
    config = tmp_path / "es-doctor.yaml"
    config.write_text(f"""
state_dir: {tmp_path / "state"}
targets:
  default:
    service: {{api_url: "http://127.0.0.1:{port}", metrics_url: "http://127.0.0.1:{port}/metrics",
              log_dir: "{tmp_path / "logs"}"}}
    qdrant: {{url: "{qdrant_url}"}}
    postgres: {{dsn: "postgresql://u@127.0.0.1:{port}/db"}}
    prometheus: {{url: "http://127.0.0.1:{port}"}}
    docker: {{host: "unix://{tmp_path / "no-docker.sock"}"}}
    check_timeout_s: 3
    deadline_s: 8
""")
    env = isolated_env(tmp_path, {"ES_DOCTOR_CONFIG": str(config)})
    result = subprocess.run([PY, "-c", IMPORTS, "diagnose", "--format", "json", *args], capture_output=True,
                            text=True, env=env, timeout=120, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    line = next(x for x in result.stderr.splitlines() if x.startswith("IMPORTED="))
    return {m for m in line.removeprefix("IMPORTED=").split(",") if m}


def test_a_url_target_diagnose_never_imports_qdrant_client(tmp_path: Path) -> None:
    imported = _imported_by(tmp_path, f"http://127.0.0.1:{_closed_port()}")
    assert "qdrant_client" not in imported and "numpy" not in imported and "grpc" not in imported
    # an engine on a Unix socket is read over its API: no docker SDK either
    assert "docker" not in imported
    # runbooks are not templated, no dashboard is built, JSON is not a table (#25)
    assert not imported & {"jinja2", "grafana_foundation_sdk", "ruamel", "rich"}
    # the PostgreSQL check did import psycopg: the list is what was imported
    assert "psycopg" in imported


def test_a_class_imports_only_the_sdks_of_its_checks(tmp_path: Path) -> None:
    imported = _imported_by(tmp_path, f"http://127.0.0.1:{_closed_port()}", "--class", "vectors")
    assert imported == set()


def test_the_sdks_preloaded_are_those_of_the_selected_components() -> None:
    target = Target.model_validate({"qdrant": {"url": "http://q:6333"}, "absent": {"docker": "none here"}})
    assert sdk_modules(target, ["qdrant", "postgres", "docker", "service"]) == [
        "prometheus_client.parser", "psutil", "psycopg"]
    tcp = Target.model_validate({"docker": {"host": "tcp://10.0.0.5:2376"}})
    assert sdk_modules(tcp, ["docker"]) == ["docker"]
    socket_ = Target.model_validate({"docker": {"host": "unix:///run/docker.sock"}})
    assert sdk_modules(socket_, ["docker"]) == []
    embedded = Target.model_validate({"qdrant": {"url": "local::memory:"}})
    assert sdk_modules(embedded, ["qdrant"]) == ["qdrant_client"]
    assert sdk_modules(embedded, []) == []


# --------------------------------------------------------------------------- TLS built for a handshake only


def test_plain_http_never_builds_the_verifying_tls_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "_TLS", [])
    result = http.HttpProbe(timeout=2).get(f"http://127.0.0.1:{_closed_port()}/health")
    assert result.failure is not None and result.failure.kind is FailureKind.REFUSED
    assert http._TLS == []


def test_a_handshake_gets_the_verifying_context_never_the_placeholder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "_TLS", [])
    seen: list[Any] = []

    class Inner:
        def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                      timeout: float | None = None) -> Inner:
            seen.append(ssl_context)
            return self

    stream = http._DeadlineStream(Inner())  # type: ignore[arg-type]
    stream.start_tls(http._UNBUILT_TLS, "example.org", 5.0)
    assert seen[0] is http.verifying_tls_context() is not http._UNBUILT_TLS
    assert seen[0].verify_mode.name == "CERT_REQUIRED" and seen[0].check_hostname
    assert http._UNBUILT_TLS.cert_store_stats()["x509_ca"] == 0  # the placeholder trusts nothing
    stream.start_tls(http._UNBUILT_TLS, "example.org", 5.0)
    assert seen[1] is seen[0]  # built once


# --------------------------------------------------------------------------- Qdrant's REST answers


def test_qdrant_rest_answers_are_read_like_qdrant_client_did() -> None:
    assert _collection_names({"collections": [{"name": "b"}, {"name": "task_vectors"}]}) == ["b", "task_vectors"]
    single = {"status": "green", "points_count": 12,
              "config": {"params": {"vectors": {"size": 1536, "distance": "Cosine"}}}}
    info = _collection_info("task_vectors", single)
    assert (info.vector_size, info.distance, info.points_count, info.status) == (1536, "Cosine", 12, "green")
    named = {"status": "yellow", "points_count": None,
             "config": {"params": {"vectors": {"text": {"size": 384, "distance": "Dot"}}}}}
    info = _collection_info("c", named)
    assert (info.vector_size, info.distance, info.points_count, info.status) == (384, "Dot", None, "yellow")
    assert _query_hits({"points": [{"id": 1}, {"id": 2}]}) == 2
    assert _scroll_page({"points": [{"id": 1, "payload": {"task_id": 7}}, {"id": 2}], "next_page_offset": 3},
                        "task_id") == ([7, None], 3)


def test_an_answer_off_qdrants_api_is_a_bad_response_never_an_exception() -> None:
    for answer in ({"collections": "nope"}, [], {"config": {}}, None):
        result = _then(success(answer), lambda r: _collection_info("c", r) if isinstance(r, dict) and "config"
                       in r else _collection_names(r))
        assert result.failure is not None and result.failure.kind is FailureKind.BAD_RESPONSE, answer
    assert isinstance(_scroll_page({"points": 3}, "k"), Failure)


# --------------------------------------------------------------------------- the metrics window's first scrape


def _scrape(at: float, requests: float, start: float | None = 1000.0) -> Scrape:
    text = f"email_sender_http_requests_total{{code=\"200\"}} {requests}\n"
    if start is not None:
        text += f"{START} {start}\n"
    return parse_exposition(text, taken_at=at)


def test_a_saved_scrape_is_waited_for_only_while_younger_than_the_window() -> None:
    now = 10_000.0
    assert wait_before_reuse(None, now, 2.0) is None
    assert wait_before_reuse(_scrape(now - 0.5, 1), now, 2.0) == pytest.approx(1.5)
    assert wait_before_reuse(_scrape(now - 2.0, 1), now, 2.0) == 0.0
    assert wait_before_reuse(_scrape(now - 30, 1), now, 2.0) == 0.0
    assert wait_before_reuse(_scrape(now - MAX_REUSE_AGE_S - 1, 1), now, 2.0) is None  # too old
    assert wait_before_reuse(_scrape(now + 5, 1), now, 2.0) is None  # from the future: the clock moved back


def test_one_process_life_means_the_same_start_and_no_counter_back() -> None:
    assert same_life(_scrape(0, 10), _scrape(3, 15), START)
    assert not same_life(_scrape(0, 10), _scrape(3, 15, start=2000.0), START)  # restarted, counters grew past
    assert not same_life(_scrape(0, 10), _scrape(3, 4), START)  # a counter went back
    assert not same_life(_scrape(0, 10), _scrape(3, 15, start=None), START)  # another exporter
    assert same_life(_scrape(0, 10, start=None), _scrape(3, 15, start=None), START)


def test_a_saved_scrape_starts_a_window_only_when_old_enough_and_fresh_enough() -> None:
    assert reusable(_scrape(100, 10), _scrape(102.5, 12), 2.0, START)
    assert not reusable(_scrape(100, 10), _scrape(101, 12), 2.0, START)  # shorter than the window
    assert not reusable(_scrape(100, 10), _scrape(100 + MAX_REUSE_AGE_S + 3, 12), 2.0, START)  # stale
    assert not reusable(_scrape(100, 10), _scrape(103, 12, start=5.0), 2.0, START)


def test_the_store_is_private_and_keyed_by_target_and_url(tmp_path: Path) -> None:
    directory = tmp_path / "state" / "scrapes"
    store = ScrapeStore(directory, "lab", "http://127.0.0.1:8081/metrics")
    assert store.load() is None
    assert store.save(_scrape(123.5, 42))
    loaded = store.load()
    assert loaded is not None and loaded.taken_at == 123.5
    assert loaded.total("email_sender_http_requests_total", code="200") == 42
    assert loaded.total(START) == 1000.0
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert ScrapeStore(directory, "lab", "http://other:8081/metrics").load() is None
    assert ScrapeStore(directory, "staging", "http://127.0.0.1:8081/metrics").load() is None
    assert [p.name for p in directory.iterdir()] == [store.path.name]  # no temporary file left


@pytest.mark.parametrize("content", [b"", b"not json", b"[]", b'{"format": 1}', b"{" * 100_000,
                                     b'{"format":1,"target":"lab","metrics_url":"u","taken_at":"nan","samples":[]}'])
def test_a_damaged_store_file_is_ignored(tmp_path: Path, content: bytes) -> None:
    store = ScrapeStore(tmp_path, "lab", "u")
    store.path.write_bytes(content)
    assert store.load() is None


def test_a_planted_link_or_a_huge_file_is_not_read(tmp_path: Path) -> None:
    store = ScrapeStore(tmp_path, "lab", "u")
    elsewhere = tmp_path / "elsewhere.json"
    ScrapeStore(tmp_path / "x", "lab", "u").save(_scrape(1, 1))
    elsewhere.write_bytes((tmp_path / "x" / store.path.name).read_bytes())
    store.path.symlink_to(elsewhere)
    assert store.load() is None
    store.path.unlink()
    with store.path.open("wb") as out:
        out.truncate(5 * 1024 * 1024)
    assert store.load() is None


def test_an_unwritable_state_dir_only_means_two_scrapes_next_time(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert ScrapeStore(blocker / "scrapes", "lab", "u").save(_scrape(1, 1)) is False


# --------------------------------------------------------------------------- the Docker engine's API


def test_a_log_stream_loses_its_frame_headers() -> None:
    def frame(stream: int, text: bytes) -> bytes:
        return bytes([stream, 0, 0, 0]) + len(text).to_bytes(4, "big") + text

    assert demultiplex(frame(1, b"started\n") + frame(2, b"warning: x\n") + frame(1, b"ready\n")) == \
        b"started\nwarning: x\nready\n"
    assert demultiplex(b"plain text from a tty container\n") == b"plain text from a tty container\n"
    assert demultiplex(b"") == b""


def test_the_engines_error_message_is_read_from_its_answer() -> None:
    assert _engine_message(b'{"message": "No such container: x"}') == "No such container: x"
    assert _engine_message(b"page not found") == "page not found"


def test_the_engine_is_read_over_its_socket_unless_it_is_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert DockerProbe().socket_path() == "/var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/d.sock")
    assert DockerProbe().socket_path() == "/tmp/d.sock"
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.5:2376")
    assert DockerProbe().socket_path() is None
    assert DockerProbe(host="ssh://ops@host").socket_path() is None


def test_an_engine_that_is_not_there_is_refused_not_an_exception(tmp_path: Path) -> None:
    result = DockerProbe(host=f"unix://{tmp_path / 'none.sock'}", timeout=2).ping()
    assert result.failure is not None and result.failure.kind is FailureKind.REFUSED
    assert "docker engine unreachable" in result.failure.message


# --------------------------------------------------------------------------- --help: the CLI's skeleton (#25)

HELP_PROG = ("import sys\nfrom es_doctor.cli.main import main\nrc = main(sys.argv[1:])\n"
             "sys.stderr.write('MODULES=' + ','.join(sorted(sys.modules)) + '\\n')\n")
#: what a help never needs: the config's models, the engines, the renderers, the SDKs (es_doctor.render itself is
#: the --format choices; its renderers are its submodules)
NOT_FOR_HELP = ("pydantic", "pydantic_core", "docker", "psycopg", "qdrant_client", "httpx", "httpcore",
                "prometheus_client", "grafana_foundation_sdk", "jinja2", "ruamel", "yaml", "psutil", "rich",
                "es_doctor.runner", "es_doctor.config", "es_doctor.checks", "es_doctor.probes", "es_doctor.runbooks",
                "es_doctor.serve", "es_doctor.lab", "es_doctor.render.")


def _command_paths() -> list[list[str]]:
    from es_doctor.cli.main import command

    def walk(cmd: Any, prefix: list[str]) -> list[list[str]]:
        found = [prefix]
        for name, sub in getattr(cmd, "commands", {}).items():
            found += walk(sub, [*prefix, name])
        return found

    return walk(command(), [])


def _forbidden(modules: list[str]) -> list[str]:
    return sorted(m for m in modules for bad in NOT_FOR_HELP
                  if (m.startswith(bad) if bad.endswith(".") else m == bad or m.startswith(bad + ".")))


def test_every_help_imports_nothing_beyond_the_cli_skeleton() -> None:
    paths = _command_paths()
    assert len(paths) > 30 and ["diagnose"] in paths and ["lab", "fault", "add"] in paths
    offenders = {}
    for path in paths:
        result = subprocess.run([PY, "-c", HELP_PROG, *path, "--help"], capture_output=True, text=True,
                                timeout=60, check=False)
        assert "Usage:" in result.stdout, (path, result.stderr)
        line = next(x for x in result.stderr.splitlines() if x.startswith("MODULES="))
        allowed = {"es_doctor.lab", "es_doctor.lab.fault_table"} if path == ["lab", "fault", "add"] else set()
        bad = [m for m in _forbidden(line.removeprefix("MODULES=").split(",")) if m not in allowed]
        if bad:
            offenders[" ".join(path) or "(root)"] = bad
    assert offenders == {}


def test_lab_fault_add_help_still_lists_every_fault() -> None:
    from es_doctor.lab.fault_table import TABLE

    result = subprocess.run([PY, "-m", "es_doctor", "lab", "fault", "add", "--help"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert "Faults (es-doctor lab faults" in result.stdout
    assert all(spec.name in result.stdout for spec in TABLE)


def test_a_root_option_given_is_still_coerced_and_checked(tmp_path: Path) -> None:
    """The root's options skip pydantic only when absent: a value given goes through typer's coercion."""
    config = tmp_path / "c.yaml"
    config.write_text("targets: {only: {}}\n")
    result = subprocess.run([PY, "-m", "es_doctor", "-c", str(config), "-t", "only", "config", "show"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "target: only" in result.stdout


# --------------------------------------------------------------------------- a run builds its own command only (#25)


def test_the_command_a_run_invokes_is_read_past_the_root_options() -> None:
    from es_doctor.cli.main import invoked

    assert invoked(["diagnose", "--format", "json"]) == "diagnose"
    assert invoked(["-c", "diagnose", "-t", "lab", "lab", "status"]) == "lab"  # a value is not a command
    assert invoked(["--config", "x.yaml", "--target", "a", "--target", "b", "serve"]) == "serve"
    assert invoked(["-h"]) is None and invoked([]) is None and invoked(["nosuch"]) is None
    assert invoked(["--", "diagnose"]) is None


def test_the_root_options_taking_a_value_are_those_invoked_skips() -> None:
    from es_doctor.cli.main import ROOT_VALUE_OPTIONS, command

    taking = {name for p in command().params if not getattr(p, "is_flag", False) and p.nargs == 1
              and getattr(p, "param_type_name", "") == "option" for name in p.opts + p.secondary_opts}
    assert taking == ROOT_VALUE_OPTIONS


COUNT_COMPILES = ("import sys\ncount = [0]\n"
                  "sys.addaudithook(lambda event, args: count.__setitem__(0, count[0] + (event == 'compile')))\n"
                  "from es_doctor.cli.main import main\nrc = main(sys.argv[1:])\n"
                  "sys.stderr.write(f'COMPILES={count[0]}\\n')\n")


def _compiles(*argv: str) -> int:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run([PY, "-m", "compileall", "-q", str(Path(__file__).parents[2] / "src")], capture_output=True,
                   check=False, timeout=120)
    result = subprocess.run([PY, "-c", COUNT_COMPILES, *argv], capture_output=True, text=True, env=env,
                            timeout=60, check=False)
    return int(next(x for x in result.stderr.splitlines() if x.startswith("COMPILES=")).removeprefix("COMPILES="))


def test_a_command_builds_its_own_signature_not_every_commands() -> None:
    """typer compiles each command's string annotations (twice, unless they are objects already) when it
    builds the command: the whole tree (the root's help) cost ~1,100 ``compile()`` calls, ~470 with the
    annotations evaluated once; one command's help ~110-170."""
    whole = _compiles("--help")
    assert _compiles("diagnose", "--help") < 250 < whole < 700
    assert _compiles("lab", "fault", "add", "--help") < 250
