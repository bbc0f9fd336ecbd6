"""A lab of a module's own, in process mode."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def started_process_lab(directory: Path, *, postgres: bool = False) -> Iterator[Any]:
    """A lab of the module's own in process mode (no Prometheus; a real PostgreSQL when ``postgres``),
    up within 90 s, and down with its data when the module is done."""
    from es_doctor.lab.stack import LabStack

    stack = LabStack(directory, mode="process", postgres=postgres, prometheus=False)
    try:
        stack.up(timeout=90)
        yield stack
    finally:
        stack.down(volumes=True)
