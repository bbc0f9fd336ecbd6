#!/usr/bin/env python3
"""Time ``es-doctor diagnose`` against the guide's manual diagnostics, on the same stack, paired.

The manual procedure is the guide's own commands (curl, docker, psql, grep), generated from
the target's addresses into a shell script and run in sequence, as an operator would paste
them. Runs are paired: each pair runs both (the order alternates pair by pair, so neither always
runs on a warmer machine), and the ratio manual/diagnose is taken within each pair; the report
gives the median and the spread (min, quartiles, max) over the pairs, for wall time and for CPU
time (user + system of the process and its children, from ``wait4``'s rusage: the engine's and
servers' own work is in neither). Also measured: the machine's load average before and after,
``es-doctor --help``, diagnose's peak RSS, and a second diagnose without Prometheus (the metrics
window starts at the previous run's scrape).

Before measuring, es-doctor's own modules are byte-compiled (as ``pip install`` does; an
editable checkout run with ``PYTHONDONTWRITEBYTECODE=1`` would otherwise compile its sources on
every start): ``--no-compile`` measures without.

    python benchmarks/diagnose_vs_manual.py -t lab [--pairs 9] [--no-compile]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from machine import calibration, load

from es_doctor.config import load_config
from es_doctor.secrets import resolve_secret

#: the issue's targets (#14)
RATIO_TARGET = 3.0
DIAGNOSE_CPU_TARGET_S = 0.5  # #25 (was 0.6 in #14)
SECOND_RUN_TARGET_S = 1.0
HELP_TARGET_MS = 100.0
RSS_TARGET_MB = 100.0


def manual_script(target_name: str) -> tuple[str, int]:
    """The guide's diagnostic commands for every symptom class; returns (script, number of commands)."""
    t = load_config(None, target_name).target
    api, metrics, qdrant = t.service.api_url.rstrip("/"), t.service.metrics_url, t.qdrant.url.rstrip("/")
    prom = t.prometheus.url.rstrip("/")
    port = urlsplit(api).port or 8080
    logs = Path(t.service.log_dir).expanduser()
    log = logs / t.service.main_log
    container = t.service.container
    docker = f"docker -H {shlex.quote(t.docker.host)}" if t.docker.host else "docker"
    dsn = resolve_secret(t.postgres.dsn) or ""
    pg_env = f"PGPASSWORD={shlex.quote(resolve_secret(t.postgres.password) or '')} "
    vector = "[" + ",".join(["0.1"] * t.qdrant.vector_size) + "]"
    coll = t.qdrant.collection
    commands = [
        # 1. Service ne démarre pas
        f"{docker} logs --tail 50 {container}",
        f"{docker} ps -a",
        f"ss -ltnp | grep :{port}",
        f"curl -s {api}/health",
        f"curl -s {api}/ready",
        f"{docker} exec {container} env | grep GO_ENV",
        f"{docker} cp {container}:{t.service.config_path} - | tar -xO",
        f"curl -s {qdrant}/collections",
        f"{pg_env}psql {shlex.quote(dsn)} -c 'SELECT 1;'",
        # 2. Performance dégradée
        f"curl -s {metrics} | grep email_sender",
        f"grep SLOW {log} | tail -20",
        f"{docker} stats --no-stream {container}",
        # 3. Vectorisation
        f"curl -s -X GET {qdrant}/collections",
        f"curl -s -X GET {qdrant}/collections/{coll}",
        f"curl -s -X POST {qdrant}/collections/{coll}/points/search -H 'Content-Type: application/json' "
        f"-d '{{\"vector\": {vector}, \"limit\": 5}}'",
        # 4. Inter-managers
        f"curl -s {api}/api/v1/managers/status",
        f"grep EventBus {log}",
        f"curl -s {api}/api/v1/managers/discovery",
        # 5. Déploiement
        f"cat {logs}/deployment-*.log",
        f"{docker} ps",
        f"{docker} volume ls",
        # 6. Monitoring
        f"curl -s {metrics}",
        f"curl -s {prom}/api/v1/targets",
        f"curl -s {prom}/api/v1/alerts",
    ]
    body = "\n".join(f"{c} >/dev/null 2>&1 || true" for c in commands)
    return f"#!/bin/sh\n{body}\n", len(commands)


@dataclass(frozen=True)
class Run:
    wall: float  #: seconds
    cpu: float  #: user + system seconds of the process and the children it waited for
    max_rss_kb: int
    stdout: str = ""


def measure(argv: list[str], env: dict[str, str], keep_output: bool = False) -> Run:
    """One run of ``argv``: its wall time and its own rusage (wait4), not the benchmark's."""
    begin = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE if keep_output else subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    out = proc.stdout.read().decode("utf-8", "replace") if proc.stdout is not None else ""
    _pid, _status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - begin
    proc.returncode = os.waitstatus_to_exitcode(_status)
    if proc.stdout is not None:
        proc.stdout.close()
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, out)


def spread(values: list[float]) -> str:
    """median [min, q1–q3, max]"""
    ordered = sorted(values)
    q1, _q2, q3 = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else (ordered[0],) * 3
    return f"{statistics.median(ordered):6.2f} [min {ordered[0]:.2f}, q1–q3 {q1:.2f}–{q3:.2f}, max {ordered[-1]:.2f}]"


def compile_package() -> None:
    import compileall

    import es_doctor

    compileall.compile_dir(str(Path(es_doctor.__file__).parent), quiet=1)


def window_sources(report_json: str) -> set[str]:
    try:
        report = json.loads(report_json)
    except ValueError:
        return set()
    return {str(e.get("value")) for f in report.get("findings", []) for e in f.get("evidence", [])
            if e.get("name") == "window from"}


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-t", "--target", default="lab")
    parser.add_argument("--pairs", type=int, default=9, help="paired runs (at least 7)")
    parser.add_argument("--no-compile", action="store_true", help="do not byte-compile es-doctor first")
    parser.add_argument("--second-runs", type=int, default=5, help="diagnoses without Prometheus, after a first one")
    args = parser.parse_args()
    pairs = max(7, args.pairs)
    env = dict(os.environ)
    exe = shutil.which("es-doctor") or ""
    base = [exe] if exe else [sys.executable, "-m", "es_doctor"]
    if not args.no_compile:
        compile_package()
    load_before = load()
    calib_before = calibration()

    helps = [measure([*base, "--help"], env) for _ in range(9)]
    script, manual_count = manual_script(args.target)
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as handle:
        handle.write(script)
        script_path = handle.name
    manual_argv = ["sh", script_path]
    diag_argv = [*base, "diagnose", "-t", args.target, "--format", "json"]
    measure(manual_argv, env)  # warm-up of both (caches, connections of the servers), not counted
    measure(diag_argv, env)
    manual: list[Run] = []
    diagnose: list[Run] = []
    for i in range(pairs):
        if i % 2 == 0:
            manual.append(measure(manual_argv, env))
            diagnose.append(measure(diag_argv, env))
        else:
            diagnose.append(measure(diag_argv, env))
            manual.append(measure(manual_argv, env))
    Path(script_path).unlink()

    # without Prometheus: a first run (two scrapes, 2 s apart), then runs within a minute of the previous one
    no_prom = {**env, "ES_DOCTOR_PROMETHEUS__ENABLED": "false"}
    first = measure(diag_argv, no_prom, keep_output=True)
    seconds: list[Run] = []
    sources: set[str] = set()
    for _ in range(args.second_runs):
        time.sleep(2.5)  # the previous run's scrape is then older than the window (2 s): no waiting
        run = measure(diag_argv, no_prom, keep_output=True)
        seconds.append(run)
        sources |= window_sources(run.stdout)
    load_after = load()
    calib_after = calibration()
    machine = (f"[calibration {min(calib_before, calib_after):.2f} s CPU (before {calib_before:.2f}, after "
               f"{calib_after:.2f}); load {load_before} -> {load_after}]")

    from es_doctor.checks.registry import load_all

    checks = len([s for s in load_all().values() if not s.on_demand])
    wall_ratios = [m.wall / d.wall for m, d in zip(manual, diagnose, strict=True)]
    cpu_ratios = [m.cpu / d.cpu for m, d in zip(manual, diagnose, strict=True) if d.cpu > 0]
    help_ms = statistics.median(r.wall for r in helps) * 1000
    peak_mb = max(r.max_rss_kb for r in diagnose) / 1024
    ratio = statistics.median(wall_ratios)
    diag_cpu = statistics.median(r.cpu for r in diagnose)
    second = statistics.median(r.wall for r in seconds)
    print(f"load average (1/5/15 min): before {load_before}, after {load_after}; {os.cpu_count()} CPUs")
    print(f"calibration sum(i*i for i in range(3_000_000)), best of 3: before {calib_before:.3f} s, "
          f"after {calib_after:.3f} s CPU")
    print(f"bytecode: {'compiled first (as pip install does)' if not args.no_compile else 'as found'}")
    print(f"{pairs} pairs, order alternating; seconds, median [min, quartiles, max]")
    print(f"manual guide commands ({manual_count}, read by a human)  wall {spread([r.wall for r in manual])}")
    print(f"{'':44}  cpu  {spread([r.cpu for r in manual])}")
    print(f"es-doctor diagnose ({checks} checks, graded){'':13}  wall {spread([r.wall for r in diagnose])}")
    print(f"{'':44}  cpu  {spread([r.cpu for r in diagnose])}")
    print(f"ratio manual/diagnose, pair by pair{'':9}  wall {spread(wall_ratios)}x")
    print(f"{'':44}  cpu  {spread(cpu_ratios)}x")
    print(f"without Prometheus: first diagnose {first.wall:.2f} s wall; the next {len(seconds)} "
          f"(2.5 s apart) wall {spread([r.wall for r in seconds])}")
    print(f"{'':44}  window: {', '.join(sorted(sources)) or 'unknown'}")
    help_cpu_ms = statistics.median(r.cpu for r in helps) * 1000
    print(f"es-doctor --help: {help_ms:.0f} ms median wall, {help_cpu_ms:.0f} ms CPU")
    print(f"diagnose peak RSS: {peak_mb:.1f} MiB")
    print("targets (#14, #25: on a machine whose calibration takes >= 0.3 s):")
    print(f"  ratio >= {RATIO_TARGET:.1f}x (median of pairs): {ratio:.2f}x {met(ratio >= RATIO_TARGET)} {machine}")
    print(f"  diagnose CPU <= {DIAGNOSE_CPU_TARGET_S} s: {diag_cpu:.2f} s "
          f"{met(diag_cpu <= DIAGNOSE_CPU_TARGET_S)} {machine}")
    print(f"  second diagnose without Prometheus <= {SECOND_RUN_TARGET_S:.0f} s: {second:.2f} s "
          f"{met(second <= SECOND_RUN_TARGET_S)} {machine}")
    print(f"  --help <= {HELP_TARGET_MS:.0f} ms: {help_ms:.0f} ms {met(help_ms <= HELP_TARGET_MS)} {machine}")
    peak_decimal_mb = peak_mb * 1.048576
    print(f"  peak RSS <= {RSS_TARGET_MB:.0f} MB: {peak_decimal_mb:.0f} MB "
          f"{met(peak_decimal_mb <= RSS_TARGET_MB)} {machine}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
