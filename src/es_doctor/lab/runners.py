"""How the lab runs one component: a host process (pid file) or a real container (Docker SDK).

Both run the same argv of a HOST program. In a container it runs as
``busybox chroot /host ARGV`` with ``/`` mounted read-only at ``/host`` and the lab dir read-write
(RECIPES.md), with host networking, the stack's container name and compose labels.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from es_doctor.lab import procs

CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Spec:
    """One component to run."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    image: str = "es-doctor-lab/base:latest"
    memory: int | None = None
    #: extra rw mounts: host path or volume name → path inside the container
    binds: dict[str, str] = field(default_factory=dict)
    stop_signal: str = "SIGTERM"
    stop_timeout: float = 8.0


class Runner(Protocol):
    def start(self, spec: Spec, recreate: bool = False) -> None: ...
    def stop(self, name: str, timeout: float = 8.0) -> None: ...
    def remove(self, name: str) -> None: ...
    def state(self, name: str) -> str: ...


class ProcessRunner:
    """Components as detached host processes; pid files under ``run_dir``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.signals: dict[str, int] = {}

    def pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def start(self, spec: Spec, recreate: bool = False) -> None:
        if procs.process(self.pidfile(spec.name)) is not None:
            if not recreate:
                return
            self.stop(spec.name, spec.stop_timeout)
        env = {k: v for k, v in os.environ.items() if k not in {"GO_ENV", "DOCKER_HOST", "ESDOCTOR_RUN_ID"}}
        env.update(spec.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.signals[spec.name] = int(getattr(signal, spec.stop_signal))
        (self.run_dir / f"{spec.name}.signal").write_text(spec.stop_signal, encoding="utf-8")
        # cwd: the run dir, never the directory `lab up` was run from (a program's relative paths stay in the lab)
        procs.spawn(spec.argv, self.pidfile(spec.name), self.run_dir / f"{spec.name}.out", env=env, cwd=self.run_dir)

    def stop(self, name: str, timeout: float = 8.0) -> None:
        sig_file = self.run_dir / f"{name}.signal"
        sig = signal.SIGTERM
        if sig_file.is_file():
            sig = getattr(signal, sig_file.read_text(encoding="utf-8").strip(), signal.SIGTERM)
        procs.stop(self.pidfile(name), sig, timeout)

    def remove(self, name: str) -> None:
        self.stop(name)

    def state(self, name: str) -> str:
        if procs.process(self.pidfile(name)) is not None:
            return "running"
        return "exited" if self.pidfile(name).is_file() else "missing"


class DockerRunner:
    """Components as containers of one compose project on one engine."""

    def __init__(self, host: str, project: str, lab_dir: Path) -> None:
        import docker

        self.client = docker.DockerClient(base_url=host, timeout=60)
        self.project = project
        self.lab_dir = lab_dir.resolve()

    def labels(self, service: str) -> dict[str, str]:
        return {"com.docker.compose.project": self.project, "com.docker.compose.service": service,
                "es-doctor.lab": str(self.lab_dir)}

    def container(self, name: str) -> Any:
        import docker

        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound:
            return None

    def ensure_volume(self, name: str) -> str:
        """Create the named volume if missing; its mount point on this host."""
        import docker

        try:
            volume = self.client.volumes.get(name)
        except docker.errors.NotFound:
            volume = self.client.volumes.create(name, labels={
                "com.docker.compose.project": self.project, "com.docker.compose.volume": name,
                "es-doctor.lab": str(self.lab_dir)})
        return str(volume.attrs["Mountpoint"])

    def owners(self, containers: tuple[str, ...], volumes: tuple[str, ...]) -> dict[str, str]:
        """Containers and volumes of these names on this engine that another lab dir made → that dir."""
        import docker

        found: dict[str, str] = {}
        for name in containers:
            container = self.container(name)
            owner = container.labels.get("es-doctor.lab") if container is not None else None
            if owner and owner != str(self.lab_dir):
                found[f"container {name}"] = owner
        for name in volumes:
            try:
                labels = self.client.volumes.get(name).attrs.get("Labels") or {}
            except docker.errors.NotFound:
                continue
            owner = labels.get("es-doctor.lab")
            if owner and owner != str(self.lab_dir):
                found[f"volume {name}"] = owner
        return found

    def tag(self, source: str, target: str) -> None:
        repo, _, version = target.rpartition(":")
        self.client.images.get(source).tag(repo, version)

    def volumes_for(self, spec: Spec) -> dict[str, dict[str, str]]:
        volumes = {"/": {"bind": "/host", "mode": "ro"},
                   str(self.lab_dir): {"bind": f"/host{self.lab_dir}", "mode": "rw"}}
        for source, target in spec.binds.items():
            volumes[source] = {"bind": target, "mode": "rw"}
        return volumes

    def run_once(self, spec: Spec) -> tuple[int, str]:
        """Run ``spec.argv`` (a container command, not chrooted) to completion: (exit code, output)."""
        container = self.client.containers.run(
            spec.image, spec.argv, detach=True, network_mode="host",
            environment={"PATH": CONTAINER_PATH, **spec.env}, volumes=self.volumes_for(spec),
            labels=self.labels(spec.name))
        try:
            code = int(container.wait(timeout=120)["StatusCode"])
            return code, container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)

    def start(self, spec: Spec, recreate: bool = False) -> None:
        existing = self.container(spec.name)
        if existing is not None and not recreate:
            if existing.status != "running":
                existing.start()
            return
        if existing is not None:
            existing.remove(force=True)
        tmp = self.lab_dir / "tmp"  # the host's /tmp is read-only in the container
        tmp.mkdir(exist_ok=True)
        tmp.chmod(0o1777)
        env = {"PATH": CONTAINER_PATH, "HOME": "/root", "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp),
               "PYTHONDONTWRITEBYTECODE": "1", **spec.env}
        kwargs: dict[str, Any] = {}
        if spec.memory:
            kwargs["mem_limit"] = spec.memory
            kwargs["memswap_limit"] = spec.memory
        self.client.containers.run(
            spec.image, ["busybox", "chroot", "/host", *spec.argv], name=spec.name, detach=True,
            network_mode="host", environment=env, volumes=self.volumes_for(spec), labels=self.labels(spec.name),
            stop_signal=spec.stop_signal, working_dir="/", **kwargs)

    def stop(self, name: str, timeout: float = 8.0) -> None:
        container = self.container(name)
        if container is not None and container.status in {"running", "restarting", "paused"}:
            container.stop(timeout=max(1, int(timeout)))

    def remove(self, name: str) -> None:
        container = self.container(name)
        if container is not None and container.labels.get("es-doctor.lab", str(self.lab_dir)) == str(self.lab_dir):
            with contextlib.suppress(Exception):
                container.stop(timeout=8)
            container.remove(force=True)

    def state(self, name: str) -> str:
        container = self.container(name)
        return "missing" if container is None else str(container.status)

    def close(self) -> None:
        self.client.close()
