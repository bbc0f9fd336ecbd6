"""The runbook format: each malformed runbook is one RunbookError naming file, line and key; the
loader never executes anything; random documents only load or raise RunbookError; the shipped set
and runbooks/schema.json are current; user overrides; the templating sandbox; `runbooks validate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from es_doctor.cli.runbooks_cmd import runbooks_app
from es_doctor.errors import ExitStatus
from es_doctor.runbooks.actions import ACTION_NAMES
from es_doctor.runbooks.loader import RunbookError, load_runbook_file, load_runbooks, shipped_dir
from es_doctor.runbooks.model import Runbook
from es_doctor.runbooks.schema import render_schema, runbook_schema
from es_doctor.runbooks.templating import (
    TemplateError,
    evaluate_condition,
    referenced_names,
    render,
)

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
id: good-one
title: A good runbook
class: startup
cures: [startup.port-owner]
params:
  purge: {type: bool, default: false}
  port: {type: int, default: 8080}
steps:
  - name: free
    action: process.free-port
    inputs: {port: "{{ params.port }}"}
  - name: restart
    action: docker.restart
    inputs: {container: "{{ target.service.container }}"}
    when: "{{ not params.purge }}"
    on_failure: step:free
  - name: wait
    action: wait_for
    inputs: {check: startup.health, note: "after {{ steps.free.port }}"}
    retries: 2
verify: [startup.health]
rollback:
  - name: undo
    action: docker.start
    inputs: {container: "{{ target.service.container }}"}
    when: steps.restart
flags: {destructive: true}
"""


def lines(text: str) -> list[str]:
    return text.splitlines()


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line number of the nth line containing ``needle``."""
    hits = [i for i, line in enumerate(lines(text), 1) if needle in line]
    return hits[nth - 1]


def write(directory: Path, text: str, name: str = "rb.yaml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_valid_runbook_loads_with_its_defaults(tmp_path: Path) -> None:
    rb = load_runbook_file(write(tmp_path, GOOD))
    assert isinstance(rb, Runbook)
    assert rb.id == "good-one" and rb.check_class == "startup" and rb.flags.destructive
    assert [s.name for s in rb.steps] == ["free", "restart", "wait"]
    assert rb.params["port"].type == "int" and rb.params["port"].default == 8080
    free, restart, wait = rb.steps
    assert (free.timeout, free.retries, free.delay, free.on_failure) == (60.0, 0, 1.0, "rollback")
    assert restart.on_failure == "step:free" and wait.retries == 2
    assert rb.rollback[0].when == "steps.restart"
    assert rb.verify == ["startup.health"]


def _case(text: str, needle: str, nth: int = 1) -> tuple[str, int]:
    return text, line_of(text, needle, nth)


CASES: dict[str, tuple[str, int, str, str]] = {
    # name: (document, line, key, words in the message)
    "bad YAML": (*_case(GOOD.replace("cures: [startup.port-owner]", "cures: [startup.port-owner"), "params:"),
                 "", "bad YAML"),
    "unknown action": (*_case(GOOD.replace("action: docker.restart", "action: docker.explode"), "docker.explode"),
                       "steps[1].action", "unknown action 'docker.explode' (known: "),
    "wrong type": (*_case(GOOD.replace("retries: 2", 'retries: "three"'), "retries:"),
                   "steps[2].retries", "integer"),
    "strict: no coercion of a numeric string": (*_case(GOOD.replace("retries: 2", 'retries: "2"'), "retries:"),
                                                "steps[2].retries", "integer"),
    "missing field": ("id: x\ntitle: t\nclass: startup\nverify: [startup.health]\n", 1, "steps",
                      "required field missing"),
    "unknown key": (*_case(GOOD.replace("    retries: 2", "    retires: 2"), "retires"),
                    "steps[2].retires", "unknown key"),
    "unknown class": (*_case(GOOD.replace("class: startup", "class: plumbing"), "class:"),
                      "class", "unknown class 'plumbing'"),
    "bad id": (*_case(GOOD.replace("id: good-one", "id: Good One"), "id:"), "id", "pattern"),
    "undefined root in inputs": (*_case(GOOD.replace("{{ target.service.container }}", "{{ env.HOME }}", 1),
                                        "env.HOME"),
                                 "steps[1].inputs.container", "undefined name 'env'"),
    "undeclared param in inputs": (*_case(GOOD.replace("{{ params.port }}", "{{ params.prot }}"), "params.prot"),
                                   "steps[0].inputs.port", "undefined parameter params.prot"),
    "undefined name in when": (*_case(GOOD.replace("{{ not params.purge }}", "{{ not purge }}"), "not purge"),
                               "steps[1].when", "undefined name 'purge'"),
    "undeclared param in a bare when": (*_case(GOOD.replace("when: steps.restart", "when: params.nothing"),
                                               "params.nothing"),
                                        "rollback[0].when", "undefined parameter params.nothing"),
    "a later step's output": (*_case(GOOD.replace("{{ steps.free.port }}", "{{ steps.undo.port }}"), "steps.undo"),
                              "steps[2].inputs.note", "steps.undo is not an earlier step"),
    "template syntax": (*_case(GOOD.replace("{{ params.port }}", "{{ params.port + }}"), "params.port +"),
                        "steps[0].inputs.port", "template"),
    "bad on_failure step target": (*_case(GOOD.replace("on_failure: step:free", "on_failure: step:nowhere"),
                                          "step:nowhere"),
                                   "steps[1].on_failure", "names no step 'nowhere'"),
    "bad on_failure word": (*_case(GOOD.replace("on_failure: step:free", "on_failure: explode"), "explode"),
                            "steps[1].on_failure", "pattern"),
    "duplicate step name": (*_case(GOOD.replace("- name: wait", "- name: free"), "name: free", 2),
                            "steps[2].name", "step name 'free' is used twice"),
    "step name reused by rollback": (*_case(GOOD.replace("- name: undo", "- name: restart"), "name: restart", 2),
                                     "rollback[0].name", "used twice"),
    "param default of the wrong type": (*_case(GOOD.replace("default: 8080", 'default: "80"'), 'default: "80"'),
                                        "params.port.default", "is not of type int"),
    "no steps": (*_case(GOOD.split("steps:\n", maxsplit=1)[0] + "steps: []\n", "steps: []"), "steps", "at least 1"),
    "not a mapping": ("- just\n- a list\n", 1, "(document)", "YAML mapping"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_malformed_runbook_is_one_error_naming_file_line_and_key(tmp_path: Path, case: str) -> None:
    text, line, key, words = CASES[case]
    path = write(tmp_path, text)
    with pytest.raises(RunbookError) as caught:
        load_runbook_file(path)
    err = caught.value
    assert err.exit_status == ExitStatus.DATA
    assert (err.path, err.line, err.key) == (str(path), line, key), err.message
    assert err.message.startswith(f"{path}:{line}: "), err.message
    assert words in err.message


def test_duplicate_yaml_keys_are_bad_yaml_on_the_second_key(tmp_path: Path) -> None:
    text = GOOD.replace("title: A good runbook", "title: A good runbook\ntitle: again")
    with pytest.raises(RunbookError) as caught:
        load_runbook_file(write(tmp_path, text))
    assert caught.value.line == line_of(text, "title: again")
    assert "duplicate key 'title'" in caught.value.message


def test_an_id_used_twice_in_one_directory_names_both_files(tmp_path: Path) -> None:
    first = write(tmp_path, GOOD, "a.yaml")
    second = write(tmp_path, "# the same id again\n" + GOOD, "b.yaml")
    with pytest.raises(RunbookError) as caught:
        load_runbooks([tmp_path], shipped=False)
    err = caught.value
    assert (err.path, err.line, err.key) == (str(second), 2, "id")
    assert str(first) in err.message and "also defined" in err.message


def test_an_id_used_twice_across_the_users_directories_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    write(tmp_path / "one", GOOD)
    write(tmp_path / "two", GOOD)
    with pytest.raises(RunbookError, match=r"also defined in .*one/rb\.yaml"):
        load_runbooks([tmp_path / "one", tmp_path / "two"], shipped=False)


def test_a_users_runbook_overrides_the_shipped_one_and_the_set_says_so(tmp_path: Path) -> None:
    user = write(tmp_path, GOOD.replace("id: good-one", "id: port-in-use").replace("A good runbook", "Mine"))
    rbs = load_runbooks([tmp_path])
    assert rbs.runbooks["port-in-use"].title == "Mine"
    assert rbs.sources["port-in-use"] == user
    assert rbs.overrides == {"port-in-use": (shipped_dir() / "port-in-use.yaml", user)}
    assert not rbs.is_shipped("port-in-use") and rbs.is_shipped("dependency-restart")


def test_a_missing_user_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(RunbookError, match="not a directory") as caught:
        load_runbooks([tmp_path / "nope"])
    assert caught.value.key == "runbook_dirs"


def test_loading_executes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import es_doctor.runbooks.templating as templating

    def forbidden(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("the loader rendered or evaluated a template")

    monkeypatch.setattr(templating, "render", forbidden)
    monkeypatch.setattr(templating, "evaluate_condition", forbidden)
    monkeypatch.setattr(templating, "_evaluate", forbidden)
    text = GOOD.replace("action: wait_for", "action: shell").replace(
        "inputs: {check: startup.health, note: \"after {{ steps.free.port }}\"}",
        f"inputs: {{argv: [touch, \"{tmp_path / 'ran'}\"]}}")
    rb = load_runbook_file(write(tmp_path, text))
    assert rb.steps[2].action == "shell"
    assert not (tmp_path / "ran").exists()


# --------------------------------------------------------------------------- property test

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON = st.recursive(SCALARS, lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.text(max_size=10), children, max_size=5), max_leaves=25)
TEMPLATE_TEXT = st.sampled_from(["{{", "}}", "{%", "params.", "steps.", "target.", "env.", "x", " ", "|", "(",
                                 ")", "[", "]", "'", ".", "__class__", "1", "not ", "-"])
TEMPLATES = st.lists(TEMPLATE_TEXT, max_size=12).map("".join)
STEP = st.fixed_dictionaries(
    {"name": st.sampled_from(["a", "b", "c"]), "action": st.sampled_from([*sorted(ACTION_NAMES)[:5], "bogus"])},
    optional={"inputs": st.dictionaries(st.sampled_from(["x", "y"]), TEMPLATES | JSON, max_size=2),
              "when": TEMPLATES, "on_failure": st.sampled_from(["abort", "continue", "rollback", "step:a", "step:z"]),
              "retries": JSON, "timeout": JSON})
RUNBOOKISH = st.fixed_dictionaries(
    {"id": st.sampled_from(["r", "R!"]), "title": st.text(max_size=5), "class": st.sampled_from(["startup", "x"]),
     "steps": st.lists(STEP, max_size=3)},
    optional={"params": st.dictionaries(st.sampled_from(["p", "q"]),
                                        st.fixed_dictionaries({}, optional={"type": st.sampled_from(["int", "str"]),
                                                                            "default": SCALARS}), max_size=2),
              "rollback": st.lists(STEP, max_size=2), "verify": JSON, "flags": JSON, "extra": JSON})
KEYS = st.sampled_from(["id", "title", "class", "steps", "params", "verify", "rollback", "flags", "cures",
                        "preconditions", "description"])
DOCS = st.one_of(
    st.text(max_size=300),
    JSON.map(yaml.safe_dump),
    st.dictionaries(KEYS, JSON, max_size=8).map(yaml.safe_dump),
    RUNBOOKISH.map(lambda d: yaml.safe_dump(d, sort_keys=False)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(DOCS)
def test_random_documents_only_load_or_raise_runbook_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text, "random.yaml")
    try:
        rb = load_runbook_file(path)
    except RunbookError as exc:
        assert exc.message.startswith(str(path))
        assert exc.line is None or 1 <= exc.line <= max(1, len(lines(text)) + 1)
    else:
        assert rb.steps and all(s.action in ACTION_NAMES for s in rb.steps)


# --------------------------------------------------------------------------- shipped set and schema

def test_schema_json_is_up_to_date_with_the_models() -> None:
    shipped = (shipped_dir() / "schema.json").read_text(encoding="utf-8")
    assert json.loads(shipped) == runbook_schema(), "regenerate: python -m es_doctor.runbooks.schema"
    assert shipped == render_schema()
    via_repo = REPO / "runbooks" / "schema.json"
    assert (REPO / "runbooks").is_symlink() and via_repo.read_text(encoding="utf-8") == shipped
    schema = json.loads(shipped)
    assert schema["$id"] and schema["$schema"].startswith("https://json-schema.org/")
    assert "class" in schema["properties"] and "check_class" not in schema["properties"]
    assert schema["additionalProperties"] is False and schema["properties"]["steps"]["minItems"] == 1
    assert "docker.restart" in schema["$defs"]["Step"]["properties"]["action"]["enum"]


def test_every_shipped_runbook_validates() -> None:
    files = sorted([*shipped_dir().glob("*.yaml"), *(shipped_dir() / "emergency").glob("*.yaml")])
    assert len(files) >= 2
    ids = {load_runbook_file(f).id for f in files}
    assert {"port-in-use", "dependency-restart"} <= ids
    assert set(load_runbooks().runbooks) == ids


def test_the_example_runbooks_resolve_against_the_default_target() -> None:
    from es_doctor.config import Target

    rbs = load_runbooks()
    ctx: dict[str, Any] = {"params": {"component": "postgres"}, "target": Target().model_dump(mode="json"),
                           "steps": {}, "finding": {}}
    port_step = rbs.runbooks["port-in-use"].steps[0]
    assert port_step.action == "process.free-port"
    assert render(port_step.inputs, ctx) == {"port": 8080}
    restart = rbs.runbooks["dependency-restart"].steps[0]
    assert render(restart.inputs, ctx)["container"] == Target().postgres.container


# --------------------------------------------------------------------------- templating

CTX: dict[str, Any] = {"params": {"n": 3, "purge": False, "name": "x"}, "target": {"service": {"port": 8080}},
                       "steps": {"first": {"out": [1, 2]}}, "finding": {}}


def test_render_keeps_native_types_of_a_single_expression_and_recurses() -> None:
    assert render("{{ params.n }}", CTX) == 3
    assert render(" {{ steps.first.out }} ", CTX) == [1, 2]
    assert render({"a": ["n={{ params.n }}", {"b": "{{ params.purge }}"}], "c": 5}, CTX) == {
        "a": ["n=3", {"b": False}], "c": 5}
    assert render("{{ params.n }}-{{ params.name }}", CTX) == "3-x"
    assert render("http://h:9/x | {{ 'http://h:9/x' | port }}", CTX) == "http://h:9/x | 9"


@pytest.mark.parametrize(("template", "name"), [
    ("{{ params.missing }}", "missing"), ("{{ nothing }}", "nothing"), ("x {{ env.HOME }}", "env"),
    ("{{ range(3) }}", "range"), ("{{ steps.later.out }}", "later"),
])
def test_an_undefined_name_is_a_template_error_naming_it(template: str, name: str) -> None:
    with pytest.raises(TemplateError, match=name) as caught:
        render(template, {**CTX, "env": {"HOME": "/root"}})
    assert caught.value.exit_status == ExitStatus.DATA


def test_the_sandbox_refuses_unsafe_attributes() -> None:
    with pytest.raises(TemplateError):
        render("{{ params.__class__.__mro__ }}", CTX)
    with pytest.raises(TemplateError):
        render("{{ ''.__class__.__subclasses__() }}", CTX)


def test_conditions_are_bare_or_braced_expressions() -> None:
    assert evaluate_condition("params.n > 2", CTX) is True
    assert evaluate_condition("{{ params.purge }}", CTX) is False
    assert evaluate_condition("{{ not params.purge and steps.first }}", CTX) is True
    with pytest.raises(TemplateError, match="nope"):
        evaluate_condition("params.nope", CTX)


def test_referenced_names_reports_the_roots_a_template_reads() -> None:
    assert referenced_names("{{ params.a }} and {{ target.x }}") == {"params", "target"}
    assert referenced_names("{{ steps.a.out | join(', ') }}") == {"steps"}
    with pytest.raises(TemplateError, match="statements"):  # templates are expressions, not programs
        referenced_names("{% for i in steps.a.out %}{{ i }}{% endfor %}")
    assert referenced_names("params.a or finding.id", as_expression=True) == {"params", "finding"}
    with pytest.raises(TemplateError):
        referenced_names("{{ params.a ")


# --------------------------------------------------------------------------- CLI

def invoke(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(runbooks_app, args, standalone_mode=False, catch_exceptions=False)
    return int(result.return_value), result.stdout, result.stderr


def test_cli_validate_exits_65_on_a_broken_file_naming_file_and_line(tmp_path: Path) -> None:
    good = write(tmp_path, GOOD, "good.yaml")
    bad = write(tmp_path, GOOD.replace("action: docker.restart", "action: docker.explode"), "bad.yaml")
    code, out, err = invoke(["validate", str(good), str(bad)])
    assert code == ExitStatus.DATA == 65
    assert f"✓ {good} (good-one)" in out
    assert f"{bad}:{line_of(GOOD, 'docker.restart')}: steps[1].action: unknown action 'docker.explode'" in err


def test_cli_validate_reports_an_id_twice_among_the_given_files(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.yaml")
    b = write(tmp_path, GOOD, "b.yaml")
    code, _out, err = invoke(["validate", str(tmp_path)])
    assert code == 65 and f"{b}:1: id: runbook id 'good-one' is also defined in" in err


def test_cli_validate_defaults_to_every_loaded_runbook(tmp_path: Path) -> None:
    code, out, _err = invoke(["validate", "--config", str(_config(tmp_path))])
    assert code == 0
    shipped = [*shipped_dir().glob("*.yaml"), *(shipped_dir() / "emergency").glob("*.yaml")]
    assert out.count("✓ ") == len(shipped) + 1


def _config(tmp_path: Path) -> Path:
    user = tmp_path / "mine"
    user.mkdir()
    write(user, GOOD.replace("id: good-one", "id: port-in-use"))
    cfg = tmp_path / "es-doctor.yaml"
    cfg.write_text(f"runbook_dirs: [{user}]\n", encoding="utf-8")
    return cfg


def test_cli_list_shows_class_flag_title_and_the_override(tmp_path: Path) -> None:
    code, out, _err = invoke(["list", "--config", str(_config(tmp_path))])
    assert code == 0
    row = next(line for line in lines(out) if line.startswith("port-in-use "))
    assert "startup" in row and "destructive" in row and "A good runbook" in row
    assert "(overrides builtin:port-in-use.yaml)]" in row
    dep = next(line for line in lines(out) if line.startswith("dependency-restart "))
    assert dep.endswith("[builtin:dependency-restart.yaml]")
    assert "site-packages" not in out and str(shipped_dir()) not in out
    emergency = [line for line in lines(out) if line.startswith("emergency-")]
    assert len(emergency) == len(list((shipped_dir() / "emergency").glob("*.yaml")))
    for row in emergency:  # classed as the emergency procedures they are, located by a short name
        assert row.split()[1] == "emergency" and "[builtin:emergency/emergency-" in row, row


def test_cli_show_prints_a_summary_and_the_yaml_and_suggests_near_ids(tmp_path: Path) -> None:
    from es_doctor.errors import UsageError

    cfg = str(_config(tmp_path))
    code, out, _err = invoke(["show", "dependency-restart", "--config", cfg])
    assert code == 0
    assert "param component: str = qdrant" in out and "step 1. restart: docker.restart" in out
    assert "id: dependency-restart" in out  # the YAML itself
    assert "  class: startup" in out and "  source: builtin:dependency-restart.yaml" in out
    _code, emergency, _err = invoke(["show", "emergency-backup", "--config", cfg])
    assert "  class: emergency" in emergency and "  source: builtin:emergency/emergency-backup.yaml" in emergency
    with pytest.raises(UsageError, match="did you mean dependency-restart"):
        invoke(["show", "dependency-restrat", "--config", cfg])


def test_cli_schema_prints_the_shipped_schema() -> None:
    code, out, _err = invoke(["schema"])
    assert code == 0 and json.loads(out) == runbook_schema()


# --------------------------------------------------------------------------- typed action contracts

CONTRACT = """\
id: contract
title: contract
class: deploy
params:
  lines: {type: int, default: 20}
  name: {type: str}
steps:
  - name: logs
    action: docker.logs
    inputs: {container: es, tail: 5}
verify: [startup.health]
"""


@pytest.mark.parametrize(("change", "replacement", "line", "words"), [
    ("{container: es, tail: 5}", "{contaner: es, tail: 5}", 10,
     ("steps[0].inputs.contaner", "unknown input", "did you mean 'container'")),
    ("{container: es, tail: 5}", "{tail: 5}", 10, ("steps[0].inputs.container", "required input missing")),
    ("{container: es, tail: 5}", "{container: es, tail: many}", 10, ("steps[0].inputs.tail", "integer")),
    ("{container: es, tail: 5}", "{container: es, tail: \"{{ params.name }}\"}", 10,
     ("steps[0].inputs.tail", "integer")),
    ("verify: [startup.health]", "verify: [startup.helth]", 11,
     ("verify[0]", "no check 'startup.helth'", "startup.health")),
    ("verify: [startup.health]", "cures: [startup.helth]\nverify: [startup.health]", 11, ("cures[0]", "no check")),
    ("    action: docker.logs\n    inputs: {container: es, tail: 5}",
     "    action: wait_for\n    inputs: {check: [startup.health, vectors.colection]}", 10,
     ("steps[0].inputs.check[1]", "no check 'vectors.colection'")),
])
def test_a_broken_contract_is_refused_with_file_and_line(tmp_path: Path, change: str, replacement: str, line: int,
                                                         words: tuple[str, ...]) -> None:
    path = tmp_path / "rb.yaml"
    path.write_text(CONTRACT.replace(change, replacement), encoding="utf-8")
    with pytest.raises(RunbookError) as info:
        load_runbook_file(path)
    text = info.value.message
    assert text.startswith(f"{path}:{line}: "), text
    for word in words:
        assert word in text, text


@pytest.mark.parametrize("inputs", [
    "{container: \"{{ target.service.container }}\", tail: \"{{ params.lines }}\"}",
    "{container: es, tail: \"{{ steps.first.n }}\"}",
    "{container: \"es-{{ params.name }}\"}",
])
def test_templates_stand_for_typed_inputs(tmp_path: Path, inputs: str) -> None:
    text = CONTRACT.replace("steps:\n", "steps:\n  - name: first\n    action: notify\n    inputs: {message: hi}\n")
    path = tmp_path / "rb.yaml"
    path.write_text(text.replace("{container: es, tail: 5}", inputs), encoding="utf-8")
    assert load_runbook_file(path).steps[1].action == "docker.logs"


def test_runbooks_validate_rejects_a_misspelt_input_and_an_unknown_check(tmp_path: Path) -> None:
    misspelt, unknown = tmp_path / "misspelt.yaml", tmp_path / "unknown.yaml"
    misspelt.write_text(CONTRACT.replace("{container: es, tail: 5}", "{container: es, tial: 5}"), encoding="utf-8")
    unknown.write_text(CONTRACT.replace("verify: [startup.health]", "verify: [startup.helth]"), encoding="utf-8")
    for path, line, word in ((misspelt, 10, "tial"), (unknown, 11, "startup.helth")):
        code, _out, err = invoke(["validate", str(path)])
        assert code == ExitStatus.DATA, err
        assert f"{path}:{line}: " in err and word in err, err


def test_every_action_has_an_inputs_model_and_a_schema_entry() -> None:
    from es_doctor.runbooks.actions import REGISTRY, Inputs

    schema = runbook_schema()
    branches = {b["if"]["properties"]["action"]["const"]: b for b in schema["$defs"]["Step"]["allOf"]}
    assert set(branches) == set(REGISTRY)
    for name, spec in REGISTRY.items():
        assert issubclass(spec.inputs, Inputs) and spec.inputs is not Inputs, name
        entry = schema["$defs"][f"inputs.{name}"]
        assert entry["additionalProperties"] is False
        fields = {f.alias or n for n, f in spec.inputs.model_fields.items()}
        assert set(entry.get("properties", {})) == fields, name
    assert schema["$defs"]["inputs.docker.logs"]["required"] == ["container"]


def test_the_schema_accepts_every_shipped_runbook_and_rejects_a_misspelt_input() -> None:
    """What an editor (yaml-language-server) does with schema.json: the shipped set passes, a typo does not."""
    import jsonschema

    schema = json.loads((shipped_dir() / "schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    files = sorted([*shipped_dir().glob("*.yaml"), *(shipped_dir() / "emergency").glob("*.yaml")])
    for path in files:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8")))]
        assert not errors, (path, errors)
    bad = yaml.safe_load(CONTRACT.replace("{container: es, tail: 5}", "{contaner: es, tail: 5}"))
    assert list(validator.iter_errors(bad)), "the schema let a misspelt input through"
    typed = yaml.safe_load(CONTRACT.replace("{container: es, tail: 5}",
                                            "{container: es, tail: \"{{ params.lines }}\"}"))
    assert not list(validator.iter_errors(typed)), "a template stands for any input"
