"""The test harness: real components, started from Debian's packages, on 127.0.0.1.

Session fixtures:

* ``docker_engine``   a private ``dockerd`` (no network, vfs; RECIPES.md) with the lab's base image;
* ``postgres_server`` a private PostgreSQL cluster (the host's ``postgresql`` package);
* ``lab_stack``       the lab in docker mode on that engine: containers ``email-sender-go``, ``qdrant``,
                      ``postgres`` (a real PostgreSQL) and ``prometheus`` (a real Prometheus scraping the
                      service and loading es-doctor's alert rules);
* ``healthy_lab``     per test: the lab with every fault cleared and every component healthy, and a way
                      to inject faults (cleared again afterwards).

A module that needs a lab of its own, in process mode (cheaper, and free to restart or break), starts
it with :func:`support.started_process_lab`. ``isolated`` gives a test the isolated environment
(:func:`support.isolated_env`) as its own ``os.environ``. The harness itself (``run_cli``,
``eventually``, ``require``, ``in_ci``) is the package ``tests/support``.

Where a component cannot be started the test is skipped, except under ``CI=true``, where it fails;
and under ``CI=true`` a session with any skipped test, or with no test at all, fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from es_doctor.config import Target
from support import in_ci, isolated_env, require


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that damage the lab's data on purpose run last."""
    items.sort(key=lambda item: item.get_closest_marker("data_destructive") is not None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not in_ci():
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter is not None:
            reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped; in CI that is a failure", red=True)
    elif exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def harness_dir() -> Iterator[Path]:
    # short: dockerd's unix socket lives under it
    path = Path(tempfile.mkdtemp(prefix="esd-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_engine(harness_dir: Path) -> Iterator[str]:
    """A real Docker engine; yields its ``unix://`` host."""
    from es_doctor.lab import infra

    require("Docker engine", infra.availability()["docker"])
    engine = infra.start_dockerd(harness_dir / "d")
    try:
        infra.ensure_base_image(engine.host)
        yield engine.host
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def postgres_server(harness_dir: Path) -> Iterator[str]:
    """A real PostgreSQL; yields a DSN (with its password) for the database ``email_sender``."""
    from es_doctor.lab import infra

    require("PostgreSQL", infra.availability()["postgres"])
    server = infra.start_postgres(harness_dir / "pg", infra.free_port())
    try:
        yield server.dsn_with_password
    finally:
        server.stop()


@pytest.fixture(scope="session")
def lab_stack(harness_dir: Path, docker_engine: str) -> Iterator[object]:
    from es_doctor.lab import infra
    from es_doctor.lab.stack import LabStack

    avail = infra.availability()
    require("PostgreSQL", avail["postgres"])
    require("Prometheus", avail["prometheus"])
    stack = LabStack(harness_dir / "lab", mode="docker", docker_host=docker_engine)
    try:
        stack.up(timeout=120)
        yield stack
    finally:
        stack.down(volumes=True)


@dataclass
class LabHandle:
    stack: object

    @property
    def target(self) -> Target:
        from es_doctor.lab.stack import LabStack

        assert isinstance(self.stack, LabStack)
        target: Target = self.stack.target
        return target

    @property
    def lab_dir(self) -> Path:
        from es_doctor.lab.stack import LabStack

        assert isinstance(self.stack, LabStack)
        return self.stack.lab_dir

    def add_fault(self, name: str) -> None:
        from es_doctor.lab import faults
        from es_doctor.lab.stack import LabStack

        assert isinstance(self.stack, LabStack)
        faults.add(self.stack, name)

    def clear(self) -> None:
        from es_doctor.lab import faults
        from es_doctor.lab.stack import LabStack

        assert isinstance(self.stack, LabStack)
        faults.clear(self.stack, None, wait=90)


@pytest.fixture
def healthy_lab(lab_stack: object) -> Iterator[LabHandle]:
    handle = LabHandle(lab_stack)
    handle.clear()
    yield handle
    handle.clear()


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This test's ``os.environ`` is :func:`support.isolated_env` under ``tmp_path`` (restored after)."""
    environ = isolated_env(tmp_path)
    for key in list(os.environ):
        if key not in environ:
            monkeypatch.delenv(key)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    return environ
