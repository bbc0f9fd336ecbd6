"""The runbook format: loader errors (file, line, key), the property test, the schema, the shipped
set, the templating sandbox, and secrets kept out of the audit log and the output."""

from __future__ import annotations

import json
import subprocess
import sys
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
    result = subprocess.run([sys.executable, "-m", "es_doctor", "runbooks", "validate", str(bad)],
                            capture_output=True, text=True, check=False)
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


# --------------------------------------------------------------------------- the engine proves, or says why not

def _engine(tmp_path: Path, target: Target, said: list[str] | None = None) -> Engine:
    return Engine(target, "unit", AuditLog(tmp_path / "audit.jsonl", []), tmp_path / "state",
                  confirm=lambda _q: True, say=(said.append if said is not None else lambda _t: None))


@pytest.mark.parametrize(("verify", "cures"), [(["startup.helth"], ["startup.health"]),
                                               (["startup.helth"], []), ([], ["startup.helth"])])
def test_a_runbook_naming_no_real_check_is_refused_before_anything_runs(tmp_path: Path, verify: list[str],
                                                                        cures: list[str]) -> None:
    """Built without the loader (which refuses it too): the engine verified nothing and said FIXED."""
    from es_doctor.runbooks.model import Runbook
    from es_doctor.runbooks.plan import UnverifiableRunbookError

    marker = tmp_path / "ran"
    rb = Runbook.model_validate({"id": "unverifiable", "title": "t", "class": "startup", "verify": verify,
                                 "cures": cures, "steps": [{"name": "touch", "action": "shell",
                                                            "inputs": {"argv": ["touch", str(marker)]}}]})
    target = Target.model_validate({"absent": {"docker": "unit test"}})
    with pytest.raises(UnverifiableRunbookError, match=r"startup\.helth") as info:
        _engine(tmp_path, target).run(plan(rb, target, "unit"), yes=True)
    assert info.value.exit_status == 65 and not marker.exists()


def test_a_curing_runbook_whose_checks_did_not_run_is_not_fixed(tmp_path: Path) -> None:
    """A plan whose verification list is empty (built by hand) cannot end FIXED for a runbook that cures."""
    rb = load_runbook_file(write(tmp_path, "id: c\ntitle: c\nclass: startup\ncures: [startup.health]\n"
                                           "steps:\n  - name: n\n    action: notify\n    inputs: {message: hi}\n"))
    target = Target.model_validate({"absent": {"docker": "unit test"}})
    the_plan = plan(rb, target, "unit")
    assert the_plan.verify == ["startup.health"], "cures: stands for verify: when there is none"
    the_plan.verify = []
    result = _engine(tmp_path, target).run(the_plan, yes=True)
    assert result.outcome is RunOutcome.NOT_FIXED


ROLLBACK_WHEN = """\
id: rollback-when
title: rollback steps with conditions
class: deploy
params:
  undo_extra: {type: bool, default: false}
steps:
  - name: breaks
    action: fail
rollback:
  - name: extra
    action: notify
    inputs: {message: extra}
    when: params.undo_extra
  - name: needs-output
    action: notify
    inputs: {message: undo}
    when: "steps.breaks.value > 1"
  - name: always
    action: notify
    inputs: {message: always}
"""


def test_rollback_steps_skipped_or_unevaluable_are_recorded(tmp_path: Path) -> None:
    """Before: both were skipped without a word or an audit record, and the run said ROLLED BACK."""
    rb = load_runbook_file(write(tmp_path, ROLLBACK_WHEN))
    target = Target.model_validate({"absent": {"docker": "unit test"}})
    said: list[str] = []
    result = _engine(tmp_path, target, said).run(plan(rb, target, "unit"), yes=True)
    by_name = {s.name: s for s in result.steps if s.phase == "rollback"}
    assert by_name["extra"].status == "skipped" and "condition is false" in by_name["extra"].error
    assert by_name["needs-output"].status == "failed" and "condition error" in by_name["needs-output"].error
    assert by_name["always"].status == "ok", "one failed condition does not stop the other rollback steps"
    assert result.outcome is RunOutcome.FAILED and "needs-output" in result.message
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    rollback = {r["step"]: r for r in records if r["event"] == "fix.step" and r.get("phase") == "rollback"}
    assert rollback["extra"]["status"] == "skipped" and "params.undo_extra" in rollback["extra"]["reason"]
    assert rollback["needs-output"]["status"] == "failed" and "condition error" in rollback["needs-output"]["error"]
    assert any("extra" in line and "skipped" in line for line in said)


PLANNED = """\
id: planned
title: what the plan shows
class: deploy
flags: {needs_maintenance: true}
params:
  purge: {type: bool, default: false}
preconditions:
  - name: service-mode
    action: service.mode
steps:
  - name: count
    action: postgres.sql
    inputs: {sql: "SELECT count(*) FROM emails WHERE %(filler)s"}
  - name: purge
    action: postgres.sql
    inputs: {sql: "DELETE FROM emails"}
    when: params.purge
  - name: report
    action: notify
    inputs: {message: "{{ steps.count.row_count }}"}
    when: "steps.count.row_count > 0"
"""


def test_the_plan_lists_preconditions_decides_parameter_conditions_and_shows_sql_whole(tmp_path: Path) -> None:
    from es_doctor.cli.fix_cmd import print_plan

    long_where = " AND ".join(f"column_{i} IS NOT NULL" for i in range(20))
    rb = load_runbook_file(write(tmp_path, PLANNED.replace("%(filler)s", long_where)))
    target = Target.model_validate({"absent": {"docker": "unit test"}})
    the_plan = plan(rb, target, "unit")
    assert [p.step.name for p in the_plan.preconditions] == ["writes-stopped", "service-mode"]
    assert [p.runs for p in the_plan.steps] == [None, False, None]
    lines: list[str] = []
    print_plan(the_plan, lines.append)
    text = "\n".join(lines)
    assert "before any change, check:" in text and "writes-stopped" in text and "service-mode" in text
    assert "when params.purge (false: skipped)" in text
    assert "decided by earlier steps" in text
    assert f"SELECT count(*) FROM emails WHERE {long_where}" in text, "the SQL is shown whole"
    assert "then verify" not in text
    on = plan(rb, target, "unit", {"purge": "true"})
    assert on.steps[1].runs is True
