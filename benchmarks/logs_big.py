#!/usr/bin/env python3
"""``es-doctor logs`` on a big log: wall time and peak RSS, with the guide's grep pipeline beside it.

Writes a log of ``--size-mib`` (default 1024: 1 GiB) in the guide's JSON format to a temporary
directory (deleted afterwards): lines spread over ``--days`` days before the last 15 minutes, then
``--recent`` lines (default 40 000, a busy service's quarter of an hour with an error burst) in the
last 15 minutes. Then, each ``--runs`` times (median reported, peak RSS the largest):

* ``es-doctor logs --since 15m --patterns``   (the goal: under 2 s, memory flat whatever the size)
* ``es-doctor logs --since 15m --level ERROR`` (the newest 100 matching lines of the window)
* ``es-doctor logs --level ERROR -n 100``     (no window: read backwards until 100 are found)
* the guide's ``grep ERROR | awk '{{print $4}}' | sort | uniq -c | sort -nr`` over the whole file
* ``es-doctor logs --since 15m --patterns`` on a 16 MiB log with the same recent part (flat memory)

Each reports the median wall time, the median CPU time (user + system: what the command costs when
the machine is shared) and the peak RSS (``wait4``'s ``ru_maxrss``). For the shell pipeline they
include grep, awk and sort (the shell waits for them: their usage is the shell's).

    python benchmarks/logs_big.py [--size-mib 1024] [--recent 40000] [--runs 3]

The files are in the page cache after being written (warm reads); the search itself reads
about 20 windows of 256 KiB before the window's lines, so a cold cache adds little.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = ("http", "vector-service", "database", "EventBus", "coordinator", "cache-manager")
MESSAGES = (
    ("INFO", "request served: GET /api/v1/tasks/{n} in {d}ms"),
    ("INFO", "vector inserted for task {n}"),
    ("INFO", "cache hit ratio {d}%"),
    ("WARN", "SLOW query: SELECT * FROM tasks WHERE id = {n} took {d}ms"),
    ("ERROR", "Failed to insert vector"),
    ("ERROR", "handler failed: /api/v1/tasks/{n}"),
    ("ERROR", "connection to 10.0.{a}.{b}:6333 refused after {d}ms"),
)
TEMPLATE = ('{{"timestamp":"{ts}","level":"{level}","component":"{component}","message":"{message}",'
            '"error":{error},"request_id":"req-{rid:08d}","user_id":"user-{uid}","duration_ms":{d}}}\n')


def stamp(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def line(epoch: float, rng: random.Random, error_share: float) -> str:
    level, message = MESSAGES[rng.randrange(4)] if rng.random() > error_share else MESSAGES[4 + rng.randrange(3)]
    n, d = rng.randrange(100_000), rng.randrange(1, 5000)
    text = message.format(n=n, d=d, a=rng.randrange(256), b=rng.randrange(256))
    error = '"connection timeout"' if level == "ERROR" else "null"
    return TEMPLATE.format(ts=stamp(epoch), level=level, component=rng.choice(COMPONENTS), message=text,
                           error=error, rid=rng.randrange(10**8), uid=rng.randrange(1000), d=d)


def write_log(path: Path, size: int, recent: int, days: float, now: float) -> tuple[int, int]:
    """``size`` bytes of old lines (ending 15 min + 1 s ago), then ``recent`` lines in the last 15 min."""
    rng = random.Random(7)
    sample = line(now, rng, 0.02)
    recent_bytes = recent * len(sample)
    old_lines = max(1, (size - recent_bytes) // len(sample))
    start, end = now - days * 86400, now - 15 * 60 - 1
    step = (end - start) / old_lines
    written, count = 0, 0
    with path.open("w", encoding="utf-8") as out:
        chunk: list[str] = []
        for i in range(old_lines):
            chunk.append(line(start + i * step, rng, 0.02))
            if len(chunk) == 20_000:
                out.write("".join(chunk))
                chunk.clear()
                if out.tell() >= size - recent_bytes:  # lines vary in length: stop at the size asked
                    break
        count = i + 1
        for i in range(recent):  # an incident: 10 % errors in the last quarter of an hour
            chunk.append(line(now - 15 * 60 + 30 + i * (14 * 60 / recent), rng, 0.10))
            if len(chunk) == 20_000:
                out.write("".join(chunk))
                chunk.clear()
        out.write("".join(chunk))
        written = out.tell()
    return count + recent, written


def run(argv: list[str], env: dict[str, str] | None = None,
        shell: bool = False) -> tuple[float, float, int, int, str]:
    """(wall seconds, CPU seconds, peak RSS in KiB, exit code, first stdout line) of one run (its own
    rusage: wait4)."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(" ".join(argv) if shell else argv, shell=shell, stdout=out,
                                stderr=subprocess.DEVNULL, env=env)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        first = out.readline().decode(errors="replace").strip()
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, proc.returncode, first


def measure(label: str, argv: list[str], runs: int, env: dict[str, str] | None = None,
            shell: bool = False) -> dict[str, object]:
    walls, cpus, peaks, first, code = [], [], [], "", 0
    for _ in range(runs):
        wall, cpu, rss, code, first = run(argv, env, shell)
        walls.append(wall)
        cpus.append(cpu)
        peaks.append(rss)
    return {"what": label, "median_s": round(statistics.median(walls), 3), "max_s": round(max(walls), 3),
            "median_cpu_s": round(statistics.median(cpus), 3),
            "peak_rss_mib": round(max(peaks) / 1024, 1), "exit": code, "first_line": first[:120]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--recent", type=int, default=40_000, help="lines in the last 15 minutes")
    parser.add_argument("--days", type=float, default=7.0, help="span of the older lines")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(describe(), file=sys.stderr)  # beside the results: figures of another machine compare through it (#25)

    work = Path(tempfile.mkdtemp(prefix="esd-logs-bench-"))
    try:
        now = time.time()
        big, small = work / "big", work / "small"
        big.mkdir()
        small.mkdir()
        started = time.perf_counter()
        lines, size = write_log(big / "email-sender.log", args.size_mib * 1024 * 1024, args.recent, args.days, now)
        print(f"wrote {size / 2**20:.0f} MiB ({lines} lines) in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        write_log(small / "email-sender.log", 16 * 1024 * 1024, args.recent, args.days, now)
        for name, directory in (("big", big), ("small", small)):
            (work / f"{name}.yaml").write_text(
                f"state_dir: {work / 'state'}\ntargets:\n  bench:\n    service:\n      log_dir: {directory}\n"
                "    absent: {docker: benchmark}\n", encoding="utf-8")
        big_label = f"{size / 2**20:.0f} MiB"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ES_DOCTOR_")}
        cli = [sys.executable, "-m", "es_doctor"]
        results = [
            measure(f"logs --since 15m --patterns ({big_label})",
                    [*cli, "-c", str(work / "big.yaml"), "logs", "--since", "15m", "--patterns"], args.runs, env),
            measure(f"logs --since 15m --level ERROR ({big_label})",
                    [*cli, "-c", str(work / "big.yaml"), "logs", "--since", "15m", "--level", "ERROR"], args.runs, env),
            measure(f"logs --level ERROR -n 100 ({big_label}, backwards)",
                    [*cli, "-c", str(work / "big.yaml"), "logs", "--level", "ERROR", "-n", "100"], args.runs, env),
            measure("logs --since 15m --patterns (16 MiB)",
                    [*cli, "-c", str(work / "small.yaml"), "logs", "--since", "15m", "--patterns"], args.runs, env),
            measure(f"guide: grep ERROR | awk '{{print $4}}' | sort | uniq -c | sort -nr ({big_label})",
                    ["grep", "ERROR", str(big / "email-sender.log"), "|", "awk", "'{print $4}'", "|", "sort", "|",
                     "uniq", "-c", "|", "sort", "-nr"], args.runs, shell=True),
        ]
        print(json.dumps({"size_mib": round(size / 2**20), "lines": lines, "recent_lines": args.recent,
                          "runs": args.runs, "load_average": os.getloadavg(), "results": results}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
