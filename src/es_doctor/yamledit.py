"""Change one key of a YAML file's text and nothing else.

:func:`set_scalar` replaces the characters of one scalar value in place (found with the YAML
composer's marks), keeping its quoting style: every other byte of the file - comments, blank lines,
long lines, indentation, key order - stays as it was, so a file set back to its old value is the same
bytes again. It answers None when an in-place edit cannot do it (the key is missing, the value is a
block or multi-line scalar, a mapping or a list, or carries a tag); the caller then falls back to a
round-trip dump (:func:`roundtrip_set`). Either way the result is checked by parsing it again.
"""

from __future__ import annotations

import io
import json
from typing import Any

#: words a YAML 1.1 reader (Go's yaml.v2) takes for booleans or null: always quoted
YAML11_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})


class EditError(ValueError):
    """The text cannot take the change (not a mapping, a key under a scalar, unparsable)."""


def set_scalar(text: str, path: list[str], value: Any) -> str | None:
    """``text`` with the scalar at ``path`` replaced by ``value``; None when it is not one to edit in place."""
    from ruamel.yaml import YAML
    from ruamel.yaml.nodes import MappingNode, ScalarNode

    rendered_value = _is_scalar(value)
    if not rendered_value:
        return None
    node = YAML(typ="rt").compose(text)
    for part in path:
        if not isinstance(node, MappingNode):
            return None
        found = next((v for k, v in node.value if isinstance(k, ScalarNode) and k.value == part), None)
        if found is None:
            return None
        node = found
    if not isinstance(node, ScalarNode) or node.style in ("|", ">"):
        return None
    start, end = node.start_mark.index, node.end_mark.index
    if "\n" in text[start:end] or text[start:start + 1] in ("!", "&", "*"):
        return None
    new = text[:start] + scalar_text(value, node.style) + text[end:]
    return new if _reads_as(new, path, value) else None


def roundtrip_set(text: str, path: list[str], value: Any) -> str:
    """``text`` with ``path`` set by a round-trip load and dump (comments, order and quoting kept; long
    lines not re-wrapped); missing mappings on the way are created."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 1 << 20  # never re-wrap a long line (a dsn:)
    data = yaml.load(text)
    if data is None:
        data = CommentedMap()
    if not isinstance(data, dict):
        raise EditError("the file is not a YAML mapping")
    node = data
    for part in path[:-1]:
        if part not in node:
            node[part] = CommentedMap()
        node = node[part]
        if not isinstance(node, dict):
            raise EditError(f"{part} is not a mapping")
    node[path[-1]] = value
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def scalar_text(value: Any, style: str | None) -> str:
    """``value`` as a one-line YAML scalar, in ``style`` (``'``, ``"`` or plain) where it is a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if style == "'" and "\n" not in text:
        return "'" + text.replace("'", "''") + "'"
    if style != '"' and _plain_ok(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def _plain_ok(text: str) -> bool:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    if not text or text != text.strip() or "\n" in text or ": " in text or " #" in text:
        return False
    if text.lower() in YAML11_WORDS or text[0] in "#'\"{[&*!|>%@`,-?:":
        return False
    try:
        return bool(YAML(typ="safe").load(text) == text)
    except YAMLError:
        return False


def _reads_as(text: str, path: list[str], value: Any) -> bool:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        node = YAML(typ="safe").load(text)
    except YAMLError:
        return False
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return bool(node == value and type(node) is type(value))
