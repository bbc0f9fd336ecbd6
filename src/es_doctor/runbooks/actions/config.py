"""The service's configuration file and environment: ``config.*``, ``env.*``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import Field, JsonValue

from es_doctor.findings import words
from es_doctor.runbooks.actions.base import (
    ActionContext,
    ActionError,
    Inputs,
    action,
    stamp,
    unwrap,
)
from es_doctor.secrets import MASK, is_secret_key


class ConfigFileInputs(Inputs):
    file: str | None = Field(default=None, description="the config file (default: the target's "
                             "service.config_file)")


class ConfigSetInputs(ConfigFileInputs):
    key: str = Field(min_length=1, description="a dotted key (server.workers)")
    value: JsonValue = Field(description="the value to set (YAML types are kept)")


class ConfigRestoreInputs(ConfigFileInputs):
    source: str | None = Field(default=None, alias="from", description="the copy to restore from (default: the "
                               "newest copy next to the file, only when the file is missing)")


class EnvInputs(Inputs):
    container: str = Field(min_length=1, description="the container's name")


class EnvRequireInputs(EnvInputs):
    names: list[str] = Field(min_length=1, description="variables that must be set (and not empty)")


class EnvSetInputs(EnvInputs):
    env: dict[str, str | int | float | bool] = Field(min_length=1, description="variables to set")


class EnvRestoreInputs(EnvInputs):
    env: dict[str, str | int | float | bool | None] = Field(
        min_length=1, description="each variable's value to put back (null: unset it): env.set's previous output")


def _config_file(inputs: ConfigFileInputs, ctx: ActionContext) -> Path:
    path = inputs.file or ctx.target.service.config_file
    if not path:
        raise ActionError("no config file on this host (set service.config_file in the target)")
    return Path(str(path)).expanduser()


def _plain(value: Any) -> Any:
    """A ruamel.yaml value as plain data (for step outputs and the audit log)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return str(value)


def _real_file(path: Path) -> Path:
    """The file a config path names: a symlink's target (written through, the link is kept), which
    must be a regular file; ActionError otherwise."""
    import stat

    try:
        real = path.resolve(strict=True)
        mode = real.stat().st_mode
    except (OSError, RuntimeError) as exc:
        raise ActionError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not stat.S_ISREG(mode):
        raise ActionError(f"{path} is not a regular file (nor a link to one): refused")
    return real


def _keep_copy(path: Path, raw: bytes, ctx: ActionContext) -> Path:
    """An exact copy of ``raw`` (the file before the step) in the run's directory, 0600."""
    from es_doctor.files import create_private

    when = stamp()
    for attempt in range(100):  # several edits in one second each keep their own copy
        backup = ctx.work_dir / f"{path.name}.{when}{f'-{attempt}' if attempt else ''}.bak"
        try:
            fd = create_private(backup)  # the config may hold secrets: 0600, never through a planted link
            break
        except FileExistsError:
            continue
    else:
        raise ActionError(f"cannot name a backup copy of {path} in {ctx.work_dir}")
    with os.fdopen(fd, "wb") as copy:
        copy.write(raw)
    return backup


@action("config.set",
        lambda i: f"set {i.get('key')} = {words(i.get('value'))} in the service's config.yaml (backup kept)",
        ConfigSetInputs)
def config_set(inputs: ConfigSetInputs, ctx: ActionContext) -> dict[str, Any]:
    """Edit one key: the value's characters are replaced in place (every other byte of the file is
    kept: comments, long lines, quoting), else a round-trip YAML dump; mode and owner are kept; the
    file is replaced atomically (written beside, fsync, rename). A symlinked config is written through
    to its target; the link stays. An exact copy of the file before the step is kept in the run's
    directory (``backup``) whether or not the value changes: ``config.restore from:`` puts those bytes back."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from es_doctor.files import replace_atomically
    from es_doctor.yamledit import EditError, roundtrip_set, set_scalar
    from es_doctor.yamlsource import YamlSyntaxError, read_regular_file

    path, key = _config_file(inputs, ctx), inputs.key
    value = inputs.value
    real = _real_file(path)
    try:
        raw = read_regular_file(real, 16 * 1024 * 1024)
        text = raw.decode("utf-8")
        data = YAML(typ="rt").load(text)
    except (YamlSyntaxError, YAMLError, UnicodeDecodeError) as exc:
        raise ActionError(f"cannot read {path}: {getattr(exc, 'message', None) or exc}") from None
    if data is not None and not isinstance(data, dict):
        raise ActionError(f"{path} is not a YAML mapping")
    parts = key.split(".")
    node: Any = data or {}
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is not None and not isinstance(node, dict):
            raise ActionError(f"{key}: {part} is not a mapping in {path}")
    old = _plain(node.get(parts[-1])) if isinstance(node, dict) else None
    backup = _keep_copy(path, raw, ctx)
    out = {"file": str(path), "key": key, "old": old, "new": value, "backup": str(backup)}
    if real != path.absolute():
        out["written"] = str(real)
    if old == value:
        return {**out, "changed": False}
    try:
        new_text = set_scalar(text, parts, value)
        if new_text is None:
            new_text = roundtrip_set(text, parts, value)
    except (EditError, YAMLError) as exc:
        raise ActionError(f"cannot set {key} in {path}: {exc}") from None
    try:
        replace_atomically(real, new_text)
    except OSError as exc:
        raise ActionError(f"cannot write {path}: {exc.strerror or exc}") from None
    return {**out, "changed": True}


@action("config.restore", lambda i: f"restore the service's config.yaml from {i.get('from') or 'its newest copy'}",
        ConfigRestoreInputs)
def config_restore(inputs: ConfigRestoreInputs, ctx: ActionContext) -> dict[str, Any]:
    """Put a copy's exact bytes back (a symlinked config is written through to its target)."""
    path = _config_file(inputs, ctx)
    if path.is_file() and not inputs.source:
        return {"file": str(path), "result": "present"}
    if inputs.source:
        source = Path(inputs.source)
    else:
        copies = sorted((p for p in path.parent.glob(path.name + ".*") if p.is_file()),
                        key=lambda p: p.stat().st_mtime, reverse=True)
        if not copies:
            raise ActionError(f"{path} is missing and no copy of it ({path.name}.*) is next to it")
        source = copies[0]
    from es_doctor.files import replace_atomically

    try:
        if path.exists():  # keep the file's own mode and owner (a private backup copy is 0600)
            real = _real_file(path)
            if real.read_bytes() == source.read_bytes():
                return {"file": str(path), "restored_from": str(source), "result": "already the same bytes"}
            replace_atomically(real, source.read_bytes().decode("utf-8"))
        else:  # a new file, created like any file the deployment writes (umask)
            shutil.copyfile(source, path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ActionError(f"cannot restore {path} from {source}: {getattr(exc, 'strerror', None) or exc}") from None
    return {"file": str(path), "restored_from": str(source)}


# --------------------------------------------------------------------------- env


def _env(ctx: ActionContext, container: str) -> dict[str, str]:
    info = unwrap(ctx.docker().container(container), f"container {container}")
    return dict(info.env)


@action("env.show", lambda i: f"show the environment of {i.get('container')} (secrets masked)", EnvInputs)
def env_show(inputs: EnvInputs, ctx: ActionContext) -> dict[str, Any]:
    env = _env(ctx, inputs.container)
    shown = {k: (MASK if is_secret_key(k) or k.upper().endswith("KEY") else v) for k, v in sorted(env.items())}
    ctx.say("\n".join(f"{k}={v}" for k, v in shown.items()))
    return {"env": shown}


@action("env.require", lambda i: f"require {words(i.get('names'))} in the environment of {i.get('container')}",
        EnvRequireInputs)
def env_require(inputs: EnvRequireInputs, ctx: ActionContext) -> dict[str, Any]:
    env = _env(ctx, inputs.container)
    missing = [n for n in inputs.names if not env.get(n)]
    if missing:
        raise ActionError(f"not set: {', '.join(missing)}")
    return {"present": True}


@action("env.set", lambda i: f"recreate {i.get('container')} with {words(i.get('env'))}", EnvSetInputs,
        destructive=True)
def env_set(inputs: EnvSetInputs, ctx: ActionContext) -> dict[str, Any]:
    """``previous`` holds each variable's value before the step (None: it was not set), for ``env.restore``."""
    name = inputs.container
    wanted = {k: str(v) for k, v in inputs.env.items()}
    current = _env(ctx, name)
    previous = {k: current.get(k) for k in wanted}
    if all(current.get(k) == v for k, v in wanted.items()):
        return {"container": name, "result": "already set", "previous": previous}
    return {"container": name, "result": unwrap(ctx.docker().recreate(name, env_set=wanted), f"recreate {name}"),
            "previous": previous}


@action("env.restore", lambda i: f"recreate {i.get('container')} with the environment it had: {words(i.get('env'))} "
                                 "(null: unset)", EnvRestoreInputs, destructive=True)
def env_restore(inputs: EnvRestoreInputs, ctx: ActionContext) -> dict[str, Any]:
    """Set each variable of ``env`` back to its value, unset those that are null (``env.set``'s ``previous``)."""
    name = inputs.container
    wanted = inputs.env
    values = {str(k): str(v) for k, v in wanted.items() if v is not None}
    unset = [str(k) for k, v in wanted.items() if v is None]
    current = _env(ctx, name)
    if all(current.get(k) == v for k, v in values.items()) and not any(k in current for k in unset):
        return {"container": name, "result": "already as it was"}
    return {"container": name, "result": unwrap(ctx.docker().recreate(name, env_set=values, env_unset=unset),
                                                f"recreate {name}")}
