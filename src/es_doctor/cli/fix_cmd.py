"""``es-doctor fix <runbook-id | finding-id> [--param k=v] [--dry-run] [--yes] [--all]``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from es_doctor.cli.common import ConfigOpt, TargetOpt, load
from es_doctor.errors import ExitStatus, UsageError

if TYPE_CHECKING:
    from es_doctor.config import LoadedConfig
    from es_doctor.runbooks.engine import FixResult, Plan
    from es_doctor.runbooks.model import Runbook

#: the order --all applies runbooks in: dependencies and containers before what runs on them
CLASS_ORDER = ("deploy", "startup", "vectors", "inter-manager", "performance", "monitoring")


def _runbooks(loaded: LoadedConfig) -> dict[str, Runbook]:
    from es_doctor.runbooks.loader import load_runbooks

    dirs = [Path(d).expanduser() for d in loaded.config.runbook_dirs]
    return dict(load_runbooks(dirs).runbooks)


def resolve(ident: str, runbooks: dict[str, Runbook]) -> Runbook:
    """A runbook id, or a finding (check) id → the runbook that cures it."""
    import difflib

    if ident in runbooks:
        return runbooks[ident]
    from es_doctor.checks.registry import load_all

    checks = load_all()
    cure = checks[ident].runbook if ident in checks else None
    if cure is not None and cure in runbooks:
        return runbooks[cure]
    curing = [rb for rb in runbooks.values() if ident in rb.cures]
    if curing:
        return curing[0]
    near = difflib.get_close_matches(ident, [*runbooks, *checks], n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(near)}?" if near else "; see: es-doctor runbooks list"
    raise UsageError(f"no runbook or finding {ident!r}{hint}")


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param expects KEY=VALUE, not {pair!r}")
        out[key.strip()] = value
    return out


def print_plan(the_plan: Plan, echo: Any) -> None:
    rb = the_plan.runbook
    flags = [f for f, on in (("destructive", the_plan.destructive),
                             ("needs maintenance mode", rb.flags.needs_maintenance)) if on]
    echo(f"Plan: {rb.id} - {rb.title} (target {the_plan.target_name})" + (f" [{', '.join(flags)}]" if flags else ""))
    if rb.requires:
        echo("  requires: " + ", ".join(rb.requires))
    for reason in the_plan.missing:
        echo(f"  REFUSED: target {the_plan.target_name} {reason}")
    if the_plan.params:
        echo("  params: " + ", ".join(f"{k}={v!r}" for k, v in the_plan.params.items()))
    for n, planned in enumerate(the_plan.steps, start=1):
        mark = " (destructive)" if planned.destructive else ""
        cond = f" when {planned.step.when}" if planned.step.when else ""
        echo(f"  {n}. {planned.step.name}: {planned.description}{mark}{cond}")
    if the_plan.rollback:
        echo("  on failure, roll back: " + ", ".join(p.step.name for p in the_plan.rollback))
    if rb.verify:
        echo("  then verify: " + ", ".join(rb.verify))


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        typer.echo(f"{question} [y/N] no (not a terminal; use --yes in scripts)", err=True)
        return False
    return bool(typer.confirm(question, default=False))


def _report(result: FixResult) -> None:
    typer.echo(f"{result.runbook}: {result.outcome.value}" + (f" - {result.message}" if result.message else ""))
    for finding in result.verify:
        if finding["status"] != "OK":
            typer.echo(f"  still {finding['status']}: {finding['summary']} ({finding['id']})")


def fix(
    ctx: typer.Context,
    ident: Annotated[str | None, typer.Argument(metavar="RUNBOOK|FINDING", help="Runbook id, or a finding id.",
                                                show_default=False)] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Runbook parameter KEY=VALUE.",
                                                    show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before destructive steps.")] = False,
    fix_all: Annotated[bool, typer.Option("--all", help="Plan the runbooks of every current finding.")] = False,
    config: ConfigOpt = None,
    target: TargetOpt = None,
) -> int:
    """Apply a runbook: plan, confirm, act, verify, roll back on failure; all of it audited."""
    from es_doctor.runbooks.audit import AuditLog
    from es_doctor.runbooks.engine import Engine, Outcome, plan

    if (ident is None) == (not fix_all):
        raise UsageError("give a runbook or finding id, or --all")
    loaded = load(ctx, config, target)
    runbooks = _runbooks(loaded)
    from es_doctor.config import secret_values

    audit = AuditLog(Path(loaded.config.audit_log), secret_values(loaded.target))
    engine = Engine(loaded.target, loaded.target_name, audit, Path(loaded.config.state_dir), confirm=_confirm,
                    say=typer.echo)
    if fix_all:
        chosen = _for_findings(loaded, runbooks)
        if not chosen:
            typer.echo("no finding needs a runbook: nothing to fix")
            return int(ExitStatus.OK)
    else:
        assert ident is not None
        chosen = [resolve(ident, runbooks)]
    worst = ExitStatus.OK
    for runbook in chosen:
        the_plan = plan(runbook, loaded.target, loaded.target_name, _params(param or []) if not fix_all else {})
        print_plan(the_plan, typer.echo)
        result = engine.run(the_plan, yes=yes, dry_run=dry_run)
        _report(result)
        status = result.outcome.exit_status
        worst = max(worst, status, key=int)
        if result.outcome is Outcome.REFUSED and fix_all:
            continue  # the target cannot run this one at all (nothing changed): the others may still cure
        if result.outcome not in (Outcome.FIXED, Outcome.DONE, Outcome.PLANNED):
            break
    return int(worst)


def _for_findings(loaded: LoadedConfig, runbooks: dict[str, Runbook]) -> list[Runbook]:
    from es_doctor.checks.context import CheckContext
    from es_doctor.checks.registry import load_all
    from es_doctor.findings import Status
    from es_doctor.runner import run_checks

    report = run_checks(list(load_all().values()), CheckContext(loaded.target, loaded.target_name))
    wanted: list[Runbook] = []
    for finding in report.findings:
        if finding.status in (Status.WARN, Status.CRIT) and finding.runbook in runbooks:
            rb = runbooks[finding.runbook]
            required = [n for n, p in rb.params.items() if p.required and p.default is None]
            if rb not in wanted and not required:
                wanted.append(rb)
    return sorted(wanted, key=lambda rb: CLASS_ORDER.index(rb.check_class) if rb.check_class in CLASS_ORDER else 99)
