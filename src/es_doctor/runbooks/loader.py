"""Load and validate runbooks: the shipped set, then the directories named in the config.

Every problem is one :class:`RunbookError` naming file, line and key. Nothing executes at load
time: templates are parsed and their names checked (``params.X`` declared, ``steps.X`` an earlier
step), never rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from es_doctor.errors import EsDoctorError, ExitStatus
from es_doctor.runbooks.model import Runbook, Step
from es_doctor.runbooks.templating import ROOTS, TemplateError, referenced, strings
from es_doctor.yamlsource import YamlDocument, YamlSyntaxError, load_yaml_file


class RunbookError(EsDoctorError):
    exit_status = ExitStatus.DATA

    def __init__(self, path: Path | str, line: int | None, key: str, message: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {key + ': ' if key else ''}{message}")
        self.path, self.line, self.key = str(path), line, key


def shipped_dir() -> Path:
    return Path(str(resources.files("es_doctor") / "data" / "runbooks"))


def _loc_text(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _check_templates(rb: Runbook, doc: YamlDocument, path: Path) -> None:
    declared = set(rb.params)

    def check(text: str, loc: tuple[Any, ...], earlier: set[str], as_expression: bool) -> None:
        try:
            refs = referenced(text, as_expression)
        except TemplateError as exc:
            raise RunbookError(path, doc.line_of(loc), _loc_text(loc), exc.message) from None
        for root, attr in refs:
            problem = None
            if root not in ROOTS:
                problem = f"undefined name {root!r} in template {text!r} (known: {', '.join(sorted(ROOTS))})"
            elif root == "params" and attr is not None and attr not in declared:
                problem = f"undefined parameter params.{attr} in template {text!r}"
            elif root == "steps" and attr is not None and attr not in earlier:
                problem = f"steps.{attr} is not an earlier step (template {text!r})"
            if problem:
                raise RunbookError(path, doc.line_of(loc), _loc_text(loc), problem)

    def walk(value: Any, loc: tuple[Any, ...], earlier: set[str]) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, (*loc, k), earlier)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*loc, i), earlier)
        elif isinstance(value, str) and strings(value):
            check(value, loc, earlier, False)

    def steps(section: str, items: list[Step], earlier: set[str], grow: bool) -> None:
        seen = set(earlier)
        for i, step in enumerate(items):
            walk(step.inputs, (section, i, "inputs"), seen)
            if step.when:
                check(step.when, (section, i, "when"), seen | ({step.name} if section == "rollback" else set()), True)
            if grow:
                seen.add(step.name)

    steps("preconditions", rb.preconditions, set(), True)
    steps("steps", rb.steps, set(), True)
    steps("rollback", rb.rollback, {s.name for s in rb.steps}, True)


def load_runbook_file(path: Path) -> Runbook:
    try:
        doc = load_yaml_file(path)
    except YamlSyntaxError as exc:
        raise RunbookError(path, exc.line, "", f"bad YAML: {exc.message}") from None
    except OSError as exc:
        raise RunbookError(path, None, "", f"cannot read: {exc.strerror or exc}") from None
    if not isinstance(doc.data, dict):
        raise RunbookError(path, 1, "", "a runbook is a YAML mapping (id, title, class, steps, …)")
    try:
        rb = Runbook.model_validate(doc.data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "required field missing"
        return_line = doc.line_of(loc)
        raise RunbookError(path, return_line, _loc_text(loc) or "(document)", message) from None
    _check_templates(rb, doc, path)
    return rb


@dataclass
class RunbookSet:
    runbooks: dict[str, Runbook] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    #: id → (the shipped file, the user's file that overrides it)
    overrides: dict[str, tuple[Path, Path]] = field(default_factory=dict)


def _load_dir(directory: Path) -> dict[str, tuple[Runbook, Path]]:
    found: dict[str, tuple[Runbook, Path]] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        rb = load_runbook_file(path)
        if rb.id in found:
            raise RunbookError(path, 1, "id", f"runbook id {rb.id!r} is also defined in {found[rb.id][1]}")
        found[rb.id] = (rb, path)
    return found


def load_runbooks(dirs: list[Path] | None = None, *, shipped: bool = True) -> RunbookSet:
    out = RunbookSet()
    if shipped:
        for rb_id, (rb, path) in _load_dir(shipped_dir()).items():
            out.runbooks[rb_id], out.sources[rb_id] = rb, path
    user: dict[str, tuple[Runbook, Path]] = {}
    for directory in dirs or []:
        if not directory.is_dir():
            raise RunbookError(directory, None, "runbook_dirs", "not a directory")
        for rb_id, (rb, path) in _load_dir(directory).items():
            if rb_id in user:
                raise RunbookError(path, 1, "id", f"runbook id {rb_id!r} is also defined in {user[rb_id][1]}")
            user[rb_id] = (rb, path)
    for rb_id, (rb, path) in user.items():
        if rb_id in out.runbooks:
            out.overrides[rb_id] = (out.sources[rb_id], path)
        out.runbooks[rb_id], out.sources[rb_id] = rb, path
    return out
