"""``es-doctor load``: the guide's "Tests de Charge", a bounded fixed-rate load test of the target's API."""

from __future__ import annotations

import signal
import sys
import threading
from enum import StrEnum
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from es_doctor.cli.common import ConfigOpt, TargetOpt, load
from es_doctor.errors import ExitStatus
from es_doctor.load.plan import Scenario

if TYPE_CHECKING:
    from es_doctor.config import Target
    from es_doctor.load.plan import Plan
    from es_doctor.load.stats import Recorder


class LoadFormat(StrEnum):
    table = "table"
    json = "json"


EPILOG = """\b
Examples:
  es-doctor -t lab load                       # api scenario, 20 req/s, 30 s
  es-doctor -t lab load --scenario vectors --rps 50 --duration 1m30s --concurrency 32
  es-doctor -t lab load --scenario mixed -f json > load.json
  es-doctor -t staging load --rps 10 -d 20s --yes   # not the lab: --yes

Exit code like diagnose: 0 OK, 1 WARN, 2 CRIT (p95 latency and error rate against the target's
thresholds), 3 UNKNOWN (nothing answered, the generator fell behind, or an endpoint answered
only 4xx: not served, or refused); 64 refused (not the lab
without --yes, over the target's load.max_rps / max_duration_s / max_concurrency); 69 the API does
not answer; 130 Ctrl-C (the partial result is printed, the test data removed)."""


def load_test(
    ctx: typer.Context,
    scenario: Annotated[Scenario, typer.Option("--scenario", metavar="[api|vectors|mixed]",
                                               help="api: reads and task creation; vectors: "
                                               "task creation (vectorised) and vector search; mixed: both.")
                        ] = Scenario.api,
    rps: Annotated[float, typer.Option("--rps", metavar="RATE",
                                       help="Arrival rate: requests started per second, whatever the "
                                       "answers (cap: load.max_rps, default 200).")] = 20.0,
    duration: Annotated[str, typer.Option("--duration", "-d", metavar="DURATION",
                                          help="How long: 30s, 1m30s (cap: load.max_duration_s, "
                                          "default 5m).")] = "30s",
    concurrency: Annotated[int, typer.Option("--concurrency", metavar="N",
                                             help="At most this many requests in flight "
                                             "(cap: load.max_concurrency, default 64).")] = 16,
    timeout: Annotated[str, typer.Option("--timeout", metavar="DURATION",
                                         help="Total deadline of one request (at most 60s).")] = "5s",
    fmt: Annotated[LoadFormat, typer.Option("--format", "-f", metavar="[table|json]",
                                            help="Output format.")] = LoadFormat.table,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Run against a target that is not the lab.")] = False,
    config: ConfigOpt = None,
    target: TargetOpt = None,
) -> int:
    """Load-test the target's API at a fixed arrival rate; grade p95 latency and error rate like diagnose.

    Refuses a target that is not the lab without --yes. Every task it creates is titled
    es-doctor-load-<run id> and removed afterwards (vectors, then rows)."""
    from es_doctor.load import run as load_run
    from es_doctor.load.plan import make_plan
    from es_doctor.load.render import render_json, render_table
    from es_doctor.load.stats import Recorder
    from es_doctor.probes.session import ProbeSession

    loaded = load(ctx, config, target)
    tgt = loaded.target
    plan = make_plan(scenario, rps, duration, concurrency, timeout, tgt.load, loaded.target_name)
    with ProbeSession(tgt, timeout=10.0) as session:
        load_run.authorise(session, tgt, loaded.target_name, yes)
        load_run.preflight(session, loaded.target_name)
        stop = threading.Event()
        rec = Recorder(plan)
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGINT, on_sigint)
        try:
            _run_with_progress(plan, tgt, stop, rec)
        finally:
            signal.signal(signal.SIGINT, previous)
        if rec.interrupted:
            typer.echo(f"interrupted: stopped after {rec.elapsed_s:.1f}s; removing the test data "
                       f"({plan.marker})…", err=True)
        res = load_run.graded(rec, tgt, loaded.target_name)
        try:
            res.test_data = load_run.remove_test_data(session, tgt, plan, rec)
        except KeyboardInterrupt:
            typer.echo(f"interrupted while removing the test data: records titled '{plan.marker} …' may be left",
                       err=True)
            res.test_data = {"marker": plan.marker, "left": ["removal interrupted"]}
            rec.interrupted = True
    if rec.interrupted:
        res.exit_code = int(ExitStatus.INTERRUPTED)
    typer.echo(render_json(res) if fmt is LoadFormat.json else render_table(res))
    return int(ExitStatus.INTERRUPTED) if rec.interrupted else res.exit_code


def _run_with_progress(plan: Plan, tgt: Target, stop: threading.Event, rec: Recorder) -> None:
    """The run, with a live progress line on stderr when it is a terminal (nothing otherwise)."""
    from es_doctor.load import run as load_run
    from es_doctor.load.render import progress_line

    if not sys.stderr.isatty():
        load_run.run(plan, tgt, stop, None, rec)
        return
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = Console(stderr=True, highlight=False)
    with Live(Text(""), console=console, auto_refresh=False, transient=True) as live:
        def tick(r: Recorder, elapsed: float) -> None:
            live.update(Text(progress_line(plan, r, elapsed)), refresh=True)

        load_run.run(plan, tgt, stop, tick, rec)
