"""Templated step inputs: a sandboxed Jinja environment where an undefined name is an error.

The context roots are exactly ``params``, ``target``, ``steps`` (earlier steps' outputs, as
``steps.<name>.<key>``) and ``finding``; anything else (``env``, Jinja's globals such as
``range``) is undefined. A string that is exactly one ``{{ expression }}`` keeps the expression's
type (an int stays an int); any other string renders to a string. Two filters read URLs:
``{{ target.service.api_url | port }}`` and ``| host``.

Templates are data, not programs: only ``{{ … }}`` expressions (no ``{% … %}`` statements), no
method calls, a short list of filters, no constant folding at parse time (validation never
evaluates anything). While rendering, every operation's result is bounded *before it is built*:
``*`` repeats at most :data:`MAX_REPEAT` items, ``**`` and ``*`` on integers stay under
:data:`MAX_INT_BITS` bits, ``%`` formatting of strings is refused, and ``+``, ``~``, ``join``,
``string``, ``tojson``, ``list`` and the printed value of a ``{{ … }}`` are refused when what they
would build weighs more than :data:`MAX_RESULT` characters (a list's weight is the size of its text:
``['A' * 65536] * 65536`` weighs 4 G, though it holds one string). A render builds at most
:data:`MAX_WORK` characters in all and stops at :data:`RENDER_BUDGET_S` seconds (checked at every
operation; one operation is bounded by the above), so every render is bounded in time and size.
"""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.compiler import CodeGenerator, Frame
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
#: the most characters one render may build in all (every operation's result counts)
MAX_WORK = 8 * 1024 * 1024
#: the wall-clock budget of one render (one step's inputs, or one condition)
RENDER_BUDGET_S = 2.0
#: the deepest expression a template may hold (operations within operations)
MAX_DEPTH = 100
#: the most items a ``list`` (or ``sort``, ``unique``) may hold
MAX_ITEMS = MAX_REPEAT
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


def weight(value: Any, limit: int = 4 * MAX_RESULT) -> int:
    """About how many characters ``value`` takes as text (its ``str()``/JSON), counted without building
    it; the count stops soon after ``limit`` (so a list holding one string 65536 times costs little)."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item) + 2
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + 2 * len(item)
            stack.extend(item)
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            total += 24  # a number, a boolean, None
    return total


@dataclass
class _Budget:
    deadline: float
    work: int = 0


_BUDGET: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


@contextlib.contextmanager
def _budget() -> Iterator[None]:
    """One render's budget (a nested render shares its caller's)."""
    if _BUDGET.get() is not None:
        yield
        return
    token = _BUDGET.set(_Budget(time.monotonic() + RENDER_BUDGET_S))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _charge(built: int) -> None:
    """Count ``built`` characters against the render's budget; refuse past it or past its time."""
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.work += built
    if budget.work > MAX_WORK:
        raise ValueError(f"the template builds more than {MAX_WORK} characters in all")
    if time.monotonic() > budget.deadline:
        raise ValueError(f"rendering went past its time budget ({RENDER_BUDGET_S:g} s)")


def _refuse_heavy(what: str, size: int) -> None:
    if size > MAX_RESULT:
        raise ValueError(f"{what} would be larger than {MAX_RESULT} characters")


def _join(value: Any, d: str = "", attribute: Any = None) -> str:
    """Jinja's ``join``, its result's size known before it is built."""
    if attribute is not None:
        raise ValueError("join(attribute=…) is not available in runbook templates")
    items = list(value)
    separator = str(d)
    _refuse_heavy("join", sum(weight(i, MAX_RESULT) for i in items) + len(separator) * max(len(items) - 1, 0))
    return separator.join(str(i) for i in items)


def _bounded_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose input is weighed before it runs and whose result is weighed after."""
    factor = {"string": 2, "tojson": 6}.get(name, 1)  # text that may grow: repr quotes, JSON escapes
    counts_items = name in ("list", "sort", "unique")
    skip = 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0  # the context jinja passes first

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        value = args[skip] if len(args) > skip else None
        if counts_items and _size(value) > MAX_ITEMS:
            raise ValueError(f"{name} of more than {MAX_ITEMS} items")
        _refuse_heavy(name, weight(value) * factor)
        result = fn(*args, **kwargs)
        built = weight(result)
        _refuse_heavy(name, built)
        _charge(built)
        return result

    return run


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with ``~`` going through :meth:`_BoundedEnvironment.bounded_concat`."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:  # noqa: N802 - Jinja's visitor name
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _BoundedEnvironment(SandboxedEnvironment):
    """The sandbox, with arithmetic that cannot blow up and without method calls."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _BoundedCodeGenerator

    @staticmethod
    def bounded_concat(values: tuple[Any, ...]) -> str:
        """``a ~ b``: its size known before it is built."""
        _refuse_heavy("~", sum(weight(v, MAX_RESULT) for v in values))
        result = "".join(str(v) for v in values)
        _charge(len(result))
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        _charge(0)  # the time budget, at every step of an expression
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _charge(0)
        return super().getitem(obj, argument)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _charge(0)
        result = self._binop(operator, left, right)
        _charge(weight(result))
        return result

    def _binop(self, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0 \
                    and right * abs(left).bit_length() > MAX_INT_BITS:
                raise ValueError(f"{left} ** {right} is too large (more than {MAX_INT_BITS} bits)")
            return left ** right
        if operator == "+":
            if _size(left) + _size(right) > MAX_RESULT:
                raise ValueError(f"concatenation larger than {MAX_RESULT} items")
            if _size(left) and _size(right):
                _refuse_heavy("+", weight(left, MAX_RESULT) + weight(right, MAX_RESULT))
            return left + right
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if _size(seq) and isinstance(times, int) and _size(seq) * times > MAX_REPEAT:
                    raise ValueError(f"repetition larger than {MAX_REPEAT} items")
                if isinstance(seq, list | tuple) and seq and isinstance(times, int) and times > 0:
                    _refuse_heavy("repetition", weight(seq, MAX_RESULT) * times)
            if isinstance(left, int) and isinstance(right, int) \
                    and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise ValueError(f"product larger than {MAX_INT_BITS} bits")
            return left * right
        if isinstance(left, str):  # '%' formatting: a width or precision could ask for any size
            raise TypeError("string formatting with % is not allowed in runbook templates")
        return left % right

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        raise ValueError("calls are not allowed in runbook templates (use a filter: | join(', '), | length, …)")


def _finalize(value: Any) -> Any:
    """Each ``{{ … }}`` of a text template, weighed before it is turned into text."""
    _refuse_heavy("the value of {{ … }}", weight(value, MAX_RESULT))
    return value


def _environment() -> SandboxedEnvironment:
    env = _BoundedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False,
                              finalize=_finalize)
    env.optimized = False  # no constant folding: parsing and validating never evaluate an expression
    env.globals.clear()  # no range/dict/lipsum/cycler/joiner/namespace: the roots are the whole namespace
    filters = {name: env.filters[name] for name in SAFE_FILTERS}
    filters["join"] = _join
    env.filters = {name: _bounded_filter(name, fn) for name, fn in filters.items()}
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
            RecursionError, SyntaxError) as exc:
        raise _fail(exc, shown) from None


def render(value: Any, context: dict[str, Any]) -> Any:
    """``value`` with every string rendered (recursively through dicts and lists), within one budget
    (:data:`MAX_WORK` characters, :data:`RENDER_BUDGET_S` seconds)."""
    with _budget():
        return _render(value, context)


def _render(value: Any, context: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, context) for v in value]
    if not isinstance(value, str) or "{" not in value:
        return value
    expr = single_expression(value)
    if expr is not None:
        return _evaluate(expr, context, value)
    try:
        return _bounded(_ENV.from_string(_parse(value, as_expression=False)).render(**_roots(context)), value)
    except (JinjaTemplateError, ArithmeticError, LookupError, TypeError, ValueError, AttributeError,
            RecursionError, SyntaxError) as exc:
        raise _fail(exc, value) from None


def evaluate_condition(expr: str, context: dict[str, Any]) -> bool:
    """The truth of a ``when:`` condition."""
    with _budget():
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


def _shallow(tree: nodes.Template, text: str) -> nodes.Template:
    """Refuse an expression nested deeper than :data:`MAX_DEPTH` (Python cannot compile the code Jinja
    makes of a chain of about 200 operations: a SyntaxError at run time, without this)."""
    stack: list[tuple[nodes.Node, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise TemplateError(f"template {text!r}: nested deeper than {MAX_DEPTH} operations")
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())
    return tree


def _parse(text: str, as_expression: bool) -> nodes.Template:
    if len(text) > MAX_TEMPLATE:
        raise TemplateError(f"template of {len(text)} characters (at most {MAX_TEMPLATE})")
    try:
        if as_expression:
            source = condition_source(text)
            tree = _shallow(_expressions_only(_ENV.parse("{{ (" + source + ") }}"), text), text)  # named first
            _ENV.compile_expression(source)  # the evaluator's own parser: rejects trailing garbage
            return tree
        return _shallow(_expressions_only(_ENV.parse(text), text), text)
    except TemplateSyntaxError as exc:
        raise _fail(exc, text) from None
    except (JinjaTemplateError, RecursionError, SyntaxError, ValueError, TypeError) as exc:  # pathological input
        # (SyntaxError: Python refuses the compiled template, e.g. more than 200 nested parentheses)
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
