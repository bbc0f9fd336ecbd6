"""Runs checks concurrently, each under its own timeout, all under one overall deadline.

A check whose prerequisite did not pass (OK or WARN) is SKIP with the reason. Checks run in
daemon threads: one that overruns its timeout is reported UNKNOWN and abandoned, so the run
always ends within its deadline.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path

from es_doctor import __version__, cures
from es_doctor.checks.context import CheckContext
from es_doctor.checks.registry import CheckSpec, Outcome, ev, load_all
from es_doctor.config import Target
from es_doctor.findings import Finding, Report, Status, sanitize
from es_doctor.prescribe import evidence_params, prescribe
from es_doctor.probes.session import preload, sdk_modules
from es_doctor.secrets import secret_values, unset_secrets

PASSING = (Status.OK, Status.WARN)
#: secret fields the checks need, by component: when one names an unset env: variable and a check of the
#: component fails, the finding is UNKNOWN with a configuration message naming it (not a restart hint);
#: a check that passes without it (no auth, ~/.pgpass) stays as it is
NEEDED_SECRETS = {"postgres.dsn": "postgres", "postgres.password": "postgres", "qdrant.api_key": "qdrant",
                  "service.api_key": "service"}


def unset_needed_secrets(ctx: CheckContext) -> dict[str, list[tuple[str, str]]]:
    """component → [(field, variable)] of the secrets its checks need that name an unset variable."""
    out: dict[str, list[tuple[str, str]]] = {}
    for where, variable in unset_secrets(ctx.target):
        component = NEEDED_SECRETS.get(where)
        if component:
            out.setdefault(component, []).append((where, variable))
    return out


def with_prerequisites(selected: Iterable[CheckSpec], registry: dict[str, CheckSpec]) -> list[CheckSpec]:
    """The selected checks plus every check they depend on, in registry order."""
    wanted: set[str] = set()
    stack = [spec.id for spec in selected]
    while stack:
        current = stack.pop()
        if current in wanted:
            continue
        wanted.add(current)
        stack.extend(registry[current].requires)
    return [spec for spec in registry.values() if spec.id in wanted]


def _finding(spec: CheckSpec, outcome: Outcome, duration_ms: float) -> Finding:
    problem = outcome.status in (Status.WARN, Status.CRIT, Status.UNKNOWN)
    remedy = cures.remedy_for(spec.id, outcome.cause) if problem else None
    params = evidence_params(remedy, {e.name: e.value for e in outcome.evidence}) if remedy else {}
    # an UNKNOWN finding with no cause of its own names no cure: nothing says what is wrong
    if outcome.status is Status.UNKNOWN and outcome.cause is None:
        remedy = None
    escalate = cures.escalation_for(spec.id, outcome.cause) if problem and remedy is None and \
        outcome.status is not Status.UNKNOWN else None
    return Finding(
        id=spec.id,
        check_class=spec.check_class,
        status=outcome.status,
        summary=outcome.summary,
        evidence=outcome.evidence,
        runbook=remedy.runbook if remedy else None,
        runbook_params=params,
        cause=outcome.cause if problem else None,
        escalate=escalate,
        graded=outcome.graded,
        duration_ms=round(duration_ms, 1),
        description=spec.description,
    )


class _Job:
    def __init__(self, spec: CheckSpec) -> None:
        self.spec = spec
        self.done = threading.Event()
        self.finding: Finding | None = None
        self.started = 0.0


def _run_one(job: _Job, ctx: CheckContext, jobs: dict[str, _Job], timeout: float, deadline: float,
             unset: dict[str, list[tuple[str, str]]] | None = None) -> None:
    spec = job.spec
    for required in spec.requires:
        prerequisite = jobs[required]
        prerequisite.done.wait(max(0.0, deadline - time.monotonic()))
        pre = prerequisite.finding
        if pre is None or pre.status not in PASSING:
            if pre is not None and pre.status is Status.SKIP:
                summary = pre.summary  # already names the root cause
            else:
                why = "did not finish" if pre is None else f"is {pre.status.value}: {pre.summary}"
                summary = f"skipped: prerequisite {required} {why}"
            job.finding = _finding(spec, Outcome(Status.SKIP, summary), 0.0)
            job.done.set()
            return
    for component in spec.components:
        present, reason = ctx.target.is_present(component)
        if not present:
            job.finding = _finding(spec, Outcome(Status.SKIP, f"skipped: {reason}"), 0.0)
            job.done.set()
            return
    job.started = time.monotonic()
    result: list[Finding] = []

    def body() -> None:
        begin = time.perf_counter()
        try:
            outcome = spec.fn(ctx)
        except Exception as exc:  # noqa: BLE001 - a buggy check becomes a finding, never a traceback
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            outcome = Outcome(Status.UNKNOWN, f"check failed: {type(exc).__name__}: {exc}",
                              [ev("where", f"{frame.filename}:{frame.lineno}")])
        result.append(_finding(spec, outcome, (time.perf_counter() - begin) * 1000))

    worker = threading.Thread(target=body, name=f"check:{spec.id}", daemon=True)
    worker.start()
    worker.join(max(0.0, min(timeout, deadline - time.monotonic())))
    if result:
        job.finding = result[0]
    else:
        elapsed = (time.monotonic() - job.started) * 1000
        late = time.monotonic() >= deadline - 0.01
        reason = "the overall deadline passed" if late else f"timed out after {timeout:g}s"
        job.finding = _finding(spec, Outcome(Status.UNKNOWN, f"no result: {reason}",
                                             [ev("timeout", timeout, unit="s")]), elapsed)
    missing = [item for component in spec.components for item in (unset or {}).get(component, [])]
    if missing and job.finding.status not in (Status.OK, Status.SKIP):
        job.finding = _unset_secret_finding(spec, job.finding, missing)
    job.done.set()


def _unset_secret_finding(spec: CheckSpec, failed: Finding, missing: list[tuple[str, str]]) -> Finding:
    """A check that failed while a secret of its component names an unset variable: that is the cause to
    show (a configuration problem, no runbook), with what the check saw kept as evidence."""
    names = ", ".join(f"{where} is env:{variable}" for where, variable in missing)
    outcome = Outcome(Status.UNKNOWN, f"configuration: {names}, and it is not set in es-doctor's environment "
                                      "(export it, or fix the target)",
                      [ev("unset", [variable for _where, variable in missing]),
                       ev("check said", f"{failed.status.value}: {failed.summary}")])
    finding = _finding(spec, outcome, failed.duration_ms)
    finding.runbook = None  # no runbook cures a missing variable
    return finding


def in_context(findings: list[Finding], ctx: CheckContext, config: str | None = None) -> list[Finding]:
    """The run's findings read together: each problem's commands as printed for this target
    (:func:`es_doctor.prescribe.prescribe`), alerts whose checks are OK now said to be clearing, each
    problem linked to the problem that causes it; a consequence prints its root's cure."""
    from es_doctor import causality

    findings = causality.clearing_alerts(findings)
    findings = [prescribe(f, ctx.target, ctx.target_name, config) for f in findings]
    findings = causality.link(findings)
    by_id = {f.id: f for f in findings}
    out = []
    for finding in findings:
        root = by_id.get(finding.consequence_of or "")
        if root is not None and (root.cure_command or root.escalate_command):
            out.append(finding.model_copy(update={"cure_command": root.cure_command,
                                                  "escalate_command": root.escalate_command}))
        else:
            out.append(finding)
    return out


def run_checks(
    specs: list[CheckSpec],
    ctx: CheckContext,
    *,
    timeout: float | None = None,
    deadline_s: float | None = None,
    config: str | None = None,
) -> Report:
    """Run ``specs`` (prerequisites must be included) and return the report, within the deadline."""
    per_check = timeout if timeout is not None else ctx.target.check_timeout_s
    overall = deadline_s if deadline_s is not None else ctx.target.deadline_s
    started_at = dt.datetime.now(dt.UTC)
    begin = time.monotonic()
    deadline = begin + overall
    jobs = {spec.id: _Job(spec) for spec in specs}
    # the SDKs these checks need are imported while the first checks wait on the network
    preload(sdk_modules(ctx.target, {c for spec in specs for c in spec.components}))
    unset = unset_needed_secrets(ctx)
    threads = [
        threading.Thread(target=_run_one, args=(job, ctx, jobs, per_check, deadline, unset), daemon=True,
                         name=f"runner:{job.spec.id}")
        for job in jobs.values()
    ]
    for thread in threads:
        thread.start()
    for job in jobs.values():
        job.done.wait(max(0.0, deadline - time.monotonic()) + 0.05)
    ctx.cancelled.set()
    findings = []
    for job in jobs.values():
        if job.finding is None:
            job.finding = _finding(job.spec, Outcome(Status.UNKNOWN, f"no result: the overall deadline of "
                                                                      f"{overall:g}s passed"), 0.0)
        findings.append(job.finding)
    known = secret_values(ctx.target)
    findings = [sanitize(f, known) for f in in_context(findings, ctx, config)]
    return Report(
        tool_version=__version__,
        target=ctx.target_name,
        started_at=started_at,
        duration_ms=round((time.monotonic() - begin) * 1000, 1),
        findings=findings,
    )


def select(check_ids: Sequence[str] = (), classes: Sequence[str] = ()) -> list[CheckSpec]:
    """The checks a run needs: those named (or, with none named, every check of ``classes`` or of all
    classes, but the on-demand ones) and their prerequisites. Unknown ids raise KeyError."""
    registry = load_all()
    for check_id in check_ids:
        if check_id not in registry:
            raise KeyError(check_id)
    if check_ids:
        chosen = [s for s in registry.values() if s.id in check_ids]
    else:
        chosen = [s for s in registry.values()
                  if (not classes or s.check_class in classes) and not s.on_demand]
    return with_prerequisites(chosen, registry)


def diagnose(target: Target, target_name: str, check_ids: Sequence[str] = (), classes: Sequence[str] = (), *,
             timeout: float | None = None, deadline_s: float | None = None, scrapes_dir: Path | None = None,
             config: str | None = None, audit_log: Path | None = None, window_after: float | None = None) -> Report:
    """The one way to run checks (diagnose, fix --all, a runbook's verify and wait_for, escalate).
    ``scrapes_dir``: where the previous run's last metrics scrape is kept (its metrics window can
    start there, see :mod:`es_doctor.checks.window`); None scrapes twice. ``config``: the config file
    the printed commands name (:func:`es_doctor.prescribe.printed_config`; None: the default one).
    ``audit_log``: es-doctor's audit log (the uptime check names the scrapes its own fixes cost).
    ``window_after``: a time (epoch seconds) the metrics window must not start before (a fix's verification:
    what the service did before the cure is not the cure's result)."""
    ctx = CheckContext(target, target_name, scrapes_dir=scrapes_dir, audit_log=audit_log, window_after=window_after)
    try:
        return run_checks(select(check_ids, classes), ctx, timeout=timeout, deadline_s=deadline_s, config=config)
    finally:
        ctx.close()  # the run's clients (an embedded Qdrant holds its storage's lock until closed)


#: how many targets ``diagnose -t a -t b`` / ``--all-targets`` diagnoses at once
MAX_PARALLEL_TARGETS = 4


def run_many(targets: Sequence[tuple[str, Target]], check_ids: Sequence[str] = (), classes: Sequence[str] = (), *,
             timeout: float | None = None, deadline_s: float | None = None,
             max_parallel: int = MAX_PARALLEL_TARGETS, scrapes_dir: Path | None = None,
             config: str | None = None, audit_log: Path | None = None) -> list[Report]:
    """:func:`diagnose` on several targets, at most ``max_parallel`` at once; reports in the given order.
    Each target runs under its own deadline, so a dead target costs at most its deadline."""
    from concurrent.futures import ThreadPoolExecutor

    def one(item: tuple[str, Target]) -> Report:
        name, target = item
        try:
            return diagnose(target, name, check_ids, classes, timeout=timeout, deadline_s=deadline_s,
                            scrapes_dir=scrapes_dir, config=config, audit_log=audit_log)
        except KeyError:  # an unknown check id: the same for every target, a usage error for the caller
            raise
        except Exception as exc:  # noqa: BLE001 - one target's failure never loses another's report
            return failed_report(name, target, exc)

    with ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(targets))),
                            thread_name_prefix="target") as pool:
        return list(pool.map(one, targets))


#: the finding a target's report holds when its diagnosis itself failed (see :func:`failed_report`)
RUN_FAILED_ID = "es-doctor.run"


def failed_report(name: str, target: Target, exc: BaseException) -> Report:
    """The report of a target whose diagnosis raised ``exc``: one UNKNOWN finding saying so (secrets
    scrubbed), so that the other targets' reports are kept and the exit code says UNKNOWN at least."""
    finding = Finding(id=RUN_FAILED_ID, check_class="es-doctor", status=Status.UNKNOWN,
                      summary=f"the diagnosis of target {name} failed: {type(exc).__name__}: {exc}"[:500],
                      description="es-doctor could not diagnose this target (a bug or an unusable setting).")
    return Report(tool_version=__version__, target=name, started_at=dt.datetime.now(dt.UTC), duration_ms=0.0,
                  findings=[sanitize(finding, secret_values(target))])
