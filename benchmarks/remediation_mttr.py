#!/usr/bin/env python3
"""Mean time to a verified cure through alerts, per auto-curable lab fault, split by who spends it.

A lab of its own (process mode, with PostgreSQL: the target lock is real), ``es-doctor serve`` on it, a
private Prometheus scraping serve every second with the ``--serve`` rule ``EsDoctorCheckCritical``
(``for: 2s``), the real Alertmanager (group wait 1 s) configured from ``serve --print-alertmanager-config``:
the rig of tests/integration/remediation_rig.py. For each fault whose cure is an unattended runbook:

- Prometheus' part: fault injected → the alert fires in Prometheus (serve's next diagnosis, the scrape,
  the rule's ``for:``), polled every 0.1 s on Prometheus' /api/v1/alerts;
- Alertmanager's part: the alert fires → serve receives the webhook (the request's creation time);
- es-doctor's part: webhook received → cure verified (FIXED, the request's last update);
- the tail: FIXED → the alert resolved in Alertmanager (serve's next diagnosis, Prometheus, Alertmanager).

Compared with the same fault cured through the guide by hand: the guide's diagnostic commands (as
diagnose_vs_manual.py generates them) then the guide's cure for it (one ``curl -X POST``), then a check.

    python benchmarks/remediation_mttr.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "tests" / "integration"), str(ROOT / "benchmarks")]

import httpx  # noqa: E402

#: faults cured by an unattended runbook, and the guide's one-shot cure (path of a POST on the service)
FAULTS = {"discovery-broken": ("inter-manager.discovery", "/api/v1/managers/discovery/restart"),
          "event-bus-saturated": ("inter-manager.event-bus", "/api/v1/events/purge")}
TARGET_S = 10.0


def firing_at(prometheus: str, check: str, since: float, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        if any(a["labels"].get("check") == check and a["state"] == "firing" for a in alerts):
            return time.time()
        time.sleep(0.1)
    raise RuntimeError(f"{check} never fired in Prometheus")


def one_round(rig: Any, stack: Any, fault: str, check: str) -> dict[str, float]:
    from remediation_rig import wait

    from es_doctor.lab import faults

    since = time.time()
    faults.add(stack, fault)
    injected = time.time()
    fired = firing_at(rig.prometheus, check, since)
    request = wait(lambda: rig.latest_for(check, since), 120, "the webhook reaches serve", 0.05)
    def judged() -> dict[str, Any] | None:
        got: dict[str, Any] = rig.request(request["id"])
        return got if got["state"] not in ("queued", "running", "approved") else None

    done = wait(judged, 120, "the cure is judged", 0.05)
    if done["state"] != "fixed":
        raise RuntimeError(f"{fault}: {done['state']}: {done['reason']}")
    wait(lambda: not rig.am_alerts(check), 120, "the alert resolves in Alertmanager", 0.1)
    resolved = time.time()
    faults.clear(stack, None, wait=90)
    wait(lambda: not rig.am_alerts(check), 120, "quiet again", 0.2)
    return {"prometheus": fired - injected, "alertmanager": done["created"] - fired,
            "es-doctor": done["updated"] - done["created"], "tail": resolved - done["updated"],
            "total": resolved - injected}


def by_hand(stack: Any, fault: str, cure_path: str, target_name: str) -> float:
    """The guide's diagnostic script, then its cure, then a check, timed from the fault."""
    from diagnose_vs_manual import manual_script

    from es_doctor.lab import faults

    api = stack.target.service.api_url.rstrip("/")
    faults.add(stack, fault)
    started = time.time()
    script, _ = manual_script(target_name)
    subprocess.run(["bash", "-c", script], capture_output=True, timeout=300, check=False)
    subprocess.run(["curl", "-fsS", "-X", "POST", api + cure_path], capture_output=True, timeout=30, check=False)
    subprocess.run([sys.executable, "-m", "es_doctor", "-t", target_name, "diagnose", "--check",
                    FAULTS[fault][0]], capture_output=True, timeout=120, check=False)
    took = time.time() - started
    faults.clear(stack, None, wait=90)
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from remediation_rig import start_rig

    from es_doctor.lab.stack import LabStack

    with tempfile.TemporaryDirectory(prefix="esd-mttr-") as tmp:
        work = Path(tmp)
        os.environ["ES_DOCTOR_LAB_DIR"] = str(work / "lab")
        stack = LabStack(work / "lab", mode="process", postgres=True, prometheus=False)
        stack.up(timeout=120)
        try:
            rows: dict[str, list[dict[str, float]]] = {}
            manual: dict[str, list[float]] = {}
            with start_rig(stack, work) as rig:
                for fault, (check, _) in FAULTS.items():
                    rows[fault] = [one_round(rig, stack, fault, check) for _ in range(args.rounds)]
            for fault, (_, cure_path) in FAULTS.items():
                manual[fault] = [by_hand(stack, fault, cure_path, "lab") for _ in range(args.rounds)]
        finally:
            stack.down(volumes=True)
    from machine import describe

    print(f"remediation MTTR on the lab (process mode), {args.rounds} round(s) per fault; {describe()}")
    print("| fault | Prometheus (s) | Alertmanager (s) | es-doctor (s) | to resolved in AM (s) | total (s) | "
          "guide by hand, scripted (s) |")
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for fault, got in rows.items():
        mean = {k: statistics.fmean(r[k] for r in got) for k in got[0]}
        worst = max(worst, *(r["es-doctor"] for r in got))
        print(f"| {fault} | {mean['prometheus']:.1f} | {mean['alertmanager']:.1f} | {mean['es-doctor']:.1f} | "
              f"{mean['tail']:.1f} | {mean['total']:.1f} | {statistics.fmean(manual[fault]):.1f} |")
    print(f"es-doctor's part, worst round: {worst:.1f} s (target <= {TARGET_S:g} s): "
          f"{'met' if worst <= TARGET_S else 'NOT met'}")
    return 0 if worst <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
