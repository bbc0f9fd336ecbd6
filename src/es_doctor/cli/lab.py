"""``es-doctor lab up|down|status|faults|fault add|fault clear``: the stand-in stack with fault injection.

The lab lives in ``$ES_DOCTOR_LAB_DIR`` (default ``~/.local/state/es-doctor/lab``); ``lab up``
writes ``target.yaml`` there, which ``es-doctor -t lab`` reads. Heavy modules load inside commands.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from es_doctor.cli import complete
from es_doctor.errors import ExitStatus, UnavailableError, UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from es_doctor.lab.stack import LabStack

lab_app = typer.Typer(help="Run the stand-in stack (service, Qdrant, PostgreSQL, Prometheus) and inject faults.",
                      no_args_is_help=True)
fault_app = typer.Typer(help="Inject or clear a fault.", no_args_is_help=True)
lab_app.add_typer(fault_app, name="fault")

LabDirOpt = Annotated[Path | None, typer.Option("--lab-dir", metavar="DIR",
                                                help="Lab state dir (else $ES_DOCTOR_LAB_DIR).",
                                                show_default=False)]
PortOpt = Annotated[int, typer.Option(min=0, max=65535, metavar="PORT",
                                      help="0: a free port (a restarted lab keeps its ports).")]


def _lab_dir(explicit: Path | None) -> Path:
    from es_doctor.config import lab_dir

    return (explicit or lab_dir()).expanduser()


def _load(explicit: Path | None) -> LabStack:
    from es_doctor.lab.infra import InfraError
    from es_doctor.lab.stack import LabStack

    directory = _lab_dir(explicit)
    if not (directory / "lab.json").is_file():
        raise UnavailableError(f"no lab in {directory} (start one: {self_command()} lab up)")
    try:
        return LabStack.load(directory)
    except InfraError as exc:
        raise UnavailableError(str(exc)) from exc


def _progress(stack: LabStack) -> LabStack:
    """``stack`` saying each step on stderr, with the seconds since the command started (a terminal or not:
    a script's log shows where a slow ``lab up`` spends its time; stdout keeps the result)."""
    import sys
    import time

    started = time.monotonic()

    def say(line: str) -> None:
        print(f"lab: {line}… ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)

    stack.say = say
    return stack


def self_command(argv0: str | None = None, which: str | None = None, cwd: Path | None = None) -> str:
    """How the operator can run es-doctor again: ``es-doctor`` when that is what PATH finds, else the
    path this one was started by (``.venv/bin/es-doctor``), else ``python -m es_doctor``."""
    import shutil
    import sys

    argv0 = sys.argv[0] if argv0 is None else argv0
    found = shutil.which("es-doctor") if which is None else which or None
    here = Path.cwd() if cwd is None else cwd
    started = Path(argv0)
    if started.name != "es-doctor":  # python -m es_doctor, or an embedding
        return f"{sys.executable} -m es_doctor"
    if found and Path(found).resolve() == (here / started).resolve():
        return "es-doctor"
    path = (here / started).resolve()
    if here.resolve() != Path(here.anchor) and path.is_relative_to(here.resolve()):  # .venv/bin/es-doctor
        relative = path.relative_to(here.resolve())
        return str(relative) if relative.parent != Path() else f"./{relative}"
    return str(path)


@lab_app.command("up")
def up(
    mode: Annotated[str, typer.Option(metavar="[auto|docker|process]", help="auto: docker when an engine answers at "
                                       "$DOCKER_HOST, else process; docker; or process (host processes).")]
    = "auto",
    lab_dir: LabDirOpt = None,
    start_dockerd: Annotated[bool, typer.Option("--start-dockerd", help="Start a private Docker engine for this "
                                                "lab dir (one per lab, under /tmp) for docker mode.")] = False,
    api_port: PortOpt = 0, metrics_port: PortOpt = 0, qdrant_port: PortOpt = 0,
    postgres_port: PortOpt = 0, prometheus_port: PortOpt = 0,
    postgres: Annotated[bool, typer.Option(help="Run PostgreSQL (when installed).")] = True,
    prometheus: Annotated[bool, typer.Option(help="Run Prometheus (when installed).")] = True,
) -> int:
    """Start the lab (docker: real containers named as in the stack; process: host processes). A lab that
    is not running is set up afresh: mode, engine and components are detected again (its data is kept)."""
    from es_doctor.lab import infra
    from es_doctor.lab.layout import LabPorts, Mode, engine_host, fresh_settings, private_engine_dir
    from es_doctor.lab.stack import LabStack, detect_absent

    if mode not in {"auto", "docker", "process"}:
        raise UsageError(f"--mode must be auto, docker or process, not {mode!r}")
    directory = _lab_dir(lab_dir)
    stack: LabStack | None = None
    if (directory / "lab.json").is_file():
        stack = _load(directory)
        if not stack.running():  # stopped (lab down, a reboot, its engine gone): start it afresh below
            start_dockerd = start_dockerd or (stack.settings.private_engine is not None and mode != "process")
            stack = None
        elif mode not in ("auto", stack.mode):
            raise UsageError(f"a {stack.mode}-mode lab runs in {directory}; stop it first: "
                             f"{self_command()} lab down")
        elif start_dockerd and not stack.settings.private_engine:
            raise UsageError(f"the lab in {directory} runs on {stack.settings.docker_host}; stop it first "
                             f"({self_command()} lab down) to start it on a private engine")
    try:
        if stack is None:
            host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
            engine = None
            if start_dockerd:
                reason = infra.availability()["docker"]
                if reason:
                    raise UnavailableError(f"cannot start dockerd: {reason}")
                engine = private_engine_dir(directory)
                host = engine_host(engine)
                if not infra.docker_ping(host):
                    infra.start_dockerd(engine)
            reachable = infra.docker_ping(host) if mode != "process" else False
            if mode == "docker" and not reachable:
                raise UnavailableError(f"no Docker engine answers at {host} (set DOCKER_HOST, or --start-dockerd)")
            chosen: Mode = "docker" if reachable else "process"
            ports = LabPorts(api_port, metrics_port, qdrant_port, postgres_port, prometheus_port)
            settings = fresh_settings(directory, chosen, ports, host if chosen == "docker" else None,
                                      engine if chosen == "docker" else None, detect_absent(postgres, prometheus))
            stack = LabStack(directory, use=settings)
        _progress(stack).up()
    except infra.InfraError as exc:
        raise UnavailableError(f"lab did not come up: {exc}") from exc
    _print_status(stack)
    if not stack.settled:
        typer.echo("note: this machine is busy (the lab's test searches and API calls are still slow): "
                   "latency checks may read WARN until it calms down")
    from es_doctor.config import lab_dir as default_lab_dir

    env = "" if directory.resolve() == default_lab_dir().expanduser().resolve() else \
        f"ES_DOCTOR_LAB_DIR={stack.lab_dir} "
    typer.echo(f"\nThe lab is up ({stack.mode} mode). Diagnose it: {env}{self_command()} -t lab diagnose")
    return int(ExitStatus.OK)


@lab_app.command("down")
def down(
    lab_dir: LabDirOpt = None,
    volumes: Annotated[bool, typer.Option("--volumes", help="Also remove the data (volumes, database, Qdrant "
                                          "storage, logs, service state): the next `lab up` starts afresh.")]
    = False,
) -> int:
    """Stop and remove the lab's containers/processes (data kept unless --volumes)."""
    from es_doctor.lab.infra import InfraError

    stack = _progress(_load(lab_dir))
    try:
        notes = stack.down(volumes=volumes)
    except InfraError as exc:
        raise UnavailableError(str(exc)) from exc
    for note in notes:
        typer.echo(note)
    typer.echo(f"lab in {stack.lab_dir} is down" + (" and its data removed" if volumes else ""))
    return int(ExitStatus.OK)


def _print_status(stack: LabStack) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"lab ({stack.mode} mode) in {stack.lab_dir}")
    table.add_column("component")
    table.add_column("state")
    table.add_column("address")
    p = stack.settings.ports
    where = {"postgres": f"127.0.0.1:{p.postgres}", "qdrant": f"http://127.0.0.1:{p.qdrant}",
             "email-sender-go": f"http://127.0.0.1:{p.api} (metrics :{p.metrics})",
             "prometheus": f"http://127.0.0.1:{p.prometheus}"}
    for name, state in stack.status().items():
        table.add_row(name, state, where[name])
    Console().print(table)


@lab_app.command("status")
def status(lab_dir: LabDirOpt = None) -> int:
    """Each component's state; exit 0 when all are healthy, 69 otherwise."""
    from es_doctor.lab.infra import InfraError

    stack = _load(lab_dir)
    try:
        _print_status(stack)
    except InfraError as exc:  # its engine is gone
        raise UnavailableError(f"{exc}: the lab in {stack.lab_dir} is down ({self_command()} lab up starts it)") \
            from exc
    health = stack.health()
    for name, ok in health.items():
        typer.echo(f"{'✓' if ok else '✗'} {name}")
    from es_doctor.lab import pprofd

    typer.echo(f"pprof: {pprofd.state(stack.paths.run, stack.settings.ports.pprof)}")
    from es_doctor.lab import faults

    names = faults.active(stack)
    typer.echo(f"active faults: {', '.join(names) if names else 'none'}")
    return int(ExitStatus.OK if all(health.values()) else ExitStatus.UNAVAILABLE)


@lab_app.command("restart")
def restart(name: Annotated[str, typer.Argument(help="A component: email-sender-go, qdrant, postgres, prometheus.")],
            lab_dir: LabDirOpt = None) -> int:
    """Restart one component through the lab's supervisor (its container, or its host process): the
    target's service.restart_command in process mode."""
    from es_doctor.lab.infra import InfraError
    from es_doctor.lab.layout import SERVICE

    stack = _load(lab_dir)
    try:
        if name == SERVICE:
            stack.restart_service()
        else:
            stack.stop_component(name)
            stack.start_component(name, recreate=True)
            _wait_answering(stack, name)  # a printed cure ends when what it restarted answers again
    except InfraError as exc:
        raise UsageError(str(exc)) from exc
    typer.echo(f"{name} restarted ({stack.mode} mode)")
    return int(ExitStatus.OK)


def _wait_answering(stack: LabStack, name: str, timeout: float = 60.0) -> None:
    """Until the component ``name`` answers (its own health, not the whole lab's: another fault may be on)."""
    import time

    from es_doctor.lab.infra import InfraError

    deadline = time.monotonic() + timeout
    while not stack.health().get(name, True):
        if time.monotonic() > deadline:
            raise InfraError(f"{name} restarted but does not answer after {timeout:.0f} s")
        time.sleep(0.3)


@lab_app.command("faults")
def list_faults(lab_dir: LabDirOpt = None) -> int:
    """Every fault the lab can inject: what it does, the checks it trips and the runbook that cures it
    (from the lab's one fault table); * marks the active ones."""
    from es_doctor.lab import faults
    from es_doctor.lab.fault_table import TABLE

    directory = _lab_dir(lab_dir)
    stack = _load(lab_dir) if (directory / "lab.json").is_file() else None
    active = set(faults.active(stack)) if stack is not None else set()
    width = max(len(spec.name) for spec in TABLE)
    for spec in TABLE:
        mark = "*" if spec.name in active else " "
        typer.echo(f"{mark} {spec.name:<{width}}  {spec.kind:<13}  {spec.description}")
        trips = ", ".join(f"{check} {status}" for check, status in spec.trips.items())
        if trips:
            typer.echo(f"  {'':<{width}}  {'':<13}  trips: {trips}")
        if spec.cure is not None:
            typer.echo(f"  {'':<{width}}  {'':<13}  cure: {_fault_cure(spec.cure, stack)}")
    return int(ExitStatus.OK)


def _fault_cure(cure: tuple[str, Mapping[str, str]], stack: LabStack | None) -> str:
    """The cure of a fault as a complete command for the lab target (``-t lab``); when the running lab
    cannot run its runbook (process mode has no Docker), the lab's own restart, or what it needs."""
    from types import MappingProxyType

    from es_doctor.capabilities import missing_requirements
    from es_doctor.cures import Remedy
    from es_doctor.prescribe import LAB, lab_restart, shipped_facts

    runbook, params = cure
    command = Remedy(runbook, MappingProxyType(dict(params))).command(LAB)
    facts = shipped_facts().get(runbook)
    if stack is None or facts is None:
        return command
    missing = missing_requirements(facts.requires, stack.target)
    if not missing:
        return command
    instead = lab_restart(runbook, params)
    return instead or f"none in {stack.mode} mode (runbook {runbook} {'; '.join(missing)})"


@fault_app.command("add")
def fault_add(name: Annotated[str, typer.Argument(metavar="NAME", autocompletion=complete.faults,
                                                   help="The fault to inject: one of those listed "
                                                   "below (es-doctor lab faults).")],
              lab_dir: LabDirOpt = None) -> int:
    """Inject fault NAME into the running lab."""
    from es_doctor.lab import faults, infra

    stack = _load(lab_dir)
    if name not in faults.FAULTS:
        raise UsageError(f"unknown fault {name!r}; known: {', '.join(faults.FAULTS)}")
    try:
        faults.add(stack, name)
    except infra.InfraError as exc:
        raise UnavailableError(str(exc)) from exc
    if faults.neutralised(stack, name):
        typer.echo(f"warning: fault {name} is injected but has no effect: an earlier cure changed the lab "
                   f"(its config.yaml or a component). Reset the lab, then add it again: {self_command()} lab "
                   f"down && {self_command()} lab up && {self_command()} lab fault add {name}", err=True)
        return int(ExitStatus.OK)
    typer.echo(f"fault {name} injected: {faults.FAULTS[name].description}")
    return int(ExitStatus.OK)


@fault_app.command("clear")
def fault_clear(
    name: Annotated[str | None, typer.Argument(help="One fault; all when omitted.",
                                                autocompletion=complete.faults)] = None,
    lab_dir: LabDirOpt = None,
) -> int:
    """Clear fault NAME (or every fault, restoring the lab's baseline) and wait until healthy."""
    from es_doctor.lab import faults, infra

    stack = _progress(_load(lab_dir))
    if name is not None and name not in faults.FAULTS:
        raise UsageError(f"unknown fault {name!r}; known: {', '.join(faults.FAULTS)}")
    try:
        cleared = faults.clear(stack, name)
    except infra.InfraError as exc:
        raise UnavailableError(str(exc)) from exc
    typer.echo(f"cleared: {', '.join(cleared) if cleared else 'nothing active'}; lab healthy")
    return int(ExitStatus.OK)
