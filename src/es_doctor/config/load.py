"""Loading ``es-doctor.yaml``: find the file, validate it (errors name file, line and key), pick the
target, apply ``ES_DOCTOR_*`` overrides."""

from __future__ import annotations

import os
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from es_doctor.config.locations import find_config_file, lab_dir, note_state_dir
from es_doctor.config.settings import Config, LoadedConfig
from es_doctor.config.target import Target
from es_doctor.errors import ConfigError, UnavailableError
from es_doctor.yamlsource import YamlDocument, YamlSyntaxError, load_yaml_file, parse_yaml

ENV_PREFIX = "ES_DOCTOR_"


def _format_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _error_message(error: Any) -> str:
    """A pydantic error as words: a validator's own message without pydantic's "Value error, " prefix."""
    ctx = error.get("ctx") or {}
    if error["type"] == "value_error" and "error" in ctx:
        return str(ctx["error"])
    return str(error["msg"])


def validate_document(doc: YamlDocument, model: type[BaseModel], prefix: tuple[Any, ...] = ()) -> Any:
    """Validate ``doc.data`` against ``model``; one ConfigError naming file, line and key."""
    try:
        return model.model_validate(doc.data if doc.data is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        message = _error_message(first)
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        raise ConfigError(
            message, source=doc.source, line=doc.line_of(prefix + loc), key=_format_loc(prefix + loc)
        ) from exc


def load_config_document(doc: YamlDocument) -> Config:
    result: Config = validate_document(doc, Config)
    return result


def load_lab_target() -> Target | None:
    path = lab_dir() / "target.yaml"
    if not path.is_file():
        return None
    try:
        doc = load_yaml_file(path)
    except YamlSyntaxError as exc:
        raise ConfigError(exc.message, source=exc.source, line=exc.line) from exc
    target: Target = validate_document(doc, Target)
    return target


def _is_text(model: type[BaseModel], path: list[str]) -> bool:
    """Whether the field at ``path`` (lower-case names) of ``model`` holds text: its env value is taken verbatim."""
    current: Any = model
    for part in path:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return False
        current = fields[part].annotation
        if get_origin(current) in (Union, UnionType):  # X | None
            members = [a for a in get_args(current) if a is not type(None)]
            current = members[0] if len(members) == 1 else current
    return current is str


def _coerce_env(raw: str) -> Any:
    """Env values are YAML scalars/flow collections: ``3``, ``true``, ``[a, b]``."""
    try:
        doc = parse_yaml(raw, "<env>")
    except YamlSyntaxError:
        return raw
    return raw if doc.data is None else doc.data


def apply_env_overrides(target: Target, environ: dict[str, str]) -> Target:
    data = target.model_dump()
    reserved = {"CONFIG", "TARGET", "LAB_DIR", "STATE_DIR", "AUDIT_LOG"}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :]
        if key in reserved:
            continue
        path = [part.lower() for part in key.split("__")]
        node: Any = data
        for part in path[:-1]:
            if not isinstance(node, dict) or part not in node:
                raise ConfigError("unknown key", source=f"${name}", key=".".join(path))
            node = node[part]
        if not isinstance(node, dict) or path[-1] not in node:
            raise ConfigError("unknown key", source=f"${name}", key=".".join(path))
        node[path[-1]] = raw if _is_text(Target, path) else _coerce_env(raw)
    try:
        return Target.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        var = ENV_PREFIX + "__".join(str(p).upper() for p in first["loc"])
        raise ConfigError(_error_message(first), source=f"${var}", key=_format_loc(tuple(first["loc"]))) from exc


def load_config(explicit_path: str | None = None, target_name: str | None = None, *,
                env_overrides: bool = True) -> LoadedConfig:
    """The effective configuration for one target. Raises ConfigError, never writes anything.

    ``env_overrides=False`` leaves out the ``ES_DOCTOR_<SECTION>__<KEY>`` overrides (several targets at
    once: an override meant for the selected target must not make every target the same)."""
    path = find_config_file(explicit_path)
    if path is None:
        config = Config()
        source = None
    else:
        try:
            doc = load_yaml_file(path)
        except YamlSyntaxError as exc:
            raise ConfigError(exc.message, source=exc.source, line=exc.line) from exc
        config = load_config_document(doc)
        source = str(path)
    name = target_name or os.environ.get("ES_DOCTOR_TARGET") or config.default_target or next(iter(config.targets),
                                                                                                  "default")
    if name in config.targets:
        target = config.targets[name]
    elif name == "lab":
        lab = load_lab_target()
        if lab is None:
            # not a configuration mistake: the service (the lab) is not there, as EX_UNAVAILABLE says
            raise UnavailableError(
                f"target 'lab' is not running (no {lab_dir() / 'target.yaml'}); start it: es-doctor lab up")
        target = lab
    else:
        known = sorted([*config.targets, "lab"])
        raise ConfigError(f"unknown target '{name}' (known: {', '.join(known)})", source=source)
    audit_given = "audit_log" in config.model_fields_set
    if os.environ.get("ES_DOCTOR_STATE_DIR"):
        config.state_dir = os.environ["ES_DOCTOR_STATE_DIR"]
    if not audit_given:  # the audit log lives in the state dir (the file's or the override) unless put elsewhere
        config.audit_log = str(Path(config.state_dir).expanduser() / "audit.jsonl")
    note_state_dir(config.state_dir)  # crash logs go there too
    if os.environ.get("ES_DOCTOR_AUDIT_LOG"):
        config.audit_log = os.environ["ES_DOCTOR_AUDIT_LOG"]
    if env_overrides:
        target = apply_env_overrides(target, dict(os.environ))
    return LoadedConfig(config=config, source=source, target_name=name, target=target)


def load_targets(explicit_path: str | None, names: list[str], all_targets: bool = False) -> list[LoadedConfig]:
    """Several targets at once (``diagnose -t a -t b``, ``--all-targets``, ``serve``): each loaded like
    :func:`load_config`; with one target the env overrides apply as usual, with several they do not.
    ``all_targets``: every target of the file (plus ``lab`` only when named). Duplicates are dropped."""
    if all_targets:
        first = load_config(explicit_path, names[0] if names else None, env_overrides=False)
        names = [*first.config.targets, *[n for n in names if n not in first.config.targets]]
    unique = list(dict.fromkeys(names))
    if len(unique) <= 1:
        return [load_config(explicit_path, unique[0] if unique else None)]
    return [load_config(explicit_path, name, env_overrides=False) for name in unique]
