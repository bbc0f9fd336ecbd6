"""Where the tests run: ``in_ci()`` (decided once) and ``require()`` (skip locally, fail in CI)."""

from __future__ import annotations

import os
import shutil

import pytest

_WHICH = object()


def in_ci() -> bool:
    """True under ``CI`` set to 1/true/yes (any case): there, a part that cannot start fails the test."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require(component: str, reason: str | object | None = _WHICH) -> str:
    """Skip the test (locally) or fail it (under CI) when ``component`` is not available.

    ``require("promtool")`` looks the program up on ``PATH``; ``require("PostgreSQL", reason)`` takes
    the reason it cannot start (None: it can), as ``es_doctor.lab.infra.availability()`` gives it.
    Returns the program's path (looked up) or the component's name.
    """
    found = component
    if reason is _WHICH:
        path = shutil.which(component)
        reason = None if path else f"{component} is not on PATH (scripts/install-test-deps.sh installs it)"
        found = path or component
    if reason is None:
        return found
    message = f"{component} unavailable: {reason}"
    if in_ci():
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)
