#!/usr/bin/env python3
"""How quiet a fresh lab is: start it, diagnose it at once, take it down; repeat.

A fresh lab must diagnose clean: no SLOW line from its own warm-up or healthy traffic, no test search
over the guide's 50 ms right after ``lab up``. For each run this prints the time ``lab up`` took, the
checks that were not OK in the diagnosis that followed it at once, the SLOW lines in the service's log,
its slowest request, the test search's latency and the load average (on a shared machine the load is
most of the story).

    python benchmarks/fresh_lab_noise.py [--runs 6] [--mode process|docker] [--no-postgres] [--no-prometheus]

``--mode docker`` starts a private engine per run (``lab up --start-dockerd``). Every run ends with
``lab down --volumes`` in its own temporary lab dir: nothing is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import describe


def es_doctor(lab_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ES_DOCTOR_LAB_DIR": str(lab_dir), "COLUMNS": "200"}
    env.pop("DOCKER_HOST", None)
    return subprocess.run([sys.executable, "-m", "es_doctor", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL)


def log_facts(lab_dir: Path) -> tuple[int, float]:
    """(SLOW lines, slowest request in ms) of the service's log."""
    slow, slowest = 0, 0.0
    path = lab_dir / "logs" / "email-sender.log"
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []:
        try:
            record: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        slow += "SLOW" in str(record.get("message"))
        if record.get("component") == "http" and isinstance(record.get("duration_ms"), int | float):
            slowest = max(slowest, float(record["duration_ms"]))
    return slow, slowest


def one_run(base: Path, index: int, args: argparse.Namespace) -> dict[str, Any]:
    lab_dir = base / f"lab{index}"
    up_args = ["lab", "up", "--lab-dir", str(lab_dir)]
    up_args += ["--start-dockerd"] if args.mode == "docker" else ["--mode", "process"]
    up_args += ["--no-postgres"] if args.no_postgres else []
    up_args += ["--no-prometheus"] if args.no_prometheus else []
    started = time.monotonic()
    up = es_doctor(lab_dir, *up_args)
    up_s = time.monotonic() - started
    try:
        if up.returncode != 0:
            return {"run": index, "error": (up.stderr or up.stdout).strip()[-300:]}
        report = json.loads(es_doctor(lab_dir, "-t", "lab", "diagnose", "--format", "json").stdout)
        findings = {f["id"]: f for f in report["findings"]}
        search = next((e.get("value") for e in findings.get("vectors.search", {}).get("evidence", [])
                       if e.get("name") == "latency"), None)
        slow, slowest = log_facts(lab_dir)
        return {"run": index, "up_s": round(up_s, 1), "busy": "machine is busy" in up.stdout,
                "not_ok": sorted(i for i, f in findings.items() if f["status"] in ("WARN", "CRIT", "UNKNOWN")),
                "slow_lines": slow, "slowest_ms": slowest, "search_ms": search, "load": os.getloadavg()[0]}
    finally:
        es_doctor(lab_dir, "lab", "down", "--volumes", "--lab-dir", str(lab_dir))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--mode", choices=("process", "docker"), default="process")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-prometheus", action="store_true")
    args = parser.parse_args()
    print(describe())  # beside the results: figures of another machine compare through it (#25)
    with tempfile.TemporaryDirectory(prefix="esd-noise-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        rows = [one_run(base, i + 1, args) for i in range(args.runs)]
    print(f"{'run':>3}  {'up':>6}  {'load':>5}  {'SLOW':>4}  {'slowest':>8}  {'search':>7}  not OK after lab up")
    for row in rows:
        if "error" in row:
            print(f"{row['run']:>3}  lab up failed: {row['error']}")
            continue
        search = f"{row['search_ms']:.1f}" if isinstance(row["search_ms"], int | float) else "-"
        busy = " (lab up: machine busy)" if row["busy"] else ""
        print(f"{row['run']:>3}  {row['up_s']:>5.1f}s  {row['load']:>5.1f}  {row['slow_lines']:>4}  "
              f"{row['slowest_ms']:>6.1f}ms  {search:>5}ms  {', '.join(row['not_ok']) or 'none'}{busy}")
    noisy = sum(1 for row in rows if row.get("not_ok"))
    print(f"\n{noisy} of {len(rows)} fresh labs had a check not OK right after lab up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
