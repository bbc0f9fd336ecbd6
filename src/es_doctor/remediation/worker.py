"""The remediation worker of ``es-doctor serve``: alert → request → check now → policy or approval → run
(the engine of ``fix``) → verification by the finding's checks → notification, each step an event of the
request and a record of the audit log.

One thread per target runs its cures (never the HTTP thread; the schedule of diagnoses goes on). Before
anything runs, the findings of the target's open requests are checked now: an OK one is closed as
cleared. The bad ones are grouped by the cure their check names (cause-aware, as ``fix <finding>``); the
group whose cure a cause picked runs first, the others wait for its verification and close when their
findings are OK then. Two ``serve`` instances derive the same request ids; the target lock of ``fix``
(PostgreSQL where the target has it) lets one run: the other records "run elsewhere".
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from es_doctor import cures
from es_doctor.errors import EsDoctorError
from es_doctor.findings import Finding, Report, Status
from es_doctor.remediation.alerts import Webhook, map_alert, request_id
from es_doctor.remediation.policy import Action, Facts, RemediationConfig, decide
from es_doctor.severity import Severity
from es_doctor.units import utc_iso

if TYPE_CHECKING:
    from es_doctor.config import LoadedConfig
    from es_doctor.runbooks.model import Runbook
    from es_doctor.serve.requests import Requests

#: the order cures run in when no cause says otherwise: dependencies and containers first (as fix --all)
CLASS_ORDER = ("deploy", "startup", "vectors", "inter-manager", "performance", "monitoring")
TICK_S = 1.0
#: how long the runbooks read from disk are reused
RUNBOOKS_TTL_S = 300.0
#: how long a webhook arriving during the warm-up waits for it
WARM_UP_WAIT_S = 30.0

Diagnose = Callable[["LoadedConfig", list[str]], Report]


def default_diagnose(loaded: LoadedConfig, ids: list[str]) -> Report:
    from es_doctor.runner import diagnose

    return diagnose(loaded.target, loaded.target_name, ids)


@dataclass
class Group:
    """Requests one cure answers: the runbook and parameters their checks name now."""

    runbook: str
    params: dict[str, str]
    requests: list[dict[str, Any]]
    findings: list[Finding]

    @property
    def by_cause(self) -> bool:
        return any(f.cause is not None for f in self.findings)


class Remediator:
    """Receives Alertmanager's alerts and approvals; runs the target workers."""

    def __init__(self, requests: Requests, loaded: Callable[[], dict[str, LoadedConfig]],
                 diagnose: Diagnose = default_diagnose) -> None:
        self.requests = requests
        self._loaded = loaded
        self._diagnose = diagnose
        self._wake: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._runbooks: tuple[tuple[str, ...], float, dict[str, Runbook]] | None = None
        self._warming, self._warmed = threading.Event(), threading.Event()

    # ------------------------------------------------------------------ configuration

    def config(self) -> RemediationConfig:
        loaded = self._loaded()
        return next(iter(loaded.values())).config.remediation if loaded else RemediationConfig()

    def runbooks(self, cached_ok: bool = False) -> dict[str, Runbook]:
        """The loaded runbooks, read again when older than RUNBOOKS_TTL_S; ``cached_ok``: any age will do (the
        HTTP thread: a webhook must answer fast; the workers and the warm-up read them again)."""
        from pathlib import Path

        from es_doctor.runbooks.loader import load_runbooks

        loaded = self._loaded()
        dirs = [Path(d).expanduser() for d in next(iter(loaded.values())).config.runbook_dirs] if loaded else []
        key = tuple(str(d) for d in dirs)
        if cached_ok and self._runbooks is None and self._warming.is_set():
            self._warmed.wait(WARM_UP_WAIT_S)  # the warm-up reads them: do not read them twice at once
        with self._lock:
            cached = self._runbooks
        if cached is not None and cached[0] == key and (cached_ok or time.monotonic() - cached[1] < RUNBOOKS_TTL_S):
            return cached[2]
        found = dict(load_runbooks(dirs, tolerant=True).runbooks)
        with self._lock:
            self._runbooks = (key, time.monotonic(), found)
        return found

    # ------------------------------------------------------------------ the HTTP thread's side (fast)

    def receive(self, hook: Webhook) -> list[dict[str, Any]]:
        """Record every alert of the payload; wake the targets' workers. Per alert: what became of it."""
        from es_doctor.checks.registry import load_all

        loaded = self._loaded()
        checks = set(load_all())
        runbooks = set(self.runbooks(cached_ok=True))
        results = []
        woken: set[str] = set()
        for alert in hook.alerts:
            ask = map_alert(alert, list(loaded), checks, runbooks)
            detail = {**ask.as_dict(), "groupKey": hook.group_key[:200], "receiver": hook.receiver[:100]}
            if ask.refused is not None:
                self.requests.receipt(422, f"alert refused: {ask.refused}", "alert", 0)
                results.append({**ask.as_dict(), "result": "refused", "reason": ask.refused})
                continue
            assert ask.target is not None and ask.finding is not None
            rid = request_id(ask.target, ask.finding, alert)
            what, request = self.requests.receive(rid, ask.target, ask.finding, ask.runbook,
                                                  alert.labels.get("alertname"), alert.starts_at, alert.fingerprint,
                                                  alert.status, detail)
            results.append({**ask.as_dict(), "result": what, "request": request.get("id"),
                            "state": request.get("state")})
            if what in ("new", "repeat"):
                woken.add(ask.target)
            if what == "new":
                self._audit(ask.target, "remediation.request", request=rid, finding=ask.finding, runbook=ask.runbook,
                            alertname=alert.labels.get("alertname"), starts_at=alert.starts_at)
        for target in woken:
            self.wake(target)
        return results

    def approve(self, rid: str, by: str) -> tuple[int, str]:
        request = self.requests.get(rid)
        if request is None:
            return 404, f"no request {rid}"
        if request["state"] == "waiting-approval" and self._expired(request):
            self._expire(request)
            return 409, f"request {rid} waited past its expiry: escalated, not run"
        if not self.requests.transition(rid, ("waiting-approval",), "approved", f"approved by {by}",
                                        {"by": by}, approved_by=by):
            self.requests.note(rid, "approval.refused", {"by": by, "state": request["state"]})
            return 409, f"request {rid} is {request['state']}, not waiting for an approval: nothing changed"
        self._audit(request["target"], "remediation.approved", request=rid, by=by)
        self.wake(request["target"])
        return 200, f"request {rid} approved by {by}: it runs once its finding is checked bad again"

    def deny(self, rid: str, by: str) -> tuple[int, str]:
        request = self.requests.get(rid)
        if request is None:
            return 404, f"no request {rid}"
        if not self.requests.transition(rid, ("waiting-approval", "queued"), "denied", f"denied by {by}", {"by": by},
                                        approved_by=by):
            self.requests.note(rid, "denial.refused", {"by": by, "state": request["state"]})
            return 409, f"request {rid} is {request['state']}: nothing changed"
        self._audit(request["target"], "remediation.denied", request=rid, by=by)
        return 200, f"request {rid} denied by {by}"

    # ------------------------------------------------------------------ workers

    def wake(self, target: str) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            event = self._wake.setdefault(target, threading.Event())
            thread = self._threads.get(target)
            if thread is None or not thread.is_alive():
                thread = threading.Thread(target=self._loop, args=(target, event), name=f"serve:cure:{target}",
                                          daemon=True)
                self._threads[target] = thread
                thread.start()
        event.set()

    def start(self) -> None:
        """Warm up (the checks imported, the runbooks read: the first webhook then answers at once) and resume
        what a previous run of serve left open (its requests are in the store)."""
        self._warming.set()
        threading.Thread(target=self._warm_up, name="serve:cure:warm-up", daemon=True).start()
        for request in self.requests.find(states=("queued", "approved", "waiting-approval", "running")):
            if request["state"] == "running":  # serve stopped during the run: its end is unknown
                self.requests.transition(request["id"], ("running",), "failed",
                                         "serve stopped while the cure ran: its outcome is unknown (see the audit "
                                         "log); escalated")
                continue
            self.wake(request["target"])

    def _warm_up(self) -> None:
        from es_doctor.checks.registry import load_all

        try:
            load_all()
            self.runbooks()
        except Exception as exc:  # noqa: BLE001 - the first webhook will say what is wrong
            print(f"es-doctor serve: remediation warm-up: {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            self._warmed.set()

    def stop(self, wait_s: float = 5.0) -> None:
        self._stopping.set()
        with self._lock:
            for event in self._wake.values():
                event.set()
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout=wait_s)

    def _loop(self, target: str, event: threading.Event) -> None:
        while not self._stopping.is_set():
            event.wait(TICK_S)
            event.clear()
            if self._stopping.is_set():
                return
            try:
                self.runbooks()  # read again here when stale, never in the HTTP thread
                while self.process(target):
                    if self._stopping.is_set():
                        return
            except Exception as exc:  # noqa: BLE001 - one target's failure must not end its worker
                print(f"es-doctor serve: remediation of {target}: {type(exc).__name__}: {exc}", file=sys.stderr)
                time.sleep(TICK_S)

    # ------------------------------------------------------------------ one pass over a target

    def _expired(self, request: dict[str, Any]) -> bool:
        return time.time() - float(request["updated"]) > self.config().approval_expiry_s

    def _expire(self, request: dict[str, Any]) -> None:
        if self.requests.transition(request["id"], ("waiting-approval",), "expired",
                                    "waited for an approval past remediation.approval_expiry_s: escalated, not run"):
            self._escalate(request, "the request waited for an approval past its expiry: not run", None)

    def process(self, target: str) -> bool:
        """One pass: expire, check now, decide, run at most one cure. True when it should go again at once."""
        loaded = self._loaded().get(target)
        if loaded is None:
            return False
        config = loaded.config.remediation
        for request in self.requests.find(target, ("waiting-approval",)):
            if self._expired(request):
                self._expire(request)
        live = self.requests.find(target, ("queued", "approved", "waiting-approval"))
        if not live:
            return False
        findings = sorted({r["finding"] for r in live})
        report = self._diagnose(loaded, findings)
        now = {f.id: f for f in report.findings}
        bad: list[tuple[dict[str, Any], Finding]] = []
        for request in live:
            finding = now.get(request["finding"])
            if finding is None or finding.status in (Status.OK, Status.SKIP):
                state = finding.status.value if finding else "not run"
                if self.requests.transition(request["id"], ("queued", "approved", "waiting-approval"), "cleared",
                                            f"{request['finding']} is {state} now: nothing runs",
                                            {"summary": finding.summary if finding else ""}):
                    self._audit(target, "remediation.cleared", request=request["id"], finding=request["finding"])
                continue
            bad.append((request, finding))
        if not bad:
            return False
        if len({f.id for _, f in bad}) >= config.breaker_findings:
            self._breaker(target, bad, config)
            return False
        groups = self._groups(bad)
        runbooks = self.runbooks()
        for group in groups:
            if not self._approval_shared(group):
                return False  # a cure waits for a person: the cures after it wait with it (it may be their cause)
            if group.runbook == "":
                for request in group.requests:
                    self._close_escalated(request, f"no runbook cures {request['finding']} as checked now",
                                          group.findings)
                continue
            rb = runbooks.get(group.runbook)
            if rb is None:
                for request in group.requests:
                    self._close_escalated(request, f"its cure {group.runbook} is not among the loaded runbooks",
                                          group.findings)
                continue
            lead = group.requests[0]
            last_not_fixed = self.requests.last_not_fixed(target, rb.id)
            facts = Facts(
                finding=lead["finding"], runbook=rb.id, unattended=rb.unattended,
                destructive=bool(rb.flags.destructive) or any(s.destructive for s in rb.steps),
                runs_last_hour=self.requests.runs_since(target, rb.id, time.time() - 3600),
                not_fixed_ago_s=None if last_not_fixed is None else time.time() - last_not_fixed,
                bad_findings=len({f.id for _, f in bad}),
                approved=any(r["state"] == "approved" for r in group.requests))
            decision = decide(config, facts)
            self.requests.note(lead["id"], "policy", {"action": decision.action.value, "mode": decision.mode,
                                                      "reason": decision.reason, "runbook": rb.id,
                                                      "params": group.params})
            self._audit(target, "remediation.decision", request=lead["id"], runbook=rb.id,
                        action=decision.action.value, reason=decision.reason)
            if decision.action is Action.ESCALATE:
                for request in group.requests:
                    self._close_escalated(request, decision.reason, group.findings)
                continue
            if decision.action is Action.OBSERVE:
                for request in group.requests:
                    if self.requests.transition(request["id"], ("queued", "approved"), "observed", decision.reason):
                        self._notify_notice(request, f"observe mode: would run {rb.id} for {request['finding']} "
                                                     f"({decision.reason})")
                continue
            if decision.action is Action.WAIT:
                for request in group.requests:
                    if self.requests.transition(request["id"], ("queued",), "waiting-approval", decision.reason):
                        self._notify_notice(request, f"approval needed: {rb.id} for {request['finding']} on "
                                                     f"{target}: es-doctor requests approve {request['id']}")
                return False  # the rest wait for this one
            self._run(loaded, group, rb, auto=not facts.approved)
            return True  # check the others again now: the cure may have cured them (symptoms of one cause)
        return False

    def _approval_shared(self, group: Group) -> bool:
        """The requests one cure answers share one person's decision: while one waits for an approval and none
        is approved, the queued ones wait with it (False: the group waits); once one is approved, the waiting
        ones are approved with it (True: the group goes on)."""
        waiting = [r for r in group.requests if r["state"] == "waiting-approval"]
        if not waiting:
            return True
        approval = next((r for r in group.requests if r["state"] == "approved"), None)
        if approval is None:
            for request in group.requests:
                if request["state"] == "queued":
                    self.requests.transition(request["id"], ("queued",), "waiting-approval",
                                             f"waits with {waiting[0]['id']}: the same cure ({group.runbook})")
            return False
        by = approval["approved_by"]
        for request in waiting:
            if self.requests.transition(request["id"], ("waiting-approval",), "approved",
                                        f"approved with {approval['id']} (the same cure) by {by}",
                                        {"by": by, "with": approval["id"]}, approved_by=by):
                request["state"] = "approved"
        return True

    def _groups(self, bad: list[tuple[dict[str, Any], Finding]]) -> list[Group]:
        groups: dict[tuple[str, tuple[tuple[str, str], ...]], Group] = {}
        for request, finding in bad:
            runbook = finding.runbook or ""
            params = dict(finding.runbook_params)
            key = (runbook, tuple(sorted(params.items())))
            group = groups.setdefault(key, Group(runbook, params, [], []))
            group.requests.append(request)
            group.findings.append(finding)

        def order(group: Group) -> tuple[int, int, float]:
            cls = group.findings[0].check_class
            return (0 if group.by_cause else 1, CLASS_ORDER.index(cls) if cls in CLASS_ORDER else 99,
                    min(float(r["created"]) for r in group.requests))

        return sorted(groups.values(), key=order)

    # ------------------------------------------------------------------ run and verify

    def _run(self, loaded: LoadedConfig, group: Group, rb: Runbook, auto: bool) -> None:
        from es_doctor.remediation.claim import claim

        lead = group.requests[0]["id"]
        with claim(loaded.target, lead) as holder:
            if holder is not None:  # another serve runs it (it derived the same request id)
                for request in group.requests:
                    if self.requests.transition(request["id"], ("queued", "approved"), "run-elsewhere",
                                                f"another es-doctor serve holds this request: {holder}"):
                        self._audit(loaded.target_name, "remediation.verdict", request=request["id"],
                                    runbook=rb.id, state="run-elsewhere")
                return
            # checked again under the claim: another serve may have cured it since this one looked
            report = self._diagnose(loaded, [r["finding"] for r in group.requests])
            now = {f.id: f for f in report.findings}
            still = []
            for request in group.requests:
                finding = now.get(request["finding"])
                if finding is None or finding.status in (Status.OK, Status.SKIP):
                    self.requests.transition(request["id"], ("queued", "approved"), "cleared",
                                             f"{request['finding']} is OK now (checked again before the run): "
                                             "nothing runs")
                else:
                    still.append(request)
            if still:
                self._run_claimed(loaded, Group(group.runbook, group.params, still, group.findings), rb, auto)

    def _run_claimed(self, loaded: LoadedConfig, group: Group, rb: Runbook, auto: bool) -> None:
        from es_doctor.cli.common import make_engine
        from es_doctor.runbooks.engine import RunOutcome, plan

        target = loaded.target_name
        ids = [r["id"] for r in group.requests]
        running = [rid for rid in ids if self.requests.transition(
            rid, ("queued", "approved"), "running", f"running {rb.id}", {"runbook": rb.id, "params": group.params})]
        if not running:
            return
        lines: list[str] = []
        engine = make_engine(loaded, confirm=lambda question: False, say=lambda text: lines.append(str(text)[:500]))
        engine.verify_timeout = loaded.config.remediation.verify_timeout_s
        for rid in running:
            self.requests.count_run(rid, auto)
            self.requests.note(rid, "run.start", {"runbook": rb.id, "auto": int(auto), "params": group.params})
        started = time.monotonic()
        try:
            the_plan = plan(rb, loaded.target, target, dict(group.params))
            result = engine.run(the_plan, yes=True)
        except EsDoctorError as exc:  # the lock is held elsewhere, or the state dir cannot be written
            elsewhere = "lock" in exc.message
            state = "run-elsewhere" if elsewhere else "failed"
            for rid in running:
                self.requests.transition(rid, ("running",), state, exc.message[:500])
                self.requests.note(rid, "run.end", {"runbook": rb.id, "state": state, "auto": int(auto)})
                self._audit(target, "remediation.verdict", request=rid, runbook=rb.id, state=state,
                            reason=exc.message[:500])
            if not elsewhere:
                for request in group.requests:
                    self._escalate(request, f"{rb.id} could not run: {exc.message[:300]}", group.findings)
            return
        # the finding's own checks decide, now: the engine's verification just graded those the runbook
        # verifies (OK on a graded sample, after the cure), the others are checked here
        verified_ok = {v["id"] for v in result.verify if v.get("status") == "OK" and v.get("graded", True)}
        rest = [r["finding"] for r in group.requests if r["finding"] not in verified_ok]
        after: dict[str, Finding] = {f.id: f for f in self._diagnose(loaded, rest).findings} if rest else {}
        elapsed = round(time.monotonic() - started, 3)
        for request in group.requests:
            if request["id"] not in running:
                continue
            finding = after.get(request["finding"])
            if request["finding"] in verified_ok:
                ok, now_status = True, Status.OK.value
            elif finding is not None:
                ok, now_status = finding.status in (Status.OK, Status.SKIP), finding.status.value
            else:
                ok, now_status = False, "not checked"
            engine_ok = result.outcome in (RunOutcome.FIXED, RunOutcome.DONE)
            if engine_ok and ok:
                state, reason = "fixed", f"{rb.id} {result.outcome.value}; {request['finding']} is OK now"
            elif result.outcome in (RunOutcome.FIXED, RunOutcome.DONE, RunOutcome.NOT_FIXED):
                state = "not-fixed"
                reason = f"{rb.id} {result.outcome.value}; {request['finding']} is {now_status} now"
            else:
                state, reason = "failed", f"{rb.id} {result.outcome.value}: {result.message[:300]}"
            self.requests.transition(request["id"], ("running",), state, reason,
                                     {"run_id": result.run_id, "outcome": result.outcome.value,
                                      "steps": [{"name": s.name, "status": s.status} for s in result.steps],
                                      "verify": result.verify, "said": lines[-20:], "seconds": elapsed},
                                     outcome=result.outcome.value)
            self.requests.note(request["id"], "run.end", {"runbook": rb.id, "state": state, "auto": int(auto),
                                                          "run_id": result.run_id, "seconds": elapsed})
            self._audit(target, "remediation.verdict", request=request["id"], runbook=rb.id, run_id=result.run_id,
                        state=state, outcome=result.outcome.value)
            if state == "fixed":
                self._notify_resolved(request, f"{rb.id} FIXED {request['finding']} on {target}")
            else:
                self._escalate(request, reason, [finding] if finding else group.findings)

    # ------------------------------------------------------------------ closing and telling

    def _close_escalated(self, request: dict[str, Any], reason: str, findings: list[Finding]) -> None:
        if self.requests.transition(request["id"], ("queued", "approved"), "escalated", reason):
            self._audit(request["target"], "remediation.escalated", request=request["id"], reason=reason)
            self._escalate(request, reason, findings)

    def _breaker(self, target: str, bad: list[tuple[dict[str, Any], Finding]], config: RemediationConfig) -> None:
        names = sorted({f.id for _, f in bad})
        reason = (f"breaker: {len(names)} different findings are bad at once on {target} "
                  f"(limit {config.breaker_findings}): {', '.join(names)}; nothing runs")
        closed = [r for r, _ in bad if self.requests.transition(r["id"], ("queued", "approved", "waiting-approval"),
                                                                 "escalated", reason)]
        if closed:
            self._audit(target, "remediation.breaker", requests=[r["id"] for r in closed], findings=names)
            self._escalate(closed[0], reason, [f for _, f in bad])

    def _level(self, findings: list[Finding], request: dict[str, Any]) -> int:
        config = self.config()
        levels = [f.escalate or cures.cure_of(f.id).escalate for f in findings]
        levels.append(cures.cure_of(request["finding"]).escalate)
        named = [lv for lv in levels if lv]
        return max(named) if named else config.escalate_level

    def _escalate(self, request: dict[str, Any], reason: str, findings: list[Finding] | None) -> None:
        """An incident (bundle with the diagnosis, logs, audit) to the level's channels."""
        from es_doctor.escalation import build_incident, deliver_incident, write_bundle
        from es_doctor.secrets import secret_values

        loaded = self._loaded().get(request["target"])
        if loaded is None:
            return
        level = self._level(findings or [], request)
        known = secret_values(loaded.target)
        issue = f"es-doctor remediation {request['id']}: {request['finding']}: {reason}"
        try:
            incident = build_incident(loaded, level, Severity.high, issue[:1000], attach_diagnosis=True,
                                      known_secrets=known)
            bundle = write_bundle(incident, loaded.config.state_dir)
            deliveries = deliver_incident(loaded, incident, bundle, known)
        except (EsDoctorError, OSError) as exc:
            self.requests.note(request["id"], "notify.failed", {"kind": "escalate", "error": str(exc)[:300]})
            return
        self.requests.note(request["id"], "notify.escalate",
                           {"incident": incident.id, "level": level, "bundle": str(bundle),
                            "deliveries": [d.as_dict() for d in deliveries]})

    def _notify_resolved(self, request: dict[str, Any], text: str) -> None:
        self._tell(request, text, resolve=True)

    def _notify_notice(self, request: dict[str, Any], text: str) -> None:
        self._tell(request, text, resolve=False)

    def _tell(self, request: dict[str, Any], text: str, resolve: bool) -> None:
        """A short message (no bundle) to the level's channels: a resolve (FIXED), or a notice (observe, waiting)."""
        from es_doctor.escalation import Incident, deliver_incident, deliver_resolve
        from es_doctor.secrets import secret_values

        loaded = self._loaded().get(request["target"])
        if loaded is None:
            return
        level = self._level([], request)
        spec = loaded.config.escalation.levels[level]
        stamp = utc_iso()
        incident = Incident(id=f"REQ-{request['id']}", time=stamp, target=request["target"], level=level,
                            severity=Severity.low, issue=text[:1000], team=spec.team,
                            responsibilities=list(spec.responsibilities), channels=list(spec.channels))
        known = secret_values(loaded.target)
        if resolve:
            deliveries, _ = deliver_resolve(loaded, incident, stamp, known)
        else:
            from pathlib import Path

            deliveries = deliver_incident(loaded, incident, Path("(no bundle: a notice)"), known)
        self.requests.note(request["id"], "notify.resolve" if resolve else "notify.notice",
                           {"text": text, "level": level, "deliveries": [d.as_dict() for d in deliveries]})

    def _audit(self, target: str, event: str, **fields: Any) -> None:
        from pathlib import Path

        from es_doctor.runbooks.audit import AuditLog
        from es_doctor.secrets import secret_values

        loaded = self._loaded().get(target)
        if loaded is None:
            return
        try:
            AuditLog(Path(loaded.config.audit_log), secret_values(loaded.target)).write(event, target=target, **fields)
        except (EsDoctorError, OSError) as exc:
            print(f"es-doctor serve: audit log: {exc}", file=sys.stderr)
