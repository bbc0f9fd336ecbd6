#!/usr/bin/env python3
"""Time ``es-doctor diagnose`` against the guide's manual diagnostics, on the same stack.

The manual procedure is the guide's own commands (curl, docker, psql, grep), generated from
the target's addresses into a shell script and run in sequence, as an operator would paste
them. Prints both wall times, the ratio, how many things each verifies, the wall time of
``es-doctor --help`` (target: 150 ms or less) and the peak memory of diagnose.

    python benchmarks/diagnose_vs_manual.py -t lab [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from es_doctor.config import load_config, resolve_secret


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


def timed(argv: list[str], env: dict[str, str]) -> float:
    begin = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - begin


def peak_rss_kb(argv: list[str], env: dict[str, str]) -> int:
    """Peak RSS of one run of ``argv`` alone, measured by a fresh wrapper process."""
    wrapper = ("import resource, subprocess, sys\n"
               "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", wrapper, *argv], env=env, capture_output=True, text=True, check=False)
    return int(out.stdout.strip() or 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-t", "--target", default="lab")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = dict(os.environ)
    exe = shutil.which("es-doctor") or ""
    base = [exe] if exe else [sys.executable, "-m", "es_doctor"]

    help_times = [timed([*base, "--help"], env) for _ in range(max(5, args.runs))]
    script, manual_count = manual_script(args.target)
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as handle:
        handle.write(script)
        script_path = handle.name
    manual = [timed(["sh", script_path], env) for _ in range(args.runs)]
    diag_argv = [*base, "diagnose", "-t", args.target, "--format", "json"]
    diagnose = [timed(diag_argv, env) for _ in range(args.runs)]
    peak_kb = peak_rss_kb(diag_argv, env)

    from es_doctor.checks.registry import load_all

    checks = len(load_all())
    m, d = statistics.median(manual), statistics.median(diagnose)
    print(f"manual guide commands : {m:6.2f} s median of {args.runs} ({manual_count} commands, read by a human)")
    print(f"es-doctor diagnose    : {d:6.2f} s median of {args.runs} ({checks} checks, graded against thresholds)")
    print(f"ratio manual/diagnose : {m / d:6.2f}x  (target: > 1, es-doctor faster while checking more)")
    print(f"es-doctor --help      : {statistics.median(help_times) * 1000:6.0f} ms median (target: <= 150 ms)")
    print(f"diagnose peak RSS     : {peak_kb / 1024:6.1f} MiB")
    Path(script_path).unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
