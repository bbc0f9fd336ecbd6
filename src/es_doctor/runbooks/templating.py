"""Templated step inputs: a sandboxed Jinja environment where an undefined name is an error.

The context roots are exactly ``params``, ``target``, ``steps`` (earlier steps' outputs, as
``steps.<name>.<key>``) and ``finding``; anything else (``env``, Jinja's globals such as
``range``) is undefined. A string that is exactly one ``{{ expression }}`` keeps the expression's
type (an int stays an int); any other string renders to a string. Two filters read URLs:
``{{ target.service.api_url | port }}`` and ``| host``.

Templates are data, not programs: only ``{{ … }}`` expressions (no ``{% … %}`` statements), no
method calls, a short list of filters, no constant folding at parse time (validation never
evaluates anything), and while rendering ``*``, ``+``, ``**`` and ``%`` refuse results larger than
:data:`MAX_REPEAT` characters (``+`` and a whole value: :data:`MAX_RESULT`) or :data:`MAX_INT_BITS`
bits, so every render is bounded in time and size.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from es_doctor.errors import EsDoctorError, ExitStatus

ROOTS = frozenset({"params", "target", "steps", "finding"})
#: the longest template string, the largest string or list one operation may build, and the largest
#: value a render may produce
MAX_TEMPLATE = 8192
MAX_REPEAT = 64 * 1024
MAX_RESULT = 1024 * 1024
#: the largest integer an expression may compute
MAX_INT_BITS = 4096
#: Jinja's filters a runbook may use (each bounded by the size of its input), plus port and host
SAFE_FILTERS = ("length", "count", "join", "default", "d", "lower", "upper", "string", "int", "float", "trim",
                "first", "last", "list", "tojson", "abs", "round", "min", "max", "sort", "unique")
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


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else 0


class _BoundedEnvironment(SandboxedEnvironment):
    """The sandbox, with arithmetic that cannot blow up and without method calls."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0 \
                    and right * abs(left).bit_length() > MAX_INT_BITS:
                raise ValueError(f"{left} ** {right} is too large (more than {MAX_INT_BITS} bits)")
            return left ** right
        if operator == "+":
            if _size(left) + _size(right) > MAX_RESULT:
                raise ValueError(f"concatenation larger than {MAX_RESULT} items")
            return left + right
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if _size(seq) and isinstance(times, int) and _size(seq) * times > MAX_REPEAT:
                    raise ValueError(f"repetition larger than {MAX_REPEAT} items")
            if isinstance(left, int) and isinstance(right, int) \
                    and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise ValueError(f"product larger than {MAX_INT_BITS} bits")
            return left * right
        if isinstance(left, str):  # '%' formatting: a width or precision could ask for any size
            raise TypeError("string formatting with % is not allowed in runbook templates")
        return left % right

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        raise ValueError("calls are not allowed in runbook templates (use a filter: | join(', '), | length, …)")


def _environment() -> SandboxedEnvironment:
    env = _BoundedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.optimized = False  # no constant folding: parsing and validating never evaluate an expression
    env.globals.clear()  # no range/dict/lipsum/cycler/joiner/namespace: the roots are the whole namespace
    env.filters = {name: env.filters[name] for name in SAFE_FILTERS}
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


def _bounded(result: Any, shown: str) -> Any:
    if _size(result) > MAX_RESULT:
        raise TemplateError(f"template {shown!r}: its value is larger than {MAX_RESULT} characters")
    return result


def _evaluate(source: str, context: dict[str, Any], shown: str) -> Any:
    try:
        _parse(shown, as_expression=True)  # statements, size: refused before anything runs
        result = _ENV.compile_expression(source, undefined_to_none=False)(**_roots(context))
        if isinstance(result, StrictUndefined):
            str(result)  # raises UndefinedError naming the name
        return _bounded(result, shown)
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
        return _bounded(_ENV.from_string(_parse(value, as_expression=False)).render(**_roots(context)), value)
    except (JinjaTemplateError, ArithmeticError, LookupError, TypeError, ValueError, AttributeError,
            RecursionError) as exc:
        raise _fail(exc, value) from None


def evaluate_condition(expr: str, context: dict[str, Any]) -> bool:
    """The truth of a ``when:`` condition."""
    return bool(_evaluate(condition_source(expr), context, expr))


def _expressions_only(tree: nodes.Template, text: str) -> nodes.Template:
    """Refuse statements, calls and filters or tests that are not available, before anything runs."""
    for node in tree.body:
        if not isinstance(node, nodes.Output):
            raise TemplateError(f"template {text!r}: only {{{{ … }}}} expressions are allowed, not "
                                f"{{% {type(node).__name__.lower()} %}} statements")
    if any(True for _ in tree.find_all(nodes.Call)):
        raise TemplateError(f"template {text!r}: calls are not allowed in runbook templates "
                            "(use a filter: | join(', '), | length, …)")
    for item in tree.find_all(nodes.Filter):
        if item.name not in _ENV.filters:
            raise TemplateError(f"template {text!r}: no filter {item.name!r} (available: "
                                f"{', '.join(sorted(_ENV.filters))})")
    for test in tree.find_all(nodes.Test):
        if test.name not in _ENV.tests:
            raise TemplateError(f"template {text!r}: no test {test.name!r}")
    return tree


def _parse(text: str, as_expression: bool) -> nodes.Template:
    if len(text) > MAX_TEMPLATE:
        raise TemplateError(f"template of {len(text)} characters (at most {MAX_TEMPLATE})")
    try:
        if as_expression:
            source = condition_source(text)
            tree = _expressions_only(_ENV.parse("{{ (" + source + ") }}"), text)  # calls, filters: named first
            _ENV.compile_expression(source)  # the evaluator's own parser: rejects trailing garbage
            return tree
        return _expressions_only(_ENV.parse(text), text)
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
