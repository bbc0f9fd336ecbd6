"""Configuration: lookup order, targets, env overrides, clear errors, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from es_doctor.config import Config, load_config, parse_size
from es_doctor.errors import ConfigError, ExitStatus
from es_doctor.example import EXAMPLE
from es_doctor.secrets import mask_secret, masked_dump, resolve_secret, scrub, secret_values


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("ES_DOCTOR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("ES_DOCTOR_LAB_DIR", str(tmp_path / "nolab"))
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_stack_contract() -> None:
    loaded = load_config()
    t = loaded.target
    assert loaded.source is None
    assert loaded.target_name == "default"
    assert t.service.api_url == "http://localhost:8080"
    assert t.service.metrics_url == "http://localhost:8081/metrics"
    assert t.qdrant.url == "http://localhost:6333"
    assert (t.qdrant.collection, t.qdrant.vector_size, t.qdrant.distance) == ("task_vectors", 1536, "Cosine")
    assert t.service.container == "email-sender-go"
    assert t.service.config_path == "/app/config/config.yaml"
    assert t.thresholds.latency_p95_warn_ms == 100 and t.thresholds.latency_p95_crit_ms == 500
    assert t.thresholds.memory_warn_pct == 85 and t.thresholds.memory_crit_pct == 95
    assert t.thresholds.error_rate_warn_pct == 1 and t.thresholds.error_rate_crit_pct == 5
    assert t.thresholds.vector_insert_error_warn_pct == 0.1
    assert t.thresholds.vector_search_latency_warn_ms == 50


def test_lookup_order_explicit_then_env_then_cwd_then_user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "xdg" / "es-doctor"
    user.mkdir(parents=True)
    write(user / "es-doctor.yaml", "default_target: user\ntargets: {user: {}}\n")
    assert load_config().target_name == "user"
    write(tmp_path / "es-doctor.yaml", "default_target: cwd\ntargets: {cwd: {}}\n")
    assert load_config().target_name == "cwd"
    env_file = write(tmp_path / "env.yaml", "default_target: env\ntargets: {env: {}}\n")
    monkeypatch.setenv("ES_DOCTOR_CONFIG", str(env_file))
    assert load_config().target_name == "env"
    explicit = write(tmp_path / "explicit.yaml", "default_target: explicit\ntargets: {explicit: {}}\n")
    assert load_config(str(explicit)).target_name == "explicit"


def test_named_target_and_unknown_target(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "targets:\n  staging:\n    service:\n      api_url: http://staging:8080\n")
    assert load_config(str(path), "staging").target.service.api_url == "http://staging:8080"
    with pytest.raises(ConfigError, match="unknown target 'prod'"):
        load_config(str(path), "prod")


def test_env_overrides_every_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ES_DOCTOR_SERVICE__API_URL", "http://10.0.0.5:8080")
    monkeypatch.setenv("ES_DOCTOR_THRESHOLDS__LATENCY_P95_WARN_MS", "150")
    monkeypatch.setenv("ES_DOCTOR_DOCKER__VOLUMES", "[a, b]")
    monkeypatch.setenv("ES_DOCTOR_QDRANT__ENABLED", "false")
    t = load_config().target
    assert t.service.api_url == "http://10.0.0.5:8080"
    assert t.thresholds.latency_p95_warn_ms == 150
    assert t.docker.volumes == ["a", "b"]
    assert t.is_present("qdrant")[0] is False


def test_env_override_with_unknown_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ES_DOCTOR_SERVICE__API_ULR", "x")
    with pytest.raises(ConfigError, match=r"\$ES_DOCTOR_SERVICE__API_ULR.*service.api_ulr.*unknown key"):
        load_config()


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("targets:\n  prod:\n    service:\n      api_ulr: x\n", 4, "targets.prod.service.api_ulr"),
        ("targets:\n  prod:\n    thresholds:\n      memory_warn_pct: lots\n", 4,
         "targets.prod.thresholds.memory_warn_pct"),
        ("default_target: a\nbogus: 1\n", 2, "bogus"),
        ("targets:\n  prod:\n    qdrant:\n      url: ftp://x\n", 4, "targets.prod.qdrant.url"),
    ],
)
def test_bad_file_names_file_line_and_key(tmp_path: Path, text: str, line: int, key: str) -> None:
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.exit_status is ExitStatus.CONFIG
    assert info.value.line == line
    assert info.value.key == key
    assert f"{path}:{line}" in str(info.value)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", "targets:\n  prod:\n    service: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.line is not None and info.value.line >= 3


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "dup.yaml", "default_target: a\ndefault_target: b\n")
    with pytest.raises(ConfigError, match="duplicate key 'default_target'"):
        load_config(str(path))


def test_example_config_is_valid() -> None:
    Config.model_validate(yaml.safe_load(EXAMPLE))


def test_secrets_resolve_from_env_and_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPW", "hunter2-secret")
    assert resolve_secret("env:PGPW") == "hunter2-secret"
    assert resolve_secret("env:MISSING_VAR_X") is None
    assert mask_secret("env:PGPW") == "env:PGPW"
    assert mask_secret("literal-key-123") == "********"
    assert "pw123456" not in (mask_secret("postgresql://u:pw123456@h:5432/db") or "")
    hook = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
    assert "XXXXSECRET" not in (mask_secret(hook) or "")


def test_masked_dump_and_scrub_hide_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ES_DOCTOR_SERVICE__API_KEY", "api-key-planted")
    monkeypatch.setenv("ES_DOCTOR_POSTGRES__DSN", "postgresql://u:dsn-pass-planted@h/db")
    target = load_config().target
    dumped = str(masked_dump(target))
    assert "api-key-planted" not in dumped and "dsn-pass-planted" not in dumped
    secrets = secret_values(target)
    assert "api-key-planted" in secrets and "dsn-pass-planted" in secrets
    assert scrub("error: api-key-planted rejected", secrets) == "error: ******** rejected"


def test_parse_size() -> None:
    assert parse_size("2G") == 2 * 1024**3
    assert parse_size("512m") == 512 * 1024**2
    assert parse_size("1024") == 1024
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")
