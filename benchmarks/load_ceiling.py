#!/usr/bin/env python3
"""How fast ``es-doctor load``'s generator can go on this machine: the highest arrival rate it sustains
against the lab with less than 5 % of its requests sent late (more than 10 ms after their due time, for
the generator's own reasons: a request that waited for a free connection is the server's doing and is
counted apart), and the generator's own CPU at each rate.

    python benchmarks/load_ceiling.py -t lab [--rates 50,100,200,300,400,600] [--duration 10] [--scenario api]
                                      [--concurrency 128]

It runs the engine in this process (the target's ``load.max_rps`` cap is not applied: finding where the
generator stops keeping up is the point), one rate after the other, until a rate misses the 5 % goal.
CPU is this process's user + system time over the run's wall time (% of one core); the lab runs on the
same machine and competes for the same cores, and so does anything else running (the load average is
printed before and after). Every task the runs create is removed afterwards, as ``es-doctor load`` does.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
from pathlib import Path

from machine import describe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from es_doctor.config import load_config
from es_doctor.load import run as load_run
from es_doctor.load.plan import Plan, Scenario, new_run_id
from es_doctor.load.stats import Recorder, pct
from es_doctor.probes.session import ProbeSession

GOAL_LATE_PCT = 5.0


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_rate(target_name: str, scenario: Scenario, rps: float, duration: float, concurrency: int) -> dict[str, float]:
    loaded = load_config(None, target_name)
    target = loaded.target
    plan = Plan(scenario, rps, duration, concurrency, 5.0, new_run_id())
    rec = Recorder(plan)
    cpu0, wall0 = cpu_s(), time.monotonic()
    load_run.run(plan, target, threading.Event(), None, rec)
    cpu, wall = cpu_s() - cpu0, time.monotonic() - wall0
    with ProbeSession(target, timeout=30) as session:
        removed = load_run.remove_test_data(session, target, plan, rec)
    if removed["left"]:
        print(f"  ! test data left: {removed['left']}", file=sys.stderr)
    p95 = rec.latency.percentile(0.95)
    return {"rps": rps, "throughput": rec.completed / max(rec.elapsed_s, 1e-9), "sent": rec.scheduled,
            "late_pct": pct(rec.late, rec.scheduled),
            "generator_late_pct": pct(rec.late - rec.late_for_slot, rec.scheduled),
            "slot_late_pct": pct(rec.late_for_slot, rec.scheduled), "max_lag_ms": rec.max_lag * 1000,
            "p95_ms": (p95 or 0.0) * 1000, "errors": rec.errors, "cpu_pct": cpu / wall * 100}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-t", "--target", default="lab")
    parser.add_argument("--rates", default="50,100,200,300,400,600,800")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--scenario", default="api", choices=[s.value for s in Scenario])
    parser.add_argument("--concurrency", type=int, default=128)
    args = parser.parse_args()
    print(describe())  # beside the results: figures of another machine compare through it (#25)
    if not load_config(None, args.target).target.load.lab:
        print(f"target {args.target!r} is not the lab (load.lab: true): refusing to load it", file=sys.stderr)
        return 64
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} cores)")
    print(f"{'rps':>6} {'done/s':>7} {'sent':>6} {'late %':>7} {'gen %':>6} {'slot %':>7} {'max lag':>8} "
          f"{'p95':>8} {'errors':>6} {'CPU %':>6}")
    ceiling = None
    for rate in (float(r) for r in args.rates.split(",")):
        row = one_rate(args.target, Scenario(args.scenario), rate, args.duration, args.concurrency)
        print(f"{row['rps']:>6.0f} {row['throughput']:>7.1f} {row['sent']:>6.0f} {row['late_pct']:>7.2f} "
              f"{row['generator_late_pct']:>6.2f} {row['slot_late_pct']:>7.2f} {row['max_lag_ms']:>6.1f}ms "
              f"{row['p95_ms']:>6.1f}ms {row['errors']:>6.0f} {row['cpu_pct']:>6.1f}", flush=True)
        if row["generator_late_pct"] >= GOAL_LATE_PCT:
            break
        ceiling = row
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if ceiling is None:
        print("no rate met the goal (< 5 % of requests late)")
        return 1
    print(f"ceiling: {ceiling['rps']:.0f} req/s with {ceiling['generator_late_pct']:.2f} % sent late by the generator, "
          f"generator CPU {ceiling['cpu_pct']:.1f} % of one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
