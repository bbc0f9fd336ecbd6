"""``config.set`` changes one key's bytes and nothing else; ``config.restore`` puts the exact bytes
back; a symlinked config is written through to its target and the link stays (#24 items 6, 20)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from es_doctor.config import Target
from es_doctor.runbooks.actions import REGISTRY, ActionContext, ActionError
from es_doctor.yamledit import scalar_text, set_scalar


def config_set(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    return REGISTRY["config.set"].call(inputs, ctx)


def config_restore(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    return REGISTRY["config.restore"].call(inputs, ctx)

DSN = "postgres://email_sender:pw@db.internal.example.com:5432/email_sender?sslmode=require&application_name=email-sender-go"
ORIGINAL = (
    "# service config\n"
    f"dsn: {DSN}\n"
    "server:   {port: 8080,   workers: 4}   # flow style, odd spacing\n"
    "connection_pool:\n"
    "    max_connections:   10     # guide: 10-20\n"
    "    idle_timeout: '30s'\n"
    "    note: \"a \\\"quoted\\\" one\"\n"
    "\n"
    "metrics:\n"
    "  enabled: false\n"
)


def ctx_for(tmp_path: Path) -> ActionContext:
    work = tmp_path / "state" / "runs" / "r1"
    work.mkdir(parents=True)
    return ActionContext(Target(), "t", work)


@pytest.mark.parametrize(("key", "value", "old_text", "new_text"), [
    ("connection_pool.max_connections", 20, "max_connections:   10", "max_connections:   20"),
    ("connection_pool.idle_timeout", "5m", "idle_timeout: '30s'", "idle_timeout: '5m'"),
    ("metrics.enabled", True, "enabled: false", "enabled: true"),
    ("server.workers", 8, "workers: 4}", "workers: 8}"),
    ("connection_pool.note", "it's", 'note: "a \\"quoted\\" one"', 'note: "it\'s"'),
])
def test_set_changes_only_the_value_and_restore_gives_the_bytes_back(tmp_path: Path, key: str, value: object,
                                                                     old_text: str, new_text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(ORIGINAL.encode())
    ctx = ctx_for(tmp_path)
    out = config_set({"file": str(path), "key": key, "value": value}, ctx)
    assert out["changed"]
    assert path.read_bytes() == ORIGINAL.replace(old_text, new_text).encode()  # the long dsn: line untouched
    assert Path(out["backup"]).read_bytes() == ORIGINAL.encode()
    config_restore({"file": str(path), "from": out["backup"]}, ctx)
    assert path.read_bytes() == ORIGINAL.encode()


def test_a_new_key_does_not_rewrap_long_lines(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(ORIGINAL.encode())
    out = config_set({"file": str(path), "key": "event_bus.buffer_size", "value": 2048}, ctx_for(tmp_path))
    text = path.read_text(encoding="utf-8")
    assert out["changed"] and f"dsn: {DSN}\n" in text and "buffer_size: 2048" in text


def test_unchanged_value_still_keeps_a_copy(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(ORIGINAL.encode())
    out = config_set({"file": str(path), "key": "metrics.enabled", "value": False}, ctx_for(tmp_path))
    assert out["changed"] is False and Path(out["backup"]).read_bytes() == ORIGINAL.encode()


def test_a_symlinked_config_is_written_through(tmp_path: Path) -> None:
    real_dir = tmp_path / "etc"
    real_dir.mkdir()
    real = real_dir / "config.yaml"
    real.write_bytes(ORIGINAL.encode())
    link = tmp_path / "config.yaml"
    link.symlink_to(real)
    ctx = ctx_for(tmp_path)
    out = config_set({"file": str(link), "key": "metrics.enabled", "value": True}, ctx)
    assert link.is_symlink() and link.resolve() == real  # the link is kept
    assert real.read_text(encoding="utf-8").endswith("enabled: true\n")  # the real file changed
    assert out["written"] == str(real)
    config_restore({"file": str(link), "from": out["backup"]}, ctx)
    assert link.is_symlink() and real.read_bytes() == ORIGINAL.encode()


def test_a_link_to_something_not_a_file_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "config.yaml"
    link.symlink_to("/dev/null")
    with pytest.raises(ActionError, match="not a regular file"):
        config_set({"file": str(link), "key": "a", "value": 1}, ctx_for(tmp_path))
    assert link.is_symlink()


def test_scalar_text_quotes_what_would_not_read_back() -> None:
    assert scalar_text("5m", None) == "5m"
    assert scalar_text("yes", None) == '"yes"'  # plain would read as a boolean in YAML 1.1 readers
    assert scalar_text("a: b", None) == '"a: b"'
    assert scalar_text("x'y", "'") == "'x''y'"
    assert set_scalar("a: [1, 2]\n", ["a"], 3) is None  # not a scalar: the caller falls back
