"""Templated step inputs: a sandboxed Jinja environment where an undefined name is an error.

The context roots are exactly ``params``, ``target``, ``steps`` (earlier steps' outputs, as
``steps.<name>.<key>``) and ``finding``; anything else (``env``, Jinja's globals such as
``range``) is undefined. A string that is exactly one ``{{ expression }}`` keeps the expression's
type (an int stays an int); any other string renders to a string. Two filters read URLs:
``{{ target.service.api_url | port }}`` and ``| host``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.sandbox import SandboxedEnvironment

from es_doctor.errors import EsDoctorError, ExitStatus

ROOTS = frozenset({"params", "target", "steps", "finding"})
_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.S)


class TemplateError(EsDoctorError):
    """A template that does not parse, names an undefined name, or fails while rendering."""

    exit_status = ExitStatus.DATA


_DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "postgres": 5432, "redis": 6379}


def _port(url: Any) -> int:
    parts = urlsplit(str(url))
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    if not port:
        raise ValueError(f"no port in {url!r}")
    return port


def _host(url: Any) -> str:
    return urlsplit(str(url)).hostname or ""


def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.globals.clear()  # no range/dict/lipsum/cycler/joiner/namespace: the roots are the whole namespace
    env.filters["port"] = _port
    env.filters["host"] = _host
    return env


_ENV = _environment()


def _fail(exc: BaseException, source: str) -> TemplateError:
    return TemplateError(f"template {source!r}: {exc}")


def single_expression(text: str) -> str | None:
    """The expression of a string that is exactly one ``{{ … }}``, else None."""
    match = _SINGLE.match(text)
    if match is None or "{{" in match["expr"] or "}}" in match["expr"]:
        return None
    return match["expr"].strip()


def condition_source(expr: str) -> str:
    """A ``when:`` is a bare expression (``params.purge``) or one ``{{ params.purge }}``."""
    return single_expression(expr) or expr.strip()


def _roots(context: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in context.items() if k in ROOTS}


def _evaluate(source: str, context: dict[str, Any], shown: str) -> Any:
    try:
        result = _ENV.compile_expression(source, undefined_to_none=False)(**_roots(context))
        if isinstance(result, StrictUndefined):
            str(result)  # raises UndefinedError naming the name
        return result
    except TemplateError:
        raise
    except (JinjaTemplateError, ArithmeticError, LookupError, TypeError, ValueError, AttributeError,
            RecursionError) as exc:
        raise _fail(exc, shown) from None


def render(value: Any, context: dict[str, Any]) -> Any:
    """``value`` with every string rendered (recursively through dicts and lists)."""
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    if not isinstance(value, str) or "{" not in value:
        return value
    expr = single_expression(value)
    if expr is not None:
        return _evaluate(expr, context, value)
    try:
        return _ENV.from_string(value).render(**_roots(context))
    except (JinjaTemplateError, ArithmeticError, LookupError, TypeError, ValueError, AttributeError,
            RecursionError) as exc:
        raise _fail(exc, value) from None


def evaluate_condition(expr: str, context: dict[str, Any]) -> bool:
    """The truth of a ``when:`` condition."""
    return bool(_evaluate(condition_source(expr), context, expr))


def _parse(text: str, as_expression: bool) -> nodes.Template:
    try:
        if as_expression:
            source = condition_source(text)
            _ENV.compile_expression(source)  # the evaluator's own parser: rejects trailing garbage
            return _ENV.parse("{{ (" + source + ") }}")
        return _ENV.parse(text)
    except TemplateSyntaxError as exc:
        raise _fail(exc, text) from None
    except (JinjaTemplateError, RecursionError, ValueError, TypeError) as exc:  # pathological input
        raise _fail(exc, text) from None


def referenced_names(template: str, *, as_expression: bool = False) -> set[str]:
    """The root names a template reads (``{{ params.x }}`` → ``{"params"}``); parses, never renders.

    Raises :class:`TemplateError` on a syntax error.
    """
    return set(meta.find_undeclared_variables(_parse(template, as_expression)))


def referenced(template: str, as_expression: bool = False) -> list[tuple[str, str | None]]:
    """(root, first attribute) pairs a template reads: ``params.x`` → ("params", "x").

    Every undeclared root appears once with None; ``root.attr`` and ``root["attr"]`` add a pair.
    Raises :class:`TemplateError` on a syntax error.
    """
    tree = _parse(template, as_expression)
    names = meta.find_undeclared_variables(tree)
    out: list[tuple[str, str | None]] = [(n, None) for n in sorted(names)]
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        inner = getattr(node, "node", None)
        if not isinstance(inner, nodes.Name) or inner.name not in names:
            continue
        if isinstance(node, nodes.Getattr):
            out.append((inner.name, str(node.attr)))
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            out.append((inner.name, node.arg.value))
    return out


def strings(value: Any) -> list[str]:
    """Every string inside ``value`` that may hold a template."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) and "{" in value else []
