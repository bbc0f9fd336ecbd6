"""``es-doctor serve``: diagnose every target on a schedule; /metrics, a status page and a JSON API."""

from __future__ import annotations

import threading
from typing import Annotated

import typer

from es_doctor.cli.common import ConfigOpt, state
from es_doctor.errors import ExitStatus, UnavailableError, UsageError


def serve(
    ctx: typer.Context,
    targets: Annotated[list[str] | None, typer.Option("--targets", "-T", metavar="NAME",
                                                      help="Target to watch (repeatable); "
                                                      "default: -t, else the default target.")] = None,
    all_targets: Annotated[bool, typer.Option("--all-targets", help="Every target of the config file.")] = False,
    interval: Annotated[str | None, typer.Option("--interval", metavar="DURATION",
                                                 help="Between two runs of a target: 30s, 1m30s "
                                                 "(default: serve.interval_s).")] = None,
    listen: Annotated[str | None, typer.Option("--listen", metavar="HOST:PORT",
                                               help="HOST:PORT (default: serve.listen of the config, "
                                               "loopback); off loopback a token is required.")] = None,
    print_scrape_config: Annotated[bool, typer.Option("--print-scrape-config",
                                                      help="Print the Prometheus scrape job and exit.")] = False,
    print_alertmanager_config: Annotated[bool, typer.Option(
        "--print-alertmanager-config", help="Print Alertmanager's receiver and route for this daemon's alert "
        "receiver (POST /api/v1/alerts) and exit.")] = False,
    config: ConfigOpt = None,
) -> int:
    """Watch the targets: run their diagnosis every interval, serve /metrics, / and /api/v1 (read-only).
    SIGHUP reloads the configuration (a bad one is refused, the old one kept)."""
    import signal

    from es_doctor.config import load_targets
    from es_doctor.serve.daemon import Daemon, Settings, settings_from
    from es_doctor.serve.fleet import alertmanager_config, scrape_config
    from es_doctor.units import DurationError, parse_duration

    st = state(ctx)
    names = list(targets or st.targets)
    try:
        interval_s = parse_duration(interval, name="--interval") if interval else None
    except DurationError as exc:
        raise UsageError(str(exc)) from exc
    path = config or st.config_path

    def load() -> Settings:
        return settings_from(load_targets(path, names, all_targets), listen, interval_s)

    settings = load()
    if print_scrape_config:
        typer.echo(scrape_config(settings))
        return int(ExitStatus.OK)
    if print_alertmanager_config:
        first = next(iter(settings.loaded.values()))
        typer.echo(alertmanager_config(settings, first.config.remediation.max_alerts))
        if not settings.token:
            typer.echo("es-doctor: warning: serve.token is not set: the alert receiver is off until it is", err=True)
        return int(ExitStatus.OK)

    from es_doctor.serve.http import Server

    _fewer_malloc_arenas()
    # the GIL is handed over every 1 ms instead of 5: a request waits less behind the checks' parsing
    import sys

    sys.setswitchinterval(0.001)
    daemon = Daemon(load)
    try:
        server = Server(daemon)
    except OSError as exc:
        daemon.store.close()
        raise UnavailableError(f"cannot listen on {settings.listen}: {exc.strerror or exc}") from exc
    stop = threading.Event()

    def on_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    daemon.install_sighup()
    daemon.start()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="serve:http",
                              daemon=True)
    thread.start()
    settings.port = server.server_port  # :0 picks a free port
    typer.echo(f"es-doctor serve: http://{settings.listen}/ "
               f"watching {', '.join(settings.targets)} every {settings.interval_s:g}s"
               f"{' (bearer token required)' if settings.token else ''}"
               f"{'; alert receiver on POST /api/v1/alerts' if settings.token else '; alert receiver off (no token)'}",
               err=True)
    while not stop.wait(1.0):
        pass
    typer.echo("es-doctor serve: stopping", err=True)
    server.shutdown()
    server.server_close()
    daemon.stop()
    return int(ExitStatus.OK)


def _fewer_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives threads that allocate at once their own malloc arenas (up to 8 per core) and keeps their
    freed memory: with a thread per target and one per check, that is most of a long-running daemon's RSS.
    Two arenas are plenty for work that mostly waits on the network (measured: benchmarks/serve_cost.py)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
