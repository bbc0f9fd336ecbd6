"""Regenerate tests/unit/fixtures/pprof/: real profiles from the lab's Go program (lab/go/pprofd.go)
and what `go tool pprof -top` says of each (the unit tests compare es-doctor's summary with it).

    .venv/bin/python scripts/make-pprof-fixtures.py      # needs Go (apt-get install golang-go)
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from es_doctor.lab import pprofd

OUT = Path(__file__).resolve().parents[1] / "tests" / "unit" / "fixtures" / "pprof"
UNITS = {"heap": "B", "cpu": "ns", "goroutine": ""}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - loopback, our own program
        data: bytes = response.read()
        return data


def top(path: Path, kind: str) -> str:
    unit = ["-unit=" + UNITS[kind]] if UNITS[kind] else []
    return subprocess.run(["go", "tool", "pprof", "-top", "-nodecount=25", *unit, str(path)], capture_output=True,
                          text=True, check=True, timeout=60).stdout


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        binary = pprofd.build(Path(work))
        faults = Path(work) / "faults.json"
        faults.write_text(json.dumps({"faults": []}))
        port = free_port()
        proc = subprocess.Popen([str(binary), "-port", str(port), "-faults-file", str(faults)])
        base = f"http://127.0.0.1:{port}/debug/pprof"
        try:
            time.sleep(1.0)
            shots = {"goroutine-base": get(f"{base}/goroutine"), "heap-base": get(f"{base}/heap?gc=1")}
            faults.write_text(json.dumps({"faults": ["goroutine-leak", "heap-growth"]}))
            time.sleep(3.0)
            shots["goroutine-leak"] = get(f"{base}/goroutine")
            shots["heap-growth"] = get(f"{base}/heap?gc=1")
            shots["cpu"] = get(f"{base}/profile?seconds=2")
        finally:
            proc.terminate()
            proc.wait(10)
    for name, data in shots.items():
        path = OUT / f"{name}.pb.gz"
        path.write_bytes(data)
        (OUT / f"{name}.top.txt").write_text(top(path, name.split("-")[0]))
        print(f"{path} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
