"""``es-doctor dashboard``: the guide's recommended Grafana dashboard, built for the target."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from es_doctor.cli.common import ConfigOpt, TargetOpt, load
from es_doctor.errors import ExitStatus, UsageError


def dashboard(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option("--output", "--out", "-o", metavar="FILE",
                                             help="Write the JSON to this file (atomically, "
                                             "0644) instead of standard output; '-' is standard output.")] = None,
    config: ConfigOpt = None,
    target: TargetOpt = None,
) -> int:
    """Print a Grafana dashboard for the target: the guide's eight widgets (service status, API p50/p95/p99,
    error rate 1 h/24 h, memory/CPU, vector ops/s, manager grid, event bus, database connections) and the
    uptime, over the target's metric names, with its thresholds and each panel's es-doctor cure.

    \b
    Examples:
      es-doctor dashboard > email-sender.json              # import it in Grafana (Dashboards > Import)
      es-doctor -t production dashboard --out /var/lib/grafana/dashboards/email-sender.json
      es-doctor dashboard -t lab | jq '.panels[].targets[].expr'   # every PromQL query
    """
    loaded = load(ctx, config, target)
    if out is not None and str(out) != "-" and out.is_dir():
        raise UsageError(f"--out {out} is a directory: name the file to write")
    from es_doctor.dashboard import build, to_json, write_public

    board = build(loaded.target, loaded.target_name)
    text = to_json(board)
    if out is None or str(out) == "-":
        typer.echo(text, nl=False)
        return int(ExitStatus.OK)
    write_public(out, text)
    typer.echo(f"wrote {out}: Grafana dashboard {board.uid} ({len(board.panels or [])} panels, target "
               f"{loaded.target_name})", err=True)
    return int(ExitStatus.OK)
