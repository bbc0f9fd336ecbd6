"""``es-doctor alert-rules``: Prometheus alert rules for the guide's thresholds."""

from __future__ import annotations

import typer

from es_doctor.cli.common import ConfigOpt, TargetOpt, load
from es_doctor.errors import ExitStatus


def alert_rules(ctx: typer.Context, config: ConfigOpt = None, target: TargetOpt = None) -> int:
    """Print Prometheus alert rules for the target's thresholds (the guide's 'Seuils d'Alerte')."""
    from es_doctor.alert_rules import render_rules

    typer.echo(render_rules(load(ctx, config, target).target).rstrip())
    return int(ExitStatus.OK)
