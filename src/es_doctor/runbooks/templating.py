"""Templated step inputs: a sandboxed Jinja environment where an undefined name is an error.

The context roots are ``params``, ``target``, ``steps`` (earlier steps' outputs) and ``finding``.
A string that is exactly one ``{{ expression }}`` keeps the expression's type (an int stays an int).
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from es_doctor.errors import EsDoctorError, ExitStatus

ROOTS = frozenset({"params", "target", "steps", "finding"})
_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.S)
_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


class TemplateError(EsDoctorError):
    exit_status = ExitStatus.DATA


def _fail(exc: Exception, source: str) -> TemplateError:
    return TemplateError(f"template {source!r}: {exc}")


def render(value: Any, context: dict[str, Any]) -> Any:
    """``value`` with every string rendered (recursively through dicts and lists)."""
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    if not isinstance(value, str) or "{" not in value:
        return value
    try:
        single = _SINGLE.match(value)
        if single and "{{" not in single["expr"] and "}}" not in single["expr"]:
            result = _ENV.compile_expression(single["expr"], undefined_to_none=False)(**context)
            if isinstance(result, StrictUndefined):
                str(result)  # raises UndefinedError
            return result
        return _ENV.from_string(value).render(**context)
    except (UndefinedError, TemplateSyntaxError, SecurityError, TypeError, ValueError, AttributeError,
            KeyError, IndexError) as exc:
        raise _fail(exc, value) from None


def evaluate_condition(expr: str, context: dict[str, Any]) -> bool:
    """``when:`` as a bare expression (``params.purge``) or one ``{{ … }}``."""
    single = _SINGLE.match(expr)
    source = single["expr"] if single else expr
    try:
        result = _ENV.compile_expression(source, undefined_to_none=False)(**context)
        if isinstance(result, StrictUndefined):
            str(result)
        return bool(result)
    except (UndefinedError, TemplateSyntaxError, SecurityError, TypeError, ValueError, AttributeError,
            KeyError, IndexError) as exc:
        raise _fail(exc, expr) from None


def _parse(text: str, as_expression: bool) -> Any:
    source = text
    if as_expression:
        single = _SINGLE.match(text)
        source = text if single else "{{ " + text + " }}"
    return _ENV.parse(source)


def referenced(text: str, as_expression: bool = False) -> list[tuple[str, str | None]]:
    """(root, first attribute) pairs a template uses, e.g. ``params.x`` → ("params", "x").

    Raises :class:`TemplateError` on a syntax error.
    """
    from jinja2 import nodes

    try:
        tree = _parse(text, as_expression)
    except TemplateSyntaxError as exc:
        raise _fail(exc, text) from None
    names = meta.find_undeclared_variables(tree)
    out: list[tuple[str, str | None]] = [(n, None) for n in sorted(names)]
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        inner = node.node
        if isinstance(inner, nodes.Name):
            if isinstance(node, nodes.Getattr):
                out.append((inner.name, node.attr))
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                out.append((inner.name, node.arg.value))
    return out


def strings(value: Any) -> list[str]:
    """Every string inside ``value`` that holds a template."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) and "{" in value else []
