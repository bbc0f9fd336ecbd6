"""The lab's Go program (``go/pprofd.go``): real ``net/http/pprof`` profiles for ``es-doctor profile``.

Where ``go`` is installed, ``lab up`` builds it (offline: ``GOPROXY=off``, a private ``GOCACHE`` and
``GOPATH``, standard library only) into the user's cache (``$ES_DOCTOR_CACHE_DIR`` or platformdirs'
cache dir, e.g. ``~/.cache/es-doctor``: ``pprofd/pprofd-<hash>``, 0700), the hash of its source and of the
Go version, so it is built once per source and Go for every lab (a build is not lab data: ``lab down
--volumes`` leaves it, and a new lab does not compile again); the build runs through :func:`es_doctor.tools.run_tool`
(its own process group, bounded in time and output). The program runs next to the stack as a host
process on 127.0.0.1 and serves the lab target's ``pprof_url``; it polls the lab's faults file for
``goroutine-leak`` and ``heap-growth``. Without Go the target keeps the Python stand-in's text pages,
and ``lab status`` says pprof is unavailable and how to get it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from es_doctor.lab import infra, procs
from es_doctor.lab.fault_table import used

FAULTS = used("pprofd", "goroutine-leak", "heap-growth")
NAME = "pprofd"
BUILD_TIMEOUT_S = 300.0
INSTALL_HINT = "apt-get install golang-go, then es-doctor lab down && es-doctor lab up"


def source() -> bytes:
    return resources.files("es_doctor.lab").joinpath("go", "pprofd.go").read_bytes()


def go_binary() -> str | None:
    return shutil.which("go")


def unavailable_reason() -> str | None:
    """Why the lab cannot serve real pprof here (None: it can)."""
    if go_binary() is None:
        return f"go is not installed ({INSTALL_HINT})"
    return None


def _go_env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update({"GOPROXY": "off", "GOFLAGS": "", "GOCACHE": str(work / "cache"),
                "GOPATH": str(work / "gopath"), "CGO_ENABLED": "0", "GOTOOLCHAIN": "local",
                "HOME": str(work)})
    return env


def cache_dir() -> Path:
    """Where builds are kept: ``$ES_DOCTOR_CACHE_DIR``, else the platform's user cache dir for es-doctor."""
    configured = os.environ.get("ES_DOCTOR_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("es-doctor", appauthor=False))


@functools.cache
def _go_version(go: str) -> str:
    """``go version`` of that go, asked once per process (``lab up`` builds, then starts)."""
    from es_doctor.tools import run_tool

    with tempfile.TemporaryDirectory(prefix="es-doctor-go-") as work:
        return run_tool([go, "version"], _go_env(Path(work)), 30).strip()


def binary_path(into: Path | None = None) -> Path:
    """Where the build of this source (and this Go) lives (under ``into``, by default :func:`cache_dir`)."""
    go = go_binary()
    if go is None:
        raise infra.InfraError(f"pprof unavailable: {unavailable_reason()}")
    digest = hashlib.sha256(source() + _go_version(go).encode()).hexdigest()[:16]
    return (cache_dir() if into is None else into) / NAME / f"{NAME}-{digest}"


def build(into: Path | None = None) -> Path:
    """The program, built once per source and Go version (reused by every lab)."""
    from es_doctor.files import private_dir
    from es_doctor.tools import ToolError, run_tool

    out = binary_path(into)
    if out.is_file() and os.access(out, os.X_OK):
        return out
    private_dir(out.parent)  # a program we run later: nobody else may write there
    go = go_binary()
    assert go is not None
    with tempfile.TemporaryDirectory(prefix="es-doctor-go-") as work:
        main = Path(work) / "main.go"  # a file list: no module, nothing to download
        main.write_bytes(source())
        built = Path(work) / NAME
        try:
            run_tool([go, "build", "-trimpath", "-o", str(built), str(main)], _go_env(Path(work)), BUILD_TIMEOUT_S)
        except ToolError as exc:
            raise infra.InfraError(f"building the lab's pprof program failed: {exc}") from None
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.copy2(built, tmp)
        tmp.replace(out)
    return out


def pidfile(run_dir: Path) -> Path:
    return run_dir / f"{NAME}.pid"


def start(run_dir: Path, port: int, faults_file: Path, timeout: float = 30.0) -> None:
    """Build (if needed) and start the program on 127.0.0.1:``port``, wait until it answers."""
    if procs.process(pidfile(run_dir)) is not None:
        return
    (run_dir / f"{NAME}.error").unlink(missing_ok=True)
    binary = build()
    procs.spawn([str(binary), "-port", str(port), "-faults-file", str(faults_file)], pidfile(run_dir),
                run_dir / f"{NAME}.out")
    infra.wait_until(lambda: infra.http_ok(f"http://127.0.0.1:{port}/health"), timeout, "the lab's pprof program",
                     0.1)


def stop(run_dir: Path) -> None:
    procs.stop(pidfile(run_dir), timeout=5)


def failed(run_dir: Path, reason: str) -> None:
    """Record why the program could not start (``lab status`` says it)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"{NAME}.error").write_text(reason, encoding="utf-8")


def state(run_dir: Path, port: int) -> str:
    """One line for ``lab status``."""
    reason = unavailable_reason()
    if procs.process(pidfile(run_dir)) is not None:
        return f"running (Go net/http/pprof on http://127.0.0.1:{port}/debug/pprof)"
    if reason:
        return f"unavailable: {reason}"
    error = run_dir / f"{NAME}.error"
    if error.is_file():
        return f"unavailable: {error.read_text(encoding='utf-8', errors='replace').strip()[:500]}"
    return "not running (es-doctor lab up starts it)"
