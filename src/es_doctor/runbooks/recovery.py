"""Dead-run recovery: a fix that held the lock and died (SIGKILL, a crash, a power cut) is reported
from its lock record and the audit log before the next run starts: which step it was in, which it
completed, and which of the programs it started still run (they carry its id in ``ESDOCTOR_RUN_ID``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from es_doctor.errors import UnavailableError
from es_doctor.runbooks.actions import RUN_ENV
from es_doctor.runbooks.audit import AuditLog


def processes_of_run(run_id: str) -> list[dict[str, Any]]:
    """Live processes started by run ``run_id`` (they carry it in ``ESDOCTOR_RUN_ID``)."""
    import psutil

    if not run_id:
        return []
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "name"]):
        try:
            if proc.environ().get(RUN_ENV) == run_id and proc.status() != psutil.STATUS_ZOMBIE:
                found.append({"pid": proc.pid,
                              "command": " ".join(proc.info.get("cmdline") or []) or str(proc.info.get("name"))})
        except (psutil.Error, OSError):
            continue
    return found


def report_dead_run(dead: dict[str, Any], base: dict[str, Any], audit: AuditLog,
                    say: Callable[[str], None]) -> None:
    """A run that held the lock and died without releasing it (SIGKILL, a crash): say what it was
    doing, from its lock record and the audit log, so the operator knows what may be half-done."""
    records = audit.run_records(str(dead.get("run_id") or ""))
    starts = [i for i, r in enumerate(records) if r.get("event") == "fix.step-start"]
    done = [r["step"] for r in records if r.get("event") == "fix.step" and r.get("status") == "ok"]
    last = records[starts[-1]] if starts else None
    text = (f"a previous fix died without finishing: runbook {dead.get('runbook', '?')} by "
            f"{dead.get('user', '?')}@{dead.get('host', '?')} (pid {dead.get('pid', '?')}, run "
            f"{dead.get('run_id') or '?'}) started {dead.get('since', '?')}")
    half = None
    if last is not None:
        end = next((r for r in records[starts[-1] + 1:] if r.get("event") == "fix.step"
                    and (r.get("phase"), r.get("step")) == (last.get("phase"), last.get("step"))), None)
        state = f"ended {end.get('status')}" if end else "never finished: it may be half-done"
        if end is None:
            half = last.get("step")
        text += f"; its last step {last.get('step')} ({last.get('action')}) started {last.get('time')}, {state}"
    elif records:
        text += "; it ran no step"
    else:
        text += "; the audit log holds none of its records"
    if done:
        text += f"; steps it completed: {', '.join(done)}"
    running = processes_of_run(str(dead.get("run_id") or ""))
    if running:
        text += "; programs it started are still running: " + ", ".join(
            f"pid {p['pid']} ({p['command'][:100]})" for p in running)
    say(f"WARNING: {text}. Check the target before going on (es-doctor diagnose).")
    audit.write("fix.previous-run-died", **base, previous=dead, last_step=last.get("step") if last else None,
                     half_done=half, completed=done, still_running=running)
    if running:
        raise UnavailableError(f"a step of the dead run {dead.get('run_id')} is still running ("
                               + ", ".join(f"pid {p['pid']}" for p in running)
                               + "): wait for it to end or stop it, then run the fix again")
