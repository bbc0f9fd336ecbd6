"""Options shared by commands, and the state the root callback passes down."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import typer

from es_doctor.cli import complete
from es_doctor.errors import UsageError

if TYPE_CHECKING:

    from es_doctor.config import LoadedConfig
    from es_doctor.runbooks.engine import Engine


@dataclass
class State:
    config_path: str | None = None
    #: every ``-t`` given before the command (``es-doctor -t a -t b diagnose``), in order, once each
    targets: list[str] = field(default_factory=list)

    @property
    def target(self) -> str | None:
        """The one target chosen before the command; several are refused (a usage error) here, in a command
        that takes one: only ``diagnose`` and ``serve`` read :attr:`targets`."""
        if len(self.targets) > 1:
            raise UsageError(f"-t was given {len(self.targets)} times ({', '.join(self.targets)}): this command "
                             "takes one target (diagnose and serve take several)")
        return self.targets[0] if self.targets else None


ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", metavar="FILE",
                 help="Config file (else $ES_DOCTOR_CONFIG, ./es-doctor.yaml, user config dir).",
                 show_default=False),
]
TargetOpt = Annotated[
    str | None,
    typer.Option("--target", "-t", metavar="NAME", help="Named target from the config (or 'lab').", show_default=False,
                 autocompletion=complete.targets),
]
TargetsOpt = Annotated[
    list[str] | None,
    typer.Option("--target", "-t", metavar="NAME",
                 help="Named target from the config (or 'lab'); several (repeated) where the command takes "
                 "several (diagnose, serve), else refused.",
                 show_default=False, autocompletion=complete.targets),
]


def duration(option: str, minimum: float = 0.0, maximum: float | None = None) -> Callable[[str], float]:
    """The parser of a duration option (``90s``, ``1m30s``, ``1h30m``, ``500ms``, or seconds): one grammar in
    every command (:func:`es_doctor.units.parse_duration`); below ``minimum`` or above ``maximum``, a usage
    error."""

    def parse(text: str) -> float:
        from es_doctor.units import DurationError, format_duration, parse_duration

        try:
            value = parse_duration(text)
        except DurationError as exc:
            raise typer.BadParameter(str(exc)) from None
        if value < minimum or value <= 0:
            raise typer.BadParameter(f"{text!r} is too short: at least {format_duration(minimum)}"
                                     if minimum else f"{text!r}: must be more than 0")
        if maximum is not None and value > maximum:
            raise typer.BadParameter(f"{text!r} is too long: at most {format_duration(maximum)}")
        return value

    parse.__name__ = option.lstrip("-")
    return parse


def state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def load(ctx: typer.Context, config_path: str | None, target: str | None) -> LoadedConfig:
    from es_doctor.config import load_config

    st = state(ctx)
    return load_config(config_path or st.config_path, target or st.target)


def make_engine(loaded: LoadedConfig, *, confirm: Callable[[str], bool], say: Callable[[str], None]) -> Engine:
    """The one way `fix` and `emergency` build the engine: the same audit log, state dir and backup
    directory (``backup_dir``, else ``state_dir/backups``) whichever command runs a runbook."""
    from pathlib import Path

    from es_doctor.config import backup_root
    from es_doctor.prescribe import printed_config
    from es_doctor.runbooks.audit import AuditLog
    from es_doctor.runbooks.engine import Engine
    from es_doctor.secrets import secret_values

    audit = AuditLog(Path(loaded.config.audit_log), secret_values(loaded.target))
    return Engine(loaded.target, loaded.target_name, audit, Path(loaded.config.state_dir), confirm=confirm, say=say,
                  backup_root=backup_root(loaded.config), printed_config=printed_config(loaded))
