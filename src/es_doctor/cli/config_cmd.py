"""``es-doctor config show|init|path``."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Annotated

import typer

from es_doctor.cli.common import ConfigOpt, TargetOpt, load
from es_doctor.errors import ConfigError, ExitStatus

config_app = typer.Typer(help="Show or create the configuration.", no_args_is_help=True)


@config_app.command("show")
def show(
    ctx: typer.Context,
    config: ConfigOpt = None,
    target: TargetOpt = None,
    all_targets: Annotated[bool, typer.Option("--all", help="Show every target, not only the selected one.")] = False,
) -> int:
    """Print the effective configuration of a target (env overrides applied), secrets masked."""
    import yaml

    from es_doctor.config import backup_root, load_config
    from es_doctor.secrets import masked_dump

    loaded = load(ctx, config, target)
    data: dict[str, object] = {
        "source": _source(loaded.source, loaded.target_name, loaded.config.targets),
        "target": loaded.target_name,
    }
    overrides = sorted(name for name in os.environ if name.startswith("ES_DOCTOR_") and "__" in name)
    if overrides and not all_targets:
        data["env_overrides"] = overrides
    if all_targets:
        names = list(loaded.config.targets)
        data["targets"] = {name: masked_dump(load_config(loaded.source, name).target) for name in names}
    else:
        data["effective"] = masked_dump(loaded.target)
    data["runbook_dirs"] = loaded.config.runbook_dirs
    data["audit_log"] = str(Path(loaded.config.audit_log).expanduser())
    data["state_dir"] = str(Path(loaded.config.state_dir).expanduser())
    data["backup_dir"] = str(backup_root(loaded.config))
    data["escalation"] = masked_dump(loaded.config.escalation)
    typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=200).rstrip())
    return int(ExitStatus.OK)


def _source(path: str | None, target_name: str, targets: Collection[str]) -> str:
    """Where the shown target comes from: the config file, the running lab's target file, or the defaults."""
    from es_doctor.config import lab_dir

    if target_name not in targets and target_name == "lab":
        lab_file = lab_dir().expanduser() / "target.yaml"
        return f"{lab_file} (the lab's target, written by es-doctor lab up)"
    if path is None:
        return "built-in defaults (no config file found)"
    return path


@config_app.command("init")
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the example.")] = Path("es-doctor.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> int:
    """Write a commented example configuration."""
    from es_doctor.example import EXAMPLE

    if path.exists() and not force:
        raise ConfigError("already exists (use --force to overwrite)", source=str(path))
    path.write_text(EXAMPLE, encoding="utf-8")
    typer.echo(f"wrote {path}")
    return int(ExitStatus.OK)
