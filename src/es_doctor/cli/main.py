"""The root command and the one error boundary.

Exit codes are the table in :class:`es_doctor.errors.ExitStatus`; click's usage code 2 is
remapped to 64 so that it never reads as a CRITICAL finding.
"""

from __future__ import annotations

import copy
import functools
import os
import signal
import sys
import typing
from pathlib import Path
from typing import Annotated, Any

import typer

from es_doctor import __version__
from es_doctor.cli.common import ConfigOpt, TargetsOpt, state
from es_doctor.errors import EsDoctorError, ExitStatus

try:  # typer >= 0.29 vendors click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer on click
    from click import exceptions as click_exc  # type: ignore[no-redef,import-not-found,unused-ignore]

app = typer.Typer(
    name="es-doctor",
    help="The EMAIL_SENDER_1 Go Native troubleshooting guide as code: diagnose, fix, emergency, escalate.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: rich's help formatter costs ~55 ms at every start
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"es-doctor {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    config: ConfigOpt = None,
    target: TargetsOpt = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """es-doctor: diagnose the stack, fix it with runbooks, run emergency procedures, escalate."""
    st = state(ctx)
    st.config_path = config
    st.targets = list(dict.fromkeys(target or []))


#: every command of the root, in the order its help lists them: (name, command or group, module, attribute,
#: epilog attribute). A run imports the module of the one command it invokes (:func:`command`); the root's
#: help and shell completion import them all.
COMMANDS: tuple[tuple[str, str, str, str, str | None], ...] = (
    ("config", "group", "config_cmd", "config_app", None),
    ("diagnose", "command", "diagnose_cmd", "diagnose", None),
    ("checks", "command", "diagnose_cmd", "list_checks", None),
    ("alert-rules", "command", "alert_rules_cmd", "alert_rules", None),
    ("lab", "group", "lab", "lab_app", None),
    ("fix", "command", "fix_cmd", "fix", None),
    ("runbooks", "group", "runbooks_cmd", "runbooks_app", None),
    ("escalate", "command", "escalate_cmd", "escalate", None),
    ("emergency", "group", "emergency_cmd", "emergency_app", None),
    ("serve", "command", "serve_cmd", "serve", None),
    ("requests", "group", "requests_cmd", "requests_app", None),
    ("dashboard", "command", "dashboard_cmd", "dashboard", None),
    ("logs", "command", "logs_cmd", "logs", None),
    ("load", "command", "load_cmd", "load_test", "EPILOG"),
    ("profile", "group", "profile_cmd", "profile_app", None),
)


def _register(into: typer.Typer, only: str | None = None) -> None:
    """Add the root's commands (``only``: that one) to ``into``, importing their modules."""
    import importlib

    for name, kind, module_name, attribute, epilog in COMMANDS:
        if only is not None and name != only:
            continue
        module = importlib.import_module(f"es_doctor.cli.{module_name}")
        if kind == "group":
            into.add_typer(getattr(module, attribute), name=name)
        else:
            into.command(name, epilog=getattr(module, epilog) if epilog else None)(getattr(module, attribute))


@functools.cache
def full_app() -> typer.Typer:
    """:data:`app` with every command (registered once)."""
    _register(app)
    return app


def _crash_dir() -> Path:
    """A private (0700) directory for crash logs: the state directory's ``crash/`` (the loaded configuration's
    ``state_dir``, else ``$ES_DOCTOR_STATE_DIR``, else the default), else a new temporary one."""
    from es_doctor.config.locations import state_dir_in_use
    from es_doctor.files import private_dir

    base = state_dir_in_use()
    try:
        return private_dir(Path(base) / "crash")
    except (OSError, RuntimeError):
        import tempfile

        return Path(tempfile.mkdtemp(prefix="es-doctor-crash-"))


def _crash_log(exc: BaseException) -> Path:
    """Write the traceback (secrets scrubbed) to a new 0600 file with an unpredictable name, never
    following a symlink planted there."""
    import secrets as _random
    import traceback

    from es_doctor.files import write_private
    from es_doctor.secrets import scrub

    text = scrub(f"es-doctor {__version__}\n{''.join(traceback.format_exception(exc))}")
    path = _crash_dir() / f"es-doctor-crash-{_random.token_hex(8)}.log"
    return write_private(path, text)


#: the root's options that take a value (the next word is theirs, not a command's name)
ROOT_VALUE_OPTIONS = frozenset({"-c", "--config", "-t", "--target"})


def invoked(argv: list[str]) -> str | None:
    """The name of the command ``argv`` runs (its first word that is not a root option or an option's
    value), when it is one of :data:`app`'s; else None."""
    names = {name for name, *_ in COMMANDS}
    words = iter(argv)
    for word in words:
        if word == "--":
            return None
        if word in ROOT_VALUE_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word if word in names else None
    return None


def command(only: str | None = None) -> typer.core.TyperGroup:
    """The click command tree of :data:`app`, its help finished (examples, whole descriptions, plain arguments).

    ``only``: the tree with that one command under the root (the one a run invokes): typer reads every
    command's signature when it builds one (some 1,000 ``compile()`` calls for the whole tree), a run
    needs its own only. The root's help and completion take the whole tree."""
    from es_doctor.cli.helptext import polish

    if only is None:
        source = full_app()
    else:
        source = copy.copy(app)
        source.registered_commands, source.registered_groups = [], []
        _register(source, only)
    _resolve_annotations(source)
    root: typer.core.TyperGroup = polish(typer.main.get_command(source))
    return root


def _resolve_annotations(group: typer.Typer) -> None:
    """Evaluate the string annotations of ``group``'s callbacks once, into objects: typer evaluates each
    twice otherwise (``inspect.signature(eval_str=True)`` then ``get_type_hints``), a ``compile()`` each."""
    infos: list[typer.models.CommandInfo | typer.models.TyperInfo | None] = [
        *group.registered_commands, group.registered_callback]
    for sub in group.registered_groups:
        infos.append(sub)
        if sub.typer_instance is not None:
            _resolve_annotations(sub.typer_instance)
    for info in infos:
        function = getattr(info, "callback", None)
        annotations = getattr(function, "__annotations__", None)
        if not annotations or not any(isinstance(v, str) for v in annotations.values()):
            continue
        try:
            function.__annotations__ = typing.get_type_hints(function, include_extras=True)
        except (NameError, TypeError, AttributeError):  # typer reports it as it did
            continue


class _NoneFirst:
    """A root option's coercion that answers an absent value (``None``) itself, as typer's does, and
    builds typer's own (a pydantic ``TypeAdapter``, pydantic imported for it) only for a value given:
    ``es-doctor COMMAND --help`` processes the root's options before the command's help, and would
    otherwise import pydantic for ``--config``/``--target`` left out."""

    def __init__(self, param: Any) -> None:
        self.param = param
        self.built: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        if value is None:
            return () if param.multiple or param.nargs == -1 else None
        if self.built is None:
            from typer._coercion import build_runtime_param

            self.built = build_runtime_param(self.param.type_descriptor)
        return self.built.coerce(value, param=param, ctx=ctx)


def _coerce_none_without_pydantic() -> None:
    """Give every typer parameter the coercion above, on the typer versions that build theirs lazily
    (``_TyperParameter.get_runtime_param``); elsewhere nothing changes."""
    kind = getattr(typer.core, "_TyperParameter", None)
    built = getattr(kind, "get_runtime_param", None)
    if kind is None or built is None or getattr(built, "none_first", False):
        return

    def get_runtime_param(self: Any) -> Any:
        if getattr(self, "_runtime_param", None) is None:
            self._runtime_param = _NoneFirst(self)
        return self._runtime_param

    get_runtime_param.none_first = True  # type: ignore[attr-defined]
    kind.get_runtime_param = get_runtime_param


_coerce_none_without_pydantic()


def wants_nagios(argv: list[str]) -> bool:
    """Whether the command line asks for ``--format nagios`` (``-f nagios``, ``--format=nagios``, ``-fnagios``)."""
    for n, word in enumerate(argv):
        if word in ("-f", "--format") and n + 1 < len(argv) and argv[n + 1] == "nagios":
            return True
        if word in ("--format=nagios", "-fnagios"):
            return True
    return False


def nagios_unknown(reason: str) -> int:
    """The Monitoring Plugins guidelines' answer to any error: ``ES-DOCTOR UNKNOWN: <reason>`` on stdout
    (the one line Nagios shows), exit 3 (never 64 or 78: "Return code of 78 is out of bounds")."""
    from es_doctor.secrets import clean

    text = " ".join(clean(reason).replace("|", "/").split()) or "error"
    typer.echo(f"ES-DOCTOR UNKNOWN: {text}")
    return int(ExitStatus.UNKNOWN)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (never raises). With ``--format nagios``, every error is
    ``ES-DOCTOR UNKNOWN: <reason>`` on stdout and exit 3 (its message still goes to stderr)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not wants_nagios(args):
        return _main(args)
    import contextlib
    import io

    captured = io.StringIO()

    class _Tee(io.TextIOBase):
        def write(self, text: str) -> int:
            captured.write(text)
            return sys.__stderr__.write(text) if sys.__stderr__ is not None else len(text)

    with contextlib.redirect_stderr(_Tee()):
        code = _main(args)
    if code in (int(ExitStatus.OK), int(ExitStatus.WARNING), int(ExitStatus.CRITICAL), int(ExitStatus.UNKNOWN)):
        return code
    lines = [line.strip() for line in captured.getvalue().splitlines() if line.strip()]
    reason = next((line for line in reversed(lines) if line.startswith(("Error:", "es-doctor:"))), None) \
        or (lines[-1] if lines else f"exit status {code}")
    reason = reason.removeprefix("Error: ").removeprefix("es-doctor: error: ").removeprefix("es-doctor: ")
    return nagios_unknown(f"{reason} (exit {code})")


def _main(args: list[str]) -> int:
    try:
        completing = any(name.endswith("_COMPLETE") for name in os.environ)  # click's completion: every command
        tree = command(None if completing else invoked(args))
        result = tree.main(args=args, prog_name="es-doctor", standalone_mode=False)
    except click_exc.NoArgsIsHelpError as exc:
        if exc.ctx is not None:
            typer.echo(exc.ctx.get_help())
        return int(ExitStatus.OK)
    except click_exc.UsageError as exc:
        exc.message = exc.message.replace("Value error, ", "")  # typer's choice check speaks through pydantic
        exc.show()
        return int(ExitStatus.USAGE)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("\ninterrupted", err=True)
        return int(ExitStatus.INTERRUPTED)
    except click_exc.ClickException as exc:
        exc.show()
        return int(ExitStatus.USAGE)
    except EsDoctorError as exc:
        from es_doctor.secrets import clean

        typer.echo(clean(f"es-doctor: error: {exc.message}"), err=True)
        return int(exc.exit_status)
    except Exception as exc:  # noqa: BLE001 - the one error boundary
        from es_doctor.secrets import clean
        from es_doctor.statedir import cant_write

        refused = cant_write(exc) if isinstance(exc, OSError) else None  # a full or read-only disk: 73, no bug
        if refused is not None:
            typer.echo(clean(f"es-doctor: error: {refused.message}"), err=True)
            return int(refused.exit_status)
        try:
            where = f"A traceback for the bug report is in {_crash_log(exc)}"
        except OSError as log_error:
            where = f"(no crash log written: {log_error.strerror or log_error})"
        typer.echo(clean(f"es-doctor: internal error: {type(exc).__name__}: {exc}\n{where}"), err=True)
        return int(ExitStatus.SOFTWARE)
    return int(result) if isinstance(result, int) else int(ExitStatus.OK)


def run() -> None:
    try:
        code = main()
    except KeyboardInterrupt:  # a Ctrl-C landing just as main() returned
        code = int(ExitStatus.INTERRUPTED)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a late Ctrl-C cannot turn the exit status into a signal
    sys.exit(code)
