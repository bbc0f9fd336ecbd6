"""The runbook format: loader errors (file, line, key), the property test, the schema, the shipped
set, the templating sandbox, and secrets kept out of the audit log and the output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from es_doctor.checks.registry import load_all
from es_doctor.config import Target
from es_doctor.runbooks.audit import AuditLog
from es_doctor.runbooks.engine import Engine, RunOutcome, plan
from es_doctor.runbooks.loader import RunbookError, load_runbook_file, load_runbooks, shipped_dir
from es_doctor.runbooks.schema import render_schema
from es_doctor.runbooks.templating import TemplateError, render
from support import run_cli

VALID = """\
id: sample
title: A sample runbook
class: vectors
params:
  size: {type: int, default: 1536}
steps:
  - name: first
    action: notify
    inputs: {message: "size {{ params.size }}"}
  - name: second
    action: notify
    inputs: {message: "{{ steps.first.message }}"}
verify: [vectors.collection]
"""


def write(tmp_path: Path, text: str, name: str = "rb.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_valid_runbook_loads(tmp_path: Path) -> None:
    rb = load_runbook_file(write(tmp_path, VALID))
    assert rb.id == "sample" and rb.check_class == "vectors"
    assert [s.name for s in rb.steps] == ["first", "second"]
    assert rb.params["size"].default == 1536


@pytest.mark.parametrize(("text", "line", "key", "words"), [
    (VALID.replace("class: vectors", "class: [vectors"), 4, "", "bad YAML"),
    (VALID.replace("action: notify\n    inputs: {message: \"size",
                   "action: docker.explode\n    inputs: {message: \"size"),
     8, "steps[0].action", "unknown action 'docker.explode'"),
    (VALID.replace("    action: notify\n    inputs: {message: \"{{ steps",
                   "    action: notify\n    retries: three\n    inputs: {message: \"{{ steps"),
     12, "steps[1].retries", "integer"),
    ("id: sample\ntitle: t\nclass: vectors\n", 1, "steps", "required field missing"),
    (VALID.replace("{{ params.size }}", "{{ params.sise }}"), 9, "steps[0].inputs.message",
     "undefined parameter params.sise"),
    (VALID.replace("{{ params.size }}", "{{ secrets.key }}"), 9, "steps[0].inputs.message", "undefined name 'secrets'"),
    (VALID.replace("    action: notify\n    inputs: {message: \"size", "    action: notify\n    when: nope.x\n"
                   "    inputs: {message: \"size"), 9, "steps[0].when", "undefined name 'nope'"),
    (VALID.replace("{{ steps.first.message }}", "{{ steps.second.message }}"), 12, "steps[1].inputs.message",
     "not an earlier step"),
    (VALID.replace("  - name: second", "  - name: first"), 10, "steps[1].name", "used twice"),
    (VALID.replace("verify:", "on_failure_typo: 1\nverify:"), 13, "on_failure_typo", "Extra inputs"),
])
def test_malformed_runbooks_name_file_line_and_key(tmp_path: Path, text: str, line: int, key: str,
                                                   words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RunbookError) as caught:
        load_runbook_file(path)
    err = caught.value
    assert err.path == str(path)
    assert err.line == line, err.message
    assert err.key == key, err.message
    assert words in err.message
    assert err.message.startswith(f"{path}:{line}")


def test_an_id_used_twice_names_both_files(tmp_path: Path) -> None:
    write(tmp_path, VALID, "a.yaml")
    write(tmp_path, VALID, "b.yaml")
    with pytest.raises(RunbookError) as caught:
        load_runbooks([tmp_path], shipped=False)
    assert "b.yaml:1" in caught.value.message and "a.yaml" in caught.value.message


def test_a_users_runbook_overrides_the_shipped_one(tmp_path: Path) -> None:
    write(tmp_path, VALID.replace("id: sample", "id: event-bus-purge"))
    rbs = load_runbooks([tmp_path])
    assert rbs.runbooks["event-bus-purge"].title == "A sample runbook"
    assert rbs.overrides["event-bus-purge"][1] == tmp_path / "rb.yaml"
    assert rbs.overrides["event-bus-purge"][0].parent == shipped_dir()


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.text(max_size=10), children, max_size=5), max_leaves=25)
KEYS = st.sampled_from(["id", "title", "class", "steps", "params", "verify", "rollback", "flags", "cures",
                        "name", "action", "inputs", "when", "on_failure", "timeout"])
DOCS = st.one_of(
    st.text(max_size=200),
    st.dictionaries(KEYS, JSON, max_size=8).map(yaml.safe_dump),
    JSON.map(yaml.safe_dump),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(DOCS)
def test_the_loader_only_accepts_or_raises_its_own_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "random.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_runbook_file(path)
    except RunbookError as exc:
        assert exc.message.startswith(str(path))


def test_schema_json_is_up_to_date() -> None:
    shipped = (shipped_dir() / "schema.json").read_text(encoding="utf-8")
    assert shipped == render_schema(), "regenerate: python -m es_doctor.runbooks.schema"
    assert json.loads(shipped)["properties"]["steps"]["minItems"] == 1
    assert (Path(__file__).parents[2] / "runbooks" / "schema.json").is_file(), "runbooks/ points at the shipped set"


def test_every_shipped_runbook_validates_and_every_check_has_its_runbook() -> None:
    rbs = load_runbooks()
    named = {spec.runbook for spec in load_all().values() if spec.runbook}
    assert named <= set(rbs.runbooks), f"checks name missing runbooks: {sorted(named - set(rbs.runbooks))}"
    for rb in rbs.runbooks.values():
        unknown = [c for c in [*rb.verify, *rb.cures] if c not in load_all()]
        assert unknown == [], f"{rb.id} names unknown checks {unknown}"


def test_cli_validate_exits_65_naming_file_and_line(tmp_path: Path) -> None:
    bad = write(tmp_path, VALID.replace("action: notify", "action: nope", 1))
    result = run_cli("runbooks", "validate", str(bad), home=tmp_path)
    assert result.returncode == 65
    assert f"{bad}:8: steps[0].action: unknown action 'nope'" in result.stderr


def test_templates_are_sandboxed_and_strict() -> None:
    ctx: dict[str, Any] = {"params": {"n": 3}, "target": {}, "steps": {}, "finding": {}}
    assert render("{{ params.n }}", ctx) == 3  # a single expression keeps its type
    assert render("n={{ params.n }}", ctx) == "n=3"
    with pytest.raises(TemplateError):
        render("{{ params.missing }}", ctx)
    with pytest.raises(TemplateError):
        render("{{ params.__class__.__mro__ }}", ctx)


SECRET_RB = """\
id: leaky
title: tries to leak secrets
class: monitoring
steps:
  - name: say
    action: notify
    inputs: {message: "key={{ target.qdrant.api_key }} dsn={{ target.postgres.dsn }}"}
  - name: call
    action: http
    inputs: {url: "http://user:{{ target.qdrant.api_key }}@127.0.0.1:9/x", timeout: 1}
    on_failure: continue
"""


def test_secrets_never_reach_the_audit_log_or_the_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key, pw = "sk-planted-0123456789abcdef", "planted-pg-password-42"
    monkeypatch.setenv("PLANTED_QDRANT_KEY", key)
    target = Target.model_validate({
        "qdrant": {"api_key": "env:PLANTED_QDRANT_KEY"},
        "postgres": {"dsn": f"postgresql://emailsender:{pw}@127.0.0.1:5/email_sender"},
        "absent": {"docker": "unit test"},
    })
    rb = load_runbook_file(write(tmp_path, SECRET_RB))
    said: list[str] = []
    audit = AuditLog(tmp_path / "audit.jsonl", [])
    engine = Engine(target, "unit", audit, tmp_path / "state", confirm=lambda _q: True, say=said.append)
    result = engine.run(plan(rb, target, "unit"), yes=True)
    assert result.outcome is RunOutcome.DONE, "it cures no finding: a procedure"
    log = (tmp_path / "audit.jsonl").read_text()
    assert "fix.step" in log
    for secret in (key, pw):
        assert secret not in log
        assert all(secret not in line for line in said)


@pytest.mark.parametrize(("rollback", "outcome", "message"), [
    ("", RunOutcome.FAILED, "step breaks failed"),
    ("rollback:\n  - name: undo\n    action: notify\n    inputs: {message: undone}\n",
     RunOutcome.ROLLED_BACK, "step breaks failed"),
    ("rollback:\n  - name: undo\n    action: fail\n    inputs: {message: cannot undo}\n",
     RunOutcome.FAILED, "the rollback is incomplete (undo failed)"),
])
def test_the_outcome_says_whether_the_rollback_happened(tmp_path: Path, rollback: str, outcome: RunOutcome,
                                                        message: str) -> None:
    text = ("id: breaks\ntitle: breaks\nclass: deploy\nsteps:\n  - name: breaks\n    action: fail\n" + rollback)
    rb = load_runbook_file(write(tmp_path, text))
    target = Target.model_validate({"absent": {"docker": "unit test"}})
    engine = Engine(target, "unit", AuditLog(tmp_path / "audit.jsonl", []), tmp_path / "state",
                    confirm=lambda _q: True, say=lambda _t: None)
    result = engine.run(plan(rb, target, "unit"), yes=True)
    assert result.outcome is outcome
    assert message in result.message
