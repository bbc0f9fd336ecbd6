"""``es-doctor fix <runbook-id | finding-id> [--param k=v] [--dry-run] [--yes] [--all]``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from es_doctor.cli import complete
from es_doctor.cli.common import ConfigOpt, TargetOpt, load, make_engine
from es_doctor.cli.output import line_printer
from es_doctor.errors import EsDoctorError, ExitStatus, UsageError

if TYPE_CHECKING:
    from es_doctor.config import LoadedConfig
    from es_doctor.findings import Report
    from es_doctor.runbooks.engine import FixResult, Plan, PlannedStep
    from es_doctor.runbooks.model import Runbook

#: the order --all applies runbooks in: dependencies and containers before what runs on them
CLASS_ORDER = ("deploy", "startup", "vectors", "inter-manager", "performance", "monitoring")


def _runbooks(loaded: LoadedConfig, errors: list[Any] | None = None) -> dict[str, Runbook]:
    """Every runbook; a malformed user runbook is reported on stderr and skipped (collected in ``errors``)."""
    from es_doctor.runbooks.loader import load_runbooks

    dirs = [Path(d).expanduser() for d in loaded.config.runbook_dirs]
    found = load_runbooks(dirs, tolerant=True)
    for error in found.errors:
        typer.echo(f"es-doctor: warning: skipped a malformed runbook: {error.message}", err=True)
    if errors is not None:
        errors.extend(found.errors)
    return dict(found.runbooks)


def _diagnose(loaded: LoadedConfig, check_ids: list[str] | None = None) -> Report:
    """The checks (all of them by default) as ``diagnose`` runs them: same kept scrapes (the same metrics
    window), same audit log, commands printed for the same target and config."""
    from es_doctor.prescribe import printed_config
    from es_doctor.runner import diagnose

    state_dir = Path(loaded.config.state_dir).expanduser()
    return diagnose(loaded.target, loaded.target_name, check_ids or [], scrapes_dir=state_dir / "scrapes",
                    config=printed_config(loaded), audit_log=Path(loaded.config.audit_log).expanduser())


def resolve(ident: str, runbooks: dict[str, Runbook], loaded: LoadedConfig) -> tuple[Runbook, dict[str, str]] | None:
    """A runbook id, or a finding (check) id → the runbook (and parameters) that cures it *now*.

    For a finding, its check runs again with the checks of what may cause it, and the cure is the one
    the report prints for it (es_doctor.cures given the cause found; a consequence's is its root's).
    None when the finding is fine."""
    import difflib

    if ident in runbooks:
        return runbooks[ident], {}
    from es_doctor import causality, cures
    from es_doctor.checks.registry import load_all
    from es_doctor.findings import Status

    checks = load_all()
    if ident not in checks:
        near = difflib.get_close_matches(ident, [*runbooks, *checks], n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else "; see: es-doctor runbooks list, es-doctor checks"
        raise UsageError(f"no runbook or finding {ident!r}{hint}")
    related = [c for c in causality.CAUSED_BY.get(ident, ()) if c in checks]
    if ident == "monitoring.alerts":  # an alert is read beside the live check it watches
        related += [c for c in cures.CURES if c in checks and c != ident]
    report = _diagnose(loaded, [ident, *related])
    finding = next(f for f in report.findings if f.id == ident)
    typer.echo(f"{ident}: {finding.status.value}: {finding.summary}")
    if finding.status in (Status.OK, Status.SKIP):
        typer.echo("nothing to fix")
        return None
    root = next((f for f in report.findings if f.id == finding.consequence_of), None)
    if root is not None:
        typer.echo(f"{ident} is a consequence of {root.id} ({root.status.value}: {root.summary}): curing the cause")
        finding = root
    if finding.runbook is None:
        if finding.escalate_command:
            why = f"no runbook cures it on target {loaded.target_name}: {finding.escalate_command}"
        elif finding.fix_command():
            why = f"its cure is not a runbook here: {finding.fix_command()}"
        else:
            why = "es-doctor cannot tell what is wrong, so it applies no runbook"
        raise NoCureError(f"{finding.id}: {why}")
    if finding.runbook not in runbooks:
        raise NoCureError(f"{finding.id}: its cure {finding.runbook} is not among the loaded runbooks")
    printed = finding.fix_command() or ""
    if " fix " not in f" {printed} ":  # the target cannot run the runbook: the plan says REFUSED, then this
        INSTEAD[finding.runbook] = finding.next_command() or ""
    return runbooks[finding.runbook], dict(finding.runbook_params)


#: runbook → the command printed instead of it for the finding being fixed (the target cannot run it)
INSTEAD: dict[str, str] = {}


class NoCureError(Exception):
    """A finding that no loaded runbook cures (its message says what to do instead)."""


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param expects KEY=VALUE, not {pair!r}")
        out[key.strip()] = value
    return out


def print_plan(the_plan: Plan, echo: Any) -> None:
    """The plan, secrets masked (params under secret-like names, URL/DSN passwords) and control characters removed."""
    from es_doctor.findings import words
    from es_doctor.secrets import clean, mask_data

    raw_echo = echo
    echo = lambda text: raw_echo(clean(text))  # noqa: E731
    rb = the_plan.runbook
    flags = [f for f, on in (("destructive", the_plan.destructive),
                             ("needs maintenance mode", rb.flags.needs_maintenance)) if on]
    echo(f"Plan: {rb.id} - {rb.title} (target {the_plan.target_name})" + (f" [{', '.join(flags)}]" if flags else ""))
    if rb.requires:
        echo("  requires: " + ", ".join(rb.requires))
    for reason in the_plan.missing:
        echo(f"  REFUSED: target {the_plan.target_name} {reason}")
    if the_plan.params:
        echo("  params: " + ", ".join(f"{k}={words(v)}" for k, v in mask_data(the_plan.params).items()))
    if the_plan.preconditions:
        echo("  before any change, check:")
        for planned in the_plan.preconditions:
            echo(f"    - {planned.step.name}: {planned.description}{_condition(planned)}")
    for n, planned in enumerate(the_plan.steps, start=1):
        mark = " (destructive)" if planned.destructive else ""
        echo(f"  {n}. {planned.step.name}: {planned.description}{mark}{_condition(planned)}")
    if the_plan.rollback:
        echo("  on failure, roll back:")
        for planned in the_plan.rollback:
            echo(f"    - {planned.step.name}: {planned.description}{_condition(planned)}")
    if the_plan.verify:
        echo("  then verify: " + ", ".join(the_plan.verify))


def _condition(planned: PlannedStep) -> str:
    """A step's ``when:`` in the plan, decided when the parameters decide it."""
    when = planned.step.when
    if not when:
        return ""
    if planned.condition_error:
        return f" when {when} (cannot be evaluated: {planned.condition_error}; the step will fail)"
    if planned.runs is None:
        return f" when {when} (decided by earlier steps)"
    return f" when {when} (true: it runs)" if planned.runs else f" when {when} (false: skipped)"


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        typer.echo(f"{question} [y/N] no (not a terminal; use --yes in scripts)", err=True)
        return False
    return bool(typer.confirm(question, default=False))


def _report(result: FixResult) -> None:
    from es_doctor.runbooks.engine import RunOutcome

    echo = line_printer()
    echo(f"{result.runbook}: {result.outcome.value}" + (f" - {result.message}" if result.message else ""))
    if result.outcome is RunOutcome.REFUSED and INSTEAD.get(result.runbook):
        echo(f"  instead: {INSTEAD[result.runbook]}")
    for finding in result.verify:
        if finding["status"] != "OK":
            echo(f"  still {finding['status']}: {finding['summary']} ({finding['id']})")
            if finding.get("next") and f" fix {result.runbook}" not in finding["next"]:
                echo(f"    next: {finding['next']}")
            elif finding.get("escalate_command"):
                echo(f"    next: {finding['escalate_command']}")


def fix(
    ctx: typer.Context,
    ident: Annotated[str | None, typer.Argument(metavar="RUNBOOK|FINDING",
                                                             autocompletion=complete.runbooks_and_findings,
                                                             help="Runbook id, or a finding id.",
                                                show_default=False)] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", metavar="KEY=VALUE",
                                                    help="Runbook parameter KEY=VALUE.",
                                                    show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before destructive steps.")] = False,
    fix_all: Annotated[bool, typer.Option("--all", help="Plan the runbooks of every current finding.")] = False,
    config: ConfigOpt = None,
    target: TargetOpt = None,
) -> int:
    """Apply a runbook: plan, confirm, act, verify, roll back on failure; all of it audited."""
    from es_doctor.runbooks.engine import RunOutcome, plan

    if (ident is None) == (not fix_all):
        raise UsageError("give a runbook or finding id, or --all")
    loaded = load(ctx, config, target)
    skipped: list[Any] = []
    runbooks = _runbooks(loaded, skipped)
    say = line_printer()  # highlighted on a terminal, plain in a pipe
    engine = make_engine(loaded, confirm=_confirm, say=say)
    if fix_all:
        chosen = _for_findings(loaded, runbooks)
        if not chosen:
            typer.echo("no finding needs a runbook: nothing to fix")
            return int(ExitStatus.OK)
    else:
        assert ident is not None
        try:
            found = resolve(ident, runbooks, loaded)
        except NoCureError as exc:
            typer.echo(str(exc), err=True)
            return int(ExitStatus.WARNING)
        except UsageError as exc:
            if skipped:  # it may be the malformed one: that is the error to show
                raise EsDoctorError(f"{exc.message}; {len(skipped)} runbook file(s) could not be loaded (shown "
                                    "above): fix them, then retry", exit_status=ExitStatus.DATA) from None
            raise
        if found is None:
            return int(ExitStatus.OK)
        chosen = [found]
    worst = ExitStatus.OK
    for runbook, cure_params in chosen:
        params = {**cure_params, **_params(param or [])} if not fix_all else dict(cure_params)
        the_plan = plan(runbook, loaded.target, loaded.target_name, params)
        if ident is not None and ident not in runbooks and not fix_all:
            the_plan.also_verify = [ident]  # FIXED means the finding it was asked to cure is OK
        print_plan(the_plan, say)
        result = engine.run(the_plan, yes=yes, dry_run=dry_run)
        _report(result)
        status = result.outcome.exit_status
        worst = max(worst, status, key=int)
        if result.outcome is RunOutcome.REFUSED and fix_all:
            continue  # the target cannot run this one at all (nothing changed): the others may still cure
        if result.outcome not in (RunOutcome.FIXED, RunOutcome.DONE, RunOutcome.PLANNED):
            break
    return int(worst)


def _for_findings(loaded: LoadedConfig, runbooks: dict[str, Runbook]) -> list[tuple[Runbook, dict[str, str]]]:
    """The cures of the current WARN/CRIT findings that are live and causes: not a consequence (its
    root's cure is planned), not an alert (the live finding it watches is planned, or it is clearing),
    deploy and startup first (one the target cannot run is planned and REFUSED, so the exit says so)."""
    from es_doctor import cures
    from es_doctor.findings import Status

    report = _diagnose(loaded)
    wanted: list[tuple[Runbook, dict[str, str]]] = []
    for finding in report.problems():
        if finding.consequence_of or (finding.cause or "").startswith(cures.ALERT_PREFIX):
            continue
        if finding.status in (Status.WARN, Status.CRIT) and finding.runbook in runbooks:
            rb = runbooks[finding.runbook]
            params = dict(finding.runbook_params)
            required = [n for n, p in rb.params.items() if p.required and p.default is None and n not in params]
            if (rb, params) not in wanted and not required:
                wanted.append((rb, params))
    return sorted(wanted, key=lambda pair: CLASS_ORDER.index(pair[0].check_class)
                  if pair[0].check_class in CLASS_ORDER else 99)
