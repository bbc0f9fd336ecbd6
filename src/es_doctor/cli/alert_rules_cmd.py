"""``es-doctor alert-rules``: Prometheus alert rules for the guide's thresholds (or, ``--serve``, over the
series of ``es-doctor serve``)."""

from __future__ import annotations

from typing import Annotated

import typer

from es_doctor.cli.common import ConfigOpt, TargetOpt, load
from es_doctor.errors import ExitStatus


def alert_rules(
    ctx: typer.Context,
    serve: Annotated[bool, typer.Option("--serve", help="Rules over es-doctor serve's es_doctor_check_status "
                                        "(one Alertmanager for every stack).")] = False,
    config: ConfigOpt = None,
    target: TargetOpt = None,
) -> int:
    """Print Prometheus alert rules for the target's thresholds (the guide's 'Seuils d'Alerte')."""
    if serve:
        from es_doctor.serve.fleet import render_serve_rules

        loaded = load(ctx, config, target)
        typer.echo(render_serve_rules(loaded.config.serve.interval_s).rstrip())
        return int(ExitStatus.OK)
    from es_doctor.alert_rules import render_rules

    typer.echo(render_rules(load(ctx, config, target).target).rstrip())
    return int(ExitStatus.OK)
