"""Holds a TCP port: ``python -m es_doctor.lab.squatter --port P [--host 127.0.0.1]``.

The lab's "port already in use" fault: it binds and listens on the port, accepts connections and
closes them at once, until SIGTERM/SIGINT (exit 0). Its command line names it (``squatter`` is in
argv, the process name is ``lab-squatter``) so ``ps``/``netstat``/psutil show who holds the port.
"""

from __future__ import annotations

import argparse
import contextlib
import select
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType

PROCESS_TAG = "lab-port-squatter"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="es_doctor.lab.squatter", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--wait", type=float, default=8.0, help="seconds to retry a busy port")
    parser.add_argument("--tag", default=PROCESS_TAG, help="free text kept in argv (ps shows it)")
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError):  # process name shown by ps/netstat/psutil (15 chars max)
        Path("/proc/self/comm").write_text("lab-squatter", encoding="utf-8")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + args.wait
    while True:  # the previous holder may still be closing its socket
        try:
            sock.bind((args.host, args.port))
            break
        except OSError as exc:
            if time.monotonic() >= deadline:
                sys.stderr.write(f"squatter: cannot bind {args.host}:{args.port}: {exc.strerror or exc}\n")
                sys.exit(1)
            time.sleep(0.1)
    sock.listen(16)
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sys.stderr.write(f"squatter ({args.tag}) holding {args.host}:{args.port}\n")
    sys.stderr.flush()
    while not stopping:
        try:
            ready, _, _ = select.select([sock], [], [], 0.2)
        except InterruptedError:
            continue
        if ready:
            try:
                conn, _addr = sock.accept()
                conn.close()
            except OSError:
                continue
    sock.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
