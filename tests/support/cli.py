"""One way to run es-doctor's CLI in a test: ``run_cli(*args, home=tmp_path, env={...})``.

By default the CLI runs as the operator runs it, ``python -m es_doctor`` in a child process (the real
entry point, exit status, signals, encoding). ``in_process=True`` calls ``es_doctor.cli.main.main``
in this process instead (a few hundred ms cheaper; for argument and refusal tests that neither start
threads nor touch signals). Both run in :func:`support.env.isolated_env` and return a :class:`CliResult`.

For a CLI that must keep running while the test acts on it (``serve``, ``logs -F``, a Ctrl-C), start
``subprocess.Popen(cli_command(...), env=isolated_env(...))``: the command line is built here too.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from support.env import isolated_env


@dataclass(frozen=True)
class CliResult:
    """What a run of the CLI gave: exit status, standard output, standard error, and how long it took."""

    returncode: int
    stdout: str
    stderr: str
    elapsed: float
    #: the child's peak resident set size in bytes (0 in process: not measured)
    peak_rss: int = 0

    def __iter__(self) -> Iterator[object]:
        """``code, out, err = run_cli(...)``"""
        return iter((self.returncode, self.stdout, self.stderr))

    @property
    def code(self) -> int:
        return self.returncode

    @property
    def output(self) -> str:
        """stdout and stderr together (for an assertion's message)."""
        return self.stdout + self.stderr


def cli_command(*args: str) -> list[str]:
    """The command line that runs es-doctor with ``args``, as the operator runs it."""
    return [sys.executable, "-m", "es_doctor", *args]


def run_cli(*args: str, home: Path | None = None, env: Mapping[str, str] | None = None,
            cwd: Path | None = None, timeout: float = 120, input: str | None = None,
            drop: tuple[str, ...] = (), in_process: bool = False) -> CliResult:
    """Run ``es-doctor args...`` in an environment isolated under ``home`` (a fresh temporary directory,
    removed afterwards, when None) with ``env`` on top; ``drop`` clears more variable prefixes."""
    with _home(home) as root:
        environ = isolated_env(root, env, drop=drop)
        if in_process:
            return _in_process(list(args), environ, cwd, input)
        started = time.monotonic()
        with _Measured(cli_command(*args), stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ, cwd=cwd) as proc:
            try:
                stdout, stderr = proc.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise
        return CliResult(proc.returncode, stdout, stderr, time.monotonic() - started, proc.peak_rss)


class _Measured(subprocess.Popen[str]):
    """A child whose exit is collected with ``wait4``, which also gives its peak memory."""

    peak_rss = 0

    def _try_wait(self, wait_flags: int) -> tuple[int, int]:
        try:
            pid, status, usage = os.wait4(self.pid, wait_flags)
        except ChildProcessError:  # as subprocess does: the child is gone, its status unknown
            return self.pid, 0
        if pid == self.pid:
            self.peak_rss = usage.ru_maxrss * 1024  # KiB on Linux
        return pid, status


@contextlib.contextmanager
def _home(home: Path | None) -> Iterator[Path]:
    if home is not None:
        yield home
        return
    with tempfile.TemporaryDirectory(prefix="esd-home-") as made:
        yield Path(made)


def _in_process(argv: list[str], environ: dict[str, str], cwd: Path | None, stdin: str | None) -> CliResult:
    from es_doctor.cli.main import main

    saved_env, saved_cwd, saved_stdin = dict(os.environ), os.getcwd(), sys.stdin
    out, err = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(environ)
    started = time.monotonic()
    try:
        if cwd is not None:
            os.chdir(cwd)
        sys.stdin = io.StringIO(stdin or "")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        sys.stdin = saved_stdin
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return CliResult(code, out.getvalue(), err.getvalue(), time.monotonic() - started)
