"""Load and validate runbooks: the shipped set, then the directories named in the config.

Every problem is one :class:`RunbookError` naming file, line and key. Nothing executes at load
time: templates are parsed and their names checked (only the roots ``params``, ``target``,
``steps``, ``finding``; ``params.X`` declared; ``steps.X`` an earlier step), never rendered.

Contracts: each step's inputs are validated against its action's model (an unknown or misspelt
input, a missing one, a value of the wrong type). A value that is a template is accepted as one,
except ``{{ params.X }}`` alone, whose type is the parameter's declared type (and its default, when it
has one, is validated as the value). The ids of ``verify:``, ``cures:`` and of each ``wait_for``
step's ``check`` must be checks of the registry (``es-doctor checks``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from es_doctor.errors import EsDoctorError, ExitStatus
from es_doctor.runbooks.actions import REGISTRY, input_problem
from es_doctor.runbooks.model import SEMANTIC_ERROR, Param, Runbook, Step
from es_doctor.runbooks.templating import ROOTS, TemplateError, referenced, single_expression, strings
from es_doctor.yamlsource import YamlDocument, YamlSyntaxError, load_yaml_file

Loc = tuple[str | int, ...]
SUFFIXES = (".yaml", ".yml")


class RunbookError(EsDoctorError):
    """A malformed runbook: ``path:line: key: message`` (exit 65)."""

    exit_status = ExitStatus.DATA

    def __init__(self, path: Path | str, line: int | None, key: str, message: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {key + ': ' if key else ''}{message}")
        self.path, self.line, self.key = str(path), line, key


def shipped_dir() -> Path:
    """The runbooks shipped with es-doctor (package data; ``runbooks/`` in the repository)."""
    return Path(str(resources.files("es_doctor") / "data" / "runbooks"))


def loc_text(loc: Iterable[Any]) -> str:
    """``("steps", 1, "action")`` → ``steps[1].action``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _present(data: Any, loc: Loc) -> Loc:
    """The longest prefix of ``loc`` that exists in ``data`` (pydantic appends union member tags)."""
    node, kept = data, 0
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_dict or in_list):
            break
        node = node[part]
        kept += 1
    return loc[:kept]


def _from_validation(exc: ValidationError, doc: YamlDocument, path: Path) -> RunbookError:
    err = exc.errors(include_url=False)[0]
    loc: Loc = tuple(err["loc"])
    message = err["msg"]
    ctx = err.get("ctx") or {}
    if err["type"] == SEMANTIC_ERROR:
        loc = tuple(ctx["loc"])
        message = str(ctx["message"])
    elif err["type"] == "missing":
        message = "required field missing"
    elif err["type"] == "value_error" and "error" in ctx:
        message = str(ctx["error"])
        loc = _present(doc.data, loc) or loc
    elif err["type"] == "extra_forbidden":
        message = f"unknown key ({message})"
    else:
        loc = _present(doc.data, loc) or loc
    return RunbookError(path, doc.line_of(loc), loc_text(loc) or "(document)", message)


def _check_templates(rb: Runbook, doc: YamlDocument, path: Path) -> None:
    declared = set(rb.params)

    def check(text: str, loc: Loc, earlier: set[str], as_expression: bool) -> None:
        try:
            refs = referenced(text, as_expression)
        except TemplateError as exc:
            raise RunbookError(path, doc.line_of(loc), loc_text(loc), exc.message) from None
        for root, attr in refs:
            problem = None
            if root not in ROOTS:
                problem = f"undefined name {root!r} in template {text!r} (known: {', '.join(sorted(ROOTS))})"
            elif root == "params" and attr is not None and attr not in declared:
                known = ", ".join(sorted(declared)) or "none declared"
                problem = f"undefined parameter params.{attr} in template {text!r} (params: {known})"
            elif root == "steps" and attr is not None and attr not in earlier:
                problem = f"steps.{attr} is not an earlier step (template {text!r})"
            if problem:
                raise RunbookError(path, doc.line_of(loc), loc_text(loc), problem)

    def walk(value: Any, loc: Loc, earlier: set[str]) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, (*loc, k), earlier)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*loc, i), earlier)
        elif isinstance(value, str) and strings(value):
            check(value, loc, earlier, False)

    def section(name: str, items: list[Step], earlier: set[str]) -> set[str]:
        seen = set(earlier)
        for i, step in enumerate(items):
            walk(step.inputs, (name, i, "inputs"), seen)
            if step.when:
                check(step.when, (name, i, "when"), seen, True)
            seen.add(step.name)
        return seen

    before = section("preconditions", rb.preconditions, set())
    after = section("steps", rb.steps, before)
    section("rollback", rb.rollback, after)


_SAMPLES: dict[str, Any] = {"str": "x", "int": 1, "float": 1.0, "bool": True}


def _param_of(value: Any, params: dict[str, Param]) -> Param | None:
    """The declared parameter a value is exactly (``{{ params.X }}``), else None."""
    expr = single_expression(value) if isinstance(value, str) else None
    if expr is None or not expr.startswith("params.") or not expr[7:].isidentifier():
        return None
    return params.get(expr[7:])


def _check_inputs(rb: Runbook, doc: YamlDocument, path: Path) -> None:
    """Each step's inputs against its action's model (see the module's docstring)."""
    for section, items in rb.sections():
        for i, step in enumerate(items):
            model = REGISTRY[step.action].inputs
            probe: dict[str, Any] = {}
            sampled: set[str] = set()
            for key, value in step.inputs.items():
                param = _param_of(value, rb.params)
                if param is not None and param.default is not None:
                    probe[key] = param.default
                elif param is not None:
                    probe[key], sampled = _SAMPLES[param.type], sampled | {key}
                else:
                    probe[key] = value
            try:
                model.model_validate(probe)
            except ValidationError as exc:
                errors = exc.errors(include_url=False)  # a misspelt input first: it explains a missing one
                for err in sorted(errors, key=lambda e: e["type"] != "extra_forbidden"):
                    value = err.get("input")
                    if isinstance(value, str) and strings(value):
                        continue  # a template: its type is known only once rendered (checked then)
                    first = err["loc"][0] if err["loc"] else None
                    if first in sampled and not str(err["type"]).endswith(("_type", "_parsing")):
                        continue  # a declared type that fits; the value is known only at run time
                    loc: Loc = (section, i, "inputs", *err["loc"])
                    message = f"{step.action}: {input_problem(err)}"
                    if err["type"] == "extra_forbidden":
                        known = [f.alias or n for n, f in model.model_fields.items()]
                        near = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
                        message += (f" (did you mean {near[0]!r}?" if near else " (") + \
                            f" its inputs: {', '.join(known) or 'none'})"
                    raise RunbookError(path, doc.line_of(_present(doc.data, loc) or loc), loc_text(loc),
                                       message) from None


def _check_ids(rb: Runbook, doc: YamlDocument, path: Path) -> None:
    """``verify:``, ``cures:`` and ``wait_for`` check ids name checks of the registry."""
    from es_doctor.checks.registry import load_all

    if not (rb.verify or rb.cures or any(s.action == "wait_for" for _n, items in rb.sections() for s in items)):
        return  # no id to check: the check modules are not imported
    registry = load_all()

    def known(check_id: Any, loc: Loc) -> None:
        if isinstance(check_id, str) and not strings(check_id) and check_id not in registry:
            near = sorted(c for c in registry if c.split(".")[0] == check_id.split(".")[0])
            raise RunbookError(path, doc.line_of(loc), loc_text(loc),
                               f"no check {check_id!r} (checks of that class: {', '.join(near) or 'none'}; "
                               "all: es-doctor checks)")

    for key in ("verify", "cures"):
        for i, check_id in enumerate(getattr(rb, key)):
            known(check_id, (key, i))
    for section, items in rb.sections():
        for i, step in enumerate(items):
            if step.action == "wait_for":
                wanted = step.inputs.get("check")
                for j, check_id in enumerate(wanted if isinstance(wanted, list) else [wanted]):
                    known(check_id, (section, i, "inputs", "check", j) if isinstance(wanted, list)
                          else (section, i, "inputs", "check"))


def _load(path: Path, check_ids: bool = True) -> tuple[Runbook, YamlDocument]:
    try:
        doc = load_yaml_file(path)
    except YamlSyntaxError as exc:
        raise RunbookError(path, exc.line, "", f"bad YAML: {exc.message}" if exc.line else exc.message) from None
    except OSError as exc:
        raise RunbookError(path, None, "", f"cannot read: {exc.strerror or exc}") from None
    if not isinstance(doc.data, dict):
        raise RunbookError(path, doc.line_of(()) or 1, "(document)",
                           "a runbook is a YAML mapping (id, title, class, steps, …)")
    try:
        rb = Runbook.model_validate(doc.data)
    except ValidationError as exc:
        raise _from_validation(exc, doc, path) from None
    _check_templates(rb, doc, path)
    _check_inputs(rb, doc, path)
    if check_ids:
        _check_ids(rb, doc, path)
    return rb, doc


def load_runbook_file(path: Path) -> Runbook:
    """Parse and validate one runbook file; any problem is one :class:`RunbookError`."""
    return _load(Path(path))[0]


@dataclass
class RunbookSet:
    runbooks: dict[str, Runbook] = field(default_factory=dict)
    #: id → the file it was loaded from
    sources: dict[str, Path] = field(default_factory=dict)
    #: id → (the shipped file, the user's file that overrides it)
    overrides: dict[str, tuple[Path, Path]] = field(default_factory=dict)
    #: the user's runbook files that could not be loaded (``tolerant`` loading skips them)
    errors: list[RunbookError] = field(default_factory=list)

    def is_shipped(self, runbook_id: str) -> bool:
        return self.sources[runbook_id].parent == shipped_dir()


def runbook_files(directory: Path) -> list[Path]:
    """The runbook files of one directory (``*.yaml``, ``*.yml``; not recursive), sorted."""
    return sorted(p for p in directory.iterdir() if p.suffix in SUFFIXES and p.is_file())


def _load_level(files: Iterable[Path], errors: list[RunbookError] | None = None,
                check_ids: bool = True) -> dict[str, tuple[Runbook, Path]]:
    """One source level; an id defined twice in it is an error naming both files.

    With ``errors``, a file that does not load is recorded there and skipped instead of raising.
    ``check_ids=False`` leaves the check ids unchecked (the shipped set: a unit test checks them, and
    every command would otherwise import every check module; ``plan()`` checks a runbook's ids again).
    """
    found: dict[str, tuple[Runbook, Path]] = {}
    for path in files:
        try:
            rb, doc = _load(path, check_ids)
        except RunbookError as exc:
            if errors is None:
                raise
            errors.append(exc)
            continue
        if rb.id in found:
            raise RunbookError(path, doc.line_of(("id",)), "id",
                               f"runbook id {rb.id!r} is also defined in {found[rb.id][1]}")
        found[rb.id] = (rb, path)
    return found


def load_runbooks(dirs: list[Path] | None = None, *, shipped: bool = True, tolerant: bool = False) -> RunbookSet:
    """The shipped set, then the user's directories (one level together); a user's id overrides.

    ``tolerant``: a malformed user runbook is recorded in ``errors`` and skipped (commands that do not
    use it go on); without it, it is raised (``runbooks validate``).
    """
    out = RunbookSet()
    if shipped:
        emergency = shipped_dir() / "emergency"  # runbooks/emergency/: the guide's emergency procedures
        files = [*runbook_files(shipped_dir()), *(runbook_files(emergency) if emergency.is_dir() else [])]
        for rb_id, (rb, path) in _load_level(files, check_ids=False).items():
            out.runbooks[rb_id], out.sources[rb_id] = rb, path
    user_files: list[Path] = []
    for directory in dirs or []:
        if not directory.is_dir():
            raise RunbookError(directory, None, "runbook_dirs", "not a directory")
        user_files.extend(runbook_files(directory))
    for rb_id, (rb, path) in _load_level(user_files, out.errors if tolerant else None).items():
        if rb_id in out.runbooks:
            out.overrides[rb_id] = (out.sources[rb_id], path)
        out.runbooks[rb_id], out.sources[rb_id] = rb, path
    return out
