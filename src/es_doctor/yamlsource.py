"""YAML loading that remembers where every value came from (file and line).

Both the configuration and the runbooks are validated against pydantic models; when a model
rejects a value, :func:`line_of` maps the error's location back to the line in the file.

Input limits, checked on the event stream before anything is built (so a hostile file costs
milliseconds): at most :data:`MAX_FILE_BYTES` bytes, only regular files (a FIFO or a device is
refused without being opened for a blocking read), nesting at most :data:`MAX_DEPTH` levels, and at
most :data:`MAX_NODES` nodes once aliases are expanded (a "billion laughs" file is refused, a
few anchors reused are fine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Loc = tuple[str | int, ...]

#: the largest YAML file es-doctor reads (configs and runbooks are a few KiB)
MAX_FILE_BYTES = 1024 * 1024
#: the deepest nesting of mappings and sequences
MAX_DEPTH = 64
#: the most nodes a document may hold with its aliases expanded
MAX_NODES = 100_000


class YamlSyntaxError(Exception):
    def __init__(self, source: str, line: int | None, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}" if line else f"{source}: {message}")
        self.source = source
        self.line = line
        self.message = message


@dataclass
class YamlDocument:
    source: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """The line of the deepest known prefix of ``loc`` (1-based)."""
        probe = tuple(loc)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return self.lines.get((), None)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"unhashable key {key!r}", key_node.start_mark
            ) from exc
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {seen[key]})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)

#: the same loader on libyaml's parser when PyYAML was built with it (the pure-Python parser costs a
#: run tens of milliseconds of CPU per file); a document it refuses is parsed again by the pure-Python
#: one, so errors read the same with and without libyaml
_FastLoader: type[Any] | None = None
if getattr(yaml, "__with_libyaml__", False):
    class _FastUniqueKeyLoader(yaml.CSafeLoader):  # type: ignore[misc,name-defined,unused-ignore]
        """libyaml's parser with the SafeLoader's constructor, refusing duplicate mapping keys."""

    _FastUniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    _FastLoader = _FastUniqueKeyLoader


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            lines[(*loc, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*loc, key), lines)
            # the key's own line wins over its value's (the error is reported on the key)
            lines[(*loc, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*loc, index), lines)


def _check_shape(text: str, source: str, loader: type[Any]) -> None:
    """Refuse a document nested deeper than MAX_DEPTH, larger than MAX_NODES with aliases expanded, or
that contains itself (an alias inside the collection its anchor names: walking it would never end).

    Walks the parser's events (iterative, nothing constructed): each anchored node's expanded size is
    remembered, an alias counts that size again.
    """
    sizes: dict[str, int] = {}
    stack: list[tuple[int, str | None]] = []  # (nodes so far in the open collection, its anchor)
    total = 0
    for event in yaml.parse(text, Loader=loader):
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= MAX_DEPTH:
                raise YamlSyntaxError(source, line, f"nesting deeper than {MAX_DEPTH} levels")
            stack.append((0, event.anchor))
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            count, anchor = stack.pop()
            size = count + 1
        elif isinstance(event, yaml.ScalarEvent):
            size, anchor = 1, event.anchor
        elif isinstance(event, yaml.AliasEvent):
            if any(event.anchor == open_anchor for _, open_anchor in stack):
                raise YamlSyntaxError(source, line, f"alias *{event.anchor} inside the value it names "
                                                    "(a document that contains itself)")
            size, anchor = sizes.get(str(event.anchor), 1), None
        else:
            continue
        if anchor is not None:
            sizes[anchor] = size
        if stack:
            stack[-1] = (stack[-1][0] + size, stack[-1][1])
        else:
            total += size
        if total + sum(count for count, _ in stack) > MAX_NODES:
            raise YamlSyntaxError(source, line, f"more than {MAX_NODES} values once aliases are expanded "
                                                "(an alias bomb?)")


def parse_yaml(text: str, source: str) -> YamlDocument:
    """Parse one YAML document; raise :class:`YamlSyntaxError` with the line on failure."""
    if len(text) > MAX_FILE_BYTES:
        raise YamlSyntaxError(source, None, f"larger than {MAX_FILE_BYTES // 1024} KiB")
    if _FastLoader is not None:
        try:
            return _parse_with(_FastLoader, text, source)
        except yaml.YAMLError:
            pass  # said below, as the pure-Python parser words it
    try:
        return _parse_with(_UniqueKeyLoader, text, source)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        if exc.context and exc.context not in problem:
            problem = f"{exc.context}: {problem}"
        raise YamlSyntaxError(source, line, problem) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(source, None, str(exc)) from exc


def _parse_with(loader_class: type[Any], text: str, source: str) -> YamlDocument:
    """The shape checked on the event stream, then one parse: the node tree (for the lines) and the data
    constructed from it."""
    _check_shape(text, source, loader_class)
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return YamlDocument(source=source, data=data, lines=lines)


def read_regular_file(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (:func:`es_doctor.files.read_regular_file`:
    a FIFO, socket or device refused at once); YamlSyntaxError naming the file otherwise."""
    from es_doctor.files import RefusedFileError
    from es_doctor.files import read_regular_file as read

    try:
        return read(path, limit)
    except RefusedFileError as exc:
        raise YamlSyntaxError(str(path), None, exc.why) from None


def load_yaml_file(path: Path) -> YamlDocument:
    data = read_regular_file(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlSyntaxError(str(path), None, f"not UTF-8 text: {exc}") from exc
    return parse_yaml(text, str(path))
