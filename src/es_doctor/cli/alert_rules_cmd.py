"""``es-doctor alert-rules``: Prometheus alert rules for the guide's thresholds (or, ``--serve``, over the
series of ``es-doctor serve``)."""

from __future__ import annotations

from typing import Annotated

import typer

from es_doctor.cli.common import ConfigOpt, TargetOpt, load
from es_doctor.errors import ExitStatus, UsageError


def alert_rules(
    ctx: typer.Context,
    serve: Annotated[bool, typer.Option("--serve", help="Rules over es-doctor serve's es_doctor_check_status "
                                        "(one Alertmanager for every stack).")] = False,
    runbook_base_url: Annotated[str | None, typer.Option(
        "--runbook-base-url", metavar="URL", show_default=False,
        help="Where annotations.runbook_url points: URL/RUNBOOK.yaml (URL/ESCALATION.md when no runbook cures "
             "the finding), e.g. your repository's runbooks/ on its web UI; default: the file:// URL of the "
             "shipped runbooks.")] = None,
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

    loaded = load(ctx, config, target)
    try:
        text = render_rules(loaded.target, runbook_base_url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    typer.echo(text.rstrip())
    return int(ExitStatus.OK)
