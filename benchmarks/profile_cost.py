#!/usr/bin/env python3
"""What ``es-doctor profile`` costs.

1. The pprof reader on a large synthetic profile (valid ``profile.proto``: N samples, stacks of D frames
   drawn from F functions, gzip-compressed as Go sends them): parse + summary time and peak RSS, each in a
   fresh interpreter.
2. End to end against the lab's real Go program (built here; needs Go): ``es-doctor profile goroutine`` and
   ``heap`` wall time next to ``go tool pprof -top`` on the file es-doctor saved.

    python benchmarks/profile_cost.py [--samples 200000] [--depth 30] [--functions 5000] [--runs 3]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def synthetic(samples: int, depth: int, functions: int, seed: int = 7) -> bytes:
    """A CPU-shaped profile (samples/count, cpu/nanoseconds); location i calls function i."""
    rng = random.Random(seed)
    strings = ["", "samples", "count", "cpu", "nanoseconds", *(f"main.function{i:05d}" for i in range(functions))]
    parts = [_field(1, _field(1, 1) + _field(2, 2)), _field(1, _field(1, 3) + _field(2, 4))]
    for _ in range(samples):
        stack = b"".join(_varint(rng.randrange(1, functions + 1)) for _ in range(depth))
        values = _varint(1) + _varint(10_000_000)
        parts.append(_field(2, _field(1, stack) + _field(2, values)))
    for i in range(1, functions + 1):
        parts.append(_field(4, _field(1, i) + _field(4, _field(1, i) + _field(2, i))))
        parts.append(_field(5, _field(1, i) + _field(2, 4 + i)))
    parts.extend(_field(6, s.encode()) for s in strings)
    parts.append(_field(10, 30_000_000_000))
    return gzip.compress(b"".join(parts))


READER = """
import resource, sys, time
from es_doctor.profiles.proto import parse
from es_doctor.profiles.summary import summarize
data = open(sys.argv[1], "rb").read()
t = time.perf_counter()
s = summarize(parse(data), "cpu")
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, len(s.entries))
"""


def reader_cost(path: Path, runs: int) -> None:
    times, rss = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", READER, str(path)], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
        seconds, peak, _entries = out.stdout.split()
        times.append(float(seconds))
        rss.append(int(peak) / 1024)
    print(f"reader: {path.stat().st_size / 1e6:.1f} MB gzip: parse+summary median {statistics.median(times):.2f} s, "
          f"peak RSS {max(rss):.0f} MiB")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True, timeout=300).stdout
    return time.perf_counter() - start, out


def end_to_end(runs: int) -> None:
    from es_doctor.lab import pprofd

    go = shutil.which("go")
    if go is None:
        print("end to end: skipped, go is not installed (apt-get install golang-go)")
        return
    with tempfile.TemporaryDirectory() as work:
        binary = pprofd.build(Path(work))
        faults = Path(work) / "faults.json"
        faults.write_text(json.dumps({"faults": ["goroutine-leak", "heap-growth"]}))
        port = free_port()
        proc = subprocess.Popen([str(binary), "-port", str(port), "-faults-file", str(faults)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = {**os.environ, "ES_DOCTOR_STATE_DIR": str(Path(work) / "state"),
               "ES_DOCTOR_SERVICE__PPROF_URL": f"http://127.0.0.1:{port}/debug/pprof",
               "ES_DOCTOR_CONFIG": str(Path(work) / "none.yaml")}
        env.pop("ES_DOCTOR_CONFIG")
        try:
            time.sleep(10)  # ~400 leaked goroutines, ~5 MiB retained
            for kind in ("goroutine", "heap"):
                mine, theirs = [], []
                for _ in range(runs):
                    seconds, out = timed([sys.executable, "-m", "es_doctor", "profile", kind, "--format", "json"], env)
                    mine.append(seconds)
                    saved = json.loads(out)["saved"]
                    seconds, _ = timed([go, "tool", "pprof", "-top", saved], env)
                    theirs.append(seconds)
                print(f"{kind}: es-doctor profile (fetch, save, summary) median {statistics.median(mine):.2f} s; "
                      f"go tool pprof -top on the saved file median {statistics.median(theirs):.2f} s")
        finally:
            proc.terminate()
            proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--depth", type=int, default=30)
    parser.add_argument("--functions", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(describe())  # beside the results: figures of another machine compare through it (#25)
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "big.pb.gz"
        path.write_bytes(synthetic(args.samples, args.depth, args.functions))
        print(f"synthetic profile: {args.samples} samples x {args.depth} frames, {args.functions} functions")
        reader_cost(path, args.runs)
    end_to_end(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
