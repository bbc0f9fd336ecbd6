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
             "the finding), e.g. your repository's runbooks/ on its web UI; an http(s):// URL (a local path is "
             "refused). Without it the rules carry no runbook_url.")] = None,
    target_label: Annotated[str | None, typer.Option(
        "--target-label", metavar="NAME", show_default=False,
        help="Add the label target=NAME to every rule (the guide's rules), so each alert names the es-doctor "
             "target it is about (what an Alertmanager receiver needs); NAME is usually the target's name.")] = None,
    config: ConfigOpt = None,
    target: TargetOpt = None,
) -> int:
    """Print Prometheus alert rules for the target's thresholds (the guide's 'Seuils d'Alerte')."""
    from es_doctor.alert_rules import RuleOptions, check_runbook_base_url

    try:
        base = check_runbook_base_url(runbook_base_url) if runbook_base_url is not None else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if target_label is not None and not target_label.strip():
        raise UsageError("--target-label needs a name")
    if base is None:
        typer.echo("es-doctor: no --runbook-base-url: the rules carry no runbook_url annotation", err=True)
    if serve:
        from es_doctor.serve.fleet import render_serve_rules

        loaded = load(ctx, config, target)
        typer.echo(render_serve_rules(loaded.config.serve.interval_s, base).rstrip())
        return int(ExitStatus.OK)
    from es_doctor.alert_rules import render_rules

    loaded = load(ctx, config, target)
    text = render_rules(loaded.target, RuleOptions(loaded.target_name, base, target_label))
    typer.echo(text.rstrip())
    return int(ExitStatus.OK)
