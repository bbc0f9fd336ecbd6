#!/usr/bin/env python3
"""What ``es-doctor serve`` costs as targets grow: 1, 5, 20 copies of one real target at a 30 s interval.

For each size it starts ``es-doctor serve`` on a private port and state dir, and measures:

* round time: from start until every target has been diagnosed once (the first round, all at once,
  spread only by the jitter) and the longest single diagnosis;
* CPU share of the daemon (user + system time / wall time, % of one core) over ``--window`` seconds
  after that first round, and its peak RSS (goal: at most 200 MB at 20 targets);
* p95 latency of ``/metrics`` and ``/`` while a round is running (``/api/v1/targets`` says so) and overall.

    python benchmarks/serve_cost.py -t lab [--sizes 1,5,20] [--interval 30] [--window 60]

Needs a running target (``es-doctor lab up``); nothing on it is changed (serve is read-only).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import yaml
from machine import describe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from es_doctor.config import load_config
from es_doctor.lab.infra import free_port


def p95(values: list[float]) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=20)[18]


def measure(target_name: str, size: int, interval: float, window: float) -> dict[str, object]:
    target = load_config(None, target_name).target.model_dump(mode="json")
    work = Path(tempfile.mkdtemp(prefix="esd-serve-bench-"))
    config = {"state_dir": str(work / "state"), "serve": {"interval_s": interval},
              "targets": {f"t{i:02d}": target for i in range(1, size + 1)}}
    config_file = work / "es-doctor.yaml"
    config_file.write_text(yaml.safe_dump(config))
    config_file.chmod(0o600)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ES_DOCTOR_") or k == "ES_DOCTOR_LAB_DIR"}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "es_doctor", "-c", str(config_file), "serve", "--all-targets",
                             "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    ps = psutil.Process(proc.pid)
    rss_peak = 0
    samples: dict[str, list[tuple[bool, float]]] = {"/metrics": [], "/": []}
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                try:
                    targets = http.get(f"{url}/api/v1/targets").json()
                except httpx.HTTPError:
                    time.sleep(0.1)
                    continue
                busy = any(t["running"] for t in targets)
                for path, record in samples.items():
                    begin = time.perf_counter()
                    http.get(url + path).raise_for_status()
                    record.append((busy, (time.perf_counter() - begin) * 1000))
                time.sleep(0.2)

    try:
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        sampler = threading.Thread(target=client, daemon=True)
        sampler.start()
        while httpx.get(f"{url}/ready", timeout=10).status_code != 200:
            rss_peak = max(rss_peak, ps.memory_info().rss)
            time.sleep(0.1)
        first_round = time.monotonic() - started
        cpu_before = sum(ps.cpu_times()[:2])
        wall_before = time.monotonic()
        while time.monotonic() - wall_before < window:
            rss_peak = max(rss_peak, ps.memory_info().rss)
            time.sleep(0.5)
        cpu_share = (sum(ps.cpu_times()[:2]) - cpu_before) / (time.monotonic() - wall_before) * 100
        targets = httpx.get(f"{url}/api/v1/targets", timeout=10).json()
        longest = max(t["duration_s"] or 0.0 for t in targets)
    finally:
        stop.set()
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)  # its config holds the target (and its DSN)
    result: dict[str, object] = {"targets": size, "first_round_s": round(first_round, 2),
                                 "longest_diagnosis_s": round(longest, 2), "cpu_pct": round(cpu_share, 1),
                                 "rss_peak_mb": round(rss_peak / 2**20, 1)}
    for path, values in samples.items():
        busy = [ms for b, ms in values if b]
        result[f"{path}_p95_ms_during_round"] = None if not busy else round(p95(busy) or 0, 1)
        result[f"{path}_p95_ms"] = round(p95([ms for _, ms in values]) or 0, 1)
        result[f"{path}_samples_during_round"] = len(busy)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-t", "--target", default="lab")
    parser.add_argument("--sizes", default="1,5,20")
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=60.0, help="seconds of steady state measured per size")
    args = parser.parse_args()
    print(describe())  # beside the results: figures of another machine compare through it (#25)
    rows = [measure(args.target, int(size), args.interval, args.window) for size in args.sizes.split(",")]
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
