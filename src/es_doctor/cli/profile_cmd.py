"""``es-doctor profile cpu|heap|goroutine|list``: the service's Go pprof profiles, saved and summarised."""

from __future__ import annotations

import threading
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from es_doctor.cli.common import ConfigOpt, TargetOpt, load
from es_doctor.errors import ExitStatus, UsageError

if TYPE_CHECKING:
    from es_doctor.config import LoadedConfig
    from es_doctor.profiles.capture import Captured
    from es_doctor.profiles.summary import Kind

EXAMPLES = """

\b
Examples:
  es-doctor profile goroutine            # how many, states, the functions they run
  es-doctor profile heap --compare last  # what grew since the last heap profile
  es-doctor -t staging profile cpu --seconds 10 --format json
  es-doctor profile list

Profiles are saved as <state_dir>/profiles/<target>/<UTC time>-<kind>.pb.gz (never overwritten);
`go tool pprof -top FILE` reads them. A 404 means profiling is off: start the service with
GO_PROFILE=true (the guide), or set service.pprof_url."""

profile_app = typer.Typer(help="Fetch, save and summarise the service's Go pprof profiles." + EXAMPLES,
                          no_args_is_help=True)


class OutFormat(StrEnum):
    text = "text"
    json = "json"


CompareOpt = Annotated[str | None, typer.Option(
    "--compare", help="An earlier profile to compare with: a file, a saved profile's name (profile list), or "
    "'last' (the target's newest of this kind).", show_default=False, metavar="PROFILE")]
FormatOpt = Annotated[OutFormat, typer.Option("--format", "-f", metavar="[text|json]",
                                              help="text or json (for scripts).")]
TopOpt = Annotated[int, typer.Option("--top", min=1, max=200, metavar="N", help="Functions to list (1-200).")]


def _run(ctx: typer.Context, kind: Kind, seconds: int, compare: str | None, fmt: OutFormat, top: int,
         config: str | None, target: str | None) -> int:
    from es_doctor.profiles import render, store
    from es_doctor.profiles.capture import compare_with, load_saved

    loaded = load(ctx, config, target)
    state_dir = loaded.config.state_dir
    previous: Path | None = None
    before = None
    if compare is not None:  # checked before a profile is taken: a bad argument costs no wait (cpu has no --compare)
        try:
            previous = store.resolve(state_dir, loaded.target_name, compare, kind)
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
        before = load_saved(previous, kind)
    _writable(loaded)
    captured = _capture(loaded, kind, seconds)
    comparison = compare_with(before, captured.summary) if before is not None else None
    out = render.as_json if fmt is OutFormat.json else render.text
    typer.echo(out(captured.summary, target=loaded.target_name, url=captured.url, path=captured.path, top=top,
                   comparison=comparison, previous=previous))
    return int(ExitStatus.OK)


def _writable(loaded: LoadedConfig) -> None:
    """The profile directory can be written (exit 73 otherwise), proved before a profile is taken."""
    from es_doctor.profiles import store
    from es_doctor.statedir import ensure_writable_dir

    ensure_writable_dir(store.target_dir(loaded.config.state_dir, loaded.target_name), "profile directory")


def _capture(loaded: LoadedConfig, kind: Kind, seconds: int) -> Captured:
    """Fetch in a worker thread; the main thread waits (a progress bar for a CPU profile on a terminal)
    and turns Ctrl-C into a cancel: the fetch stops within a quarter second and nothing is saved."""
    from es_doctor.profiles.capture import capture

    cancel = threading.Event()
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            outcome["value"] = capture(loaded.config.state_dir, loaded.target_name, loaded.target.service.pprof_url,
                                       kind, seconds, cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, raised there
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="profile-fetch", daemon=True)
    worker.start()
    try:
        _wait(worker, kind, seconds)
    except KeyboardInterrupt:
        cancel.set()
        worker.join(10)
        raise
    error = outcome.get("error")
    if isinstance(error, BaseException):
        raise error
    value = outcome["value"]
    from es_doctor.profiles.capture import Captured

    assert isinstance(value, Captured)
    return value


def _wait(worker: threading.Thread, kind: Kind, seconds: int) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    if kind != "cpu" or not console.is_terminal:
        while worker.is_alive():
            worker.join(0.1)
        return
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    start = time.monotonic()
    with Progress(TextColumn("CPU profile"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                  TimeRemainingColumn(), console=console, transient=True) as progress:
        task = progress.add_task("cpu", total=seconds)
        while worker.is_alive():
            progress.update(task, completed=min(time.monotonic() - start, seconds))
            worker.join(0.1)


@profile_app.command("cpu")
def cpu(
    ctx: typer.Context,
    seconds: Annotated[int, typer.Option("--seconds", min=1, max=3600, metavar="SECONDS",
                                          help="How long to sample, seconds.")] = 30,
    fmt: FormatOpt = OutFormat.text,
    top: TopOpt = 10,
    config: ConfigOpt = None,
    target: TargetOpt = None,
) -> int:
    """Sample the CPU for N seconds (a progress bar on a terminal; Ctrl-C stops, nothing saved): the
    functions using it, flat and cumulative."""
    return _run(ctx, "cpu", seconds, None, fmt, top, config, target)


@profile_app.command("heap")
def heap(
    ctx: typer.Context,
    compare: CompareOpt = None,
    fmt: FormatOpt = OutFormat.text,
    top: TopOpt = 10,
    config: ConfigOpt = None,
    target: TargetOpt = None,
) -> int:
    """Heap in use by function (flat: allocated there; cumulative: under it); --compare: what grew."""
    return _run(ctx, "heap", 0, compare, fmt, top, config, target)


@profile_app.command("goroutine")
def goroutine(
    ctx: typer.Context,
    compare: CompareOpt = None,
    fmt: FormatOpt = OutFormat.text,
    top: TopOpt = 10,
    config: ConfigOpt = None,
    target: TargetOpt = None,
) -> int:
    """Goroutines: how many, in which state, running which function; --compare: which function's grew
    (a leak)."""
    return _run(ctx, "goroutine", 0, compare, fmt, top, config, target)


@profile_app.command("list")
def list_profiles(
    ctx: typer.Context,
    all_targets: Annotated[bool, typer.Option("--all-targets", help="Every target's saved profiles.")] = False,
    fmt: FormatOpt = OutFormat.text,
    config: ConfigOpt = None,
    target: TargetOpt = None,
) -> int:
    """The saved profiles (of the target, or of all), oldest first."""
    from es_doctor.profiles import render, store

    loaded = load(ctx, config, target)
    saved = store.listing(loaded.config.state_dir, None if all_targets else loaded.target_name)
    typer.echo(render.listing_json(saved) if fmt is OutFormat.json else render.listing_text(saved))
    return int(ExitStatus.OK)
