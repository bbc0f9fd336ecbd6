"""The test harness: one isolated environment, one way to run the CLI, one wait, one way to require a part.

Import from here in any test module (``from support import run_cli, eventually``); ``tests/`` is on
pytest's ``pythonpath`` (pyproject), so no module imports ``conftest``.
"""

from __future__ import annotations

from support.ci import in_ci, require
from support.cli import CliResult, cli_command, run_cli
from support.env import isolated_env
from support.lab import started_process_lab
from support.wait import eventually

__all__ = ["CliResult", "cli_command", "eventually", "in_ci", "isolated_env", "require", "run_cli",
           "started_process_lab"]
