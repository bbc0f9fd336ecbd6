"""LabStack: the stand-in stack with STACK.md's names, as containers (docker mode) or processes.

Components: ``postgres`` (PostgreSQL 15 of this host), ``qdrant`` (``es_doctor.lab.qdrant_server``),
``email-sender-go`` (``es_doctor.lab.service``) and ``prometheus``. Everything is kept in ``lab_dir``
(see :mod:`es_doctor.lab.layout`), so ``es-doctor lab down`` from another invocation can stop it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from es_doctor.lab import infra, procs
from es_doctor.lab.layout import (
    COMPONENTS,
    CONTAINER_CONFIG_DIR,
    CONTAINER_LOG_DIR,
    POSTGRES,
    PREVIOUS_IMAGE,
    PROMETHEUS,
    QDRANT,
    SERVICE,
    SERVICE_IMAGE,
    LabPaths,
    LabPorts,
    LabSettings,
    Mode,
    build_target,
    refresh_service_config,
    write_target,
)
from es_doctor.lab.runners import DockerRunner, ProcessRunner, Runner, Spec
from es_doctor.lab.runtime_faults import write_faults_file

#: a settled lab answers a test search and an API call in under half the guide's WARN thresholds (50, 100 ms)
SETTLED_SEARCH_MS, SETTLED_API_MS = 25.0, 50.0
IMAGE_TAGS = {QDRANT: "qdrant/qdrant:lab", POSTGRES: "postgres:15-lab", PROMETHEUS: "prom/prometheus:lab"}


def detect_absent(postgres: bool = True, prometheus: bool = True) -> dict[str, str]:
    """The optional components this machine cannot run now (or not asked for) → why."""
    avail = infra.availability()
    absent = {}
    for name, wanted in ((POSTGRES, postgres), (PROMETHEUS, prometheus)):
        reason = avail[name] if wanted else "not started with this lab"
        if reason:
            absent[name] = reason
    return absent


class LabStack:
    def __init__(self, lab_dir: Path, ports: LabPorts | None = None, mode: Mode = "docker",
                 docker_host: str | None = None, postgres: bool = True, prometheus: bool = True,
                 use: LabSettings | None = None, **settings: Any) -> None:
        self.paths = LabPaths(lab_dir)
        if use is not None:
            self.settings = use
        elif (self.paths.root / "lab.json").is_file() and ports is None:
            self.settings = LabSettings.load(self.paths.root)
        else:
            self.settings = LabSettings(mode=mode, ports=(ports or LabPorts()).resolved(),
                                        docker_host=docker_host, **settings)
            self.settings.absent.update(detect_absent(postgres, prometheus))
        if self.settings.mode == "docker" and not self.settings.docker_host:
            raise infra.InfraError("docker mode needs a Docker engine (docker_host)")
        self._runner: Runner | None = None
        #: whether the latest up() ended with the lab at its resting pace (see settle())
        self.settled = True
        #: settings given (a lab started afresh): config.yaml follows them
        self._fresh = use is not None
        #: where up(), down() and a fault's clearing say what they are doing (one short line per step)
        self.say: Callable[[str], None] = lambda _line: None

    @classmethod
    def load(cls, lab_dir: Path) -> LabStack:
        if not (lab_dir / "lab.json").is_file():
            raise infra.InfraError(f"no lab in {lab_dir} (start one: es-doctor lab up)")
        return cls(lab_dir)

    # ----------------------------------------------------------------- plumbing
    @property
    def lab_dir(self) -> Path:
        return self.paths.root

    @property
    def mode(self) -> Mode:
        return self.settings.mode

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            if self.mode == "docker":
                assert self.settings.docker_host
                import docker

                try:
                    self._runner = DockerRunner(self.settings.docker_host, self.settings.compose_project,
                                                self.lab_dir)
                except docker.errors.DockerException:
                    raise infra.InfraError(f"the lab's Docker engine at {self.settings.docker_host} does not "
                                           "answer") from None
            else:
                self._runner = ProcessRunner(self.paths.run)
        return self._runner

    @property
    def docker(self) -> DockerRunner:
        runner = self.runner
        if not isinstance(runner, DockerRunner):
            raise infra.InfraError("this lab runs in process mode (no containers)")
        return runner

    def present(self) -> list[str]:
        return [c for c in COMPONENTS if c not in self.settings.absent]

    def service_state(self) -> dict[str, Any]:
        """How the service is meant to run now (env and image), kept in run/service.json by faults."""
        import json

        path = self.paths.run / "service.json"
        if path.is_file():
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return data
        return {"env": {"GO_ENV": "staging"}, "image": SERVICE_IMAGE}

    def spec(self, name: str) -> Spec:
        s, p, py = self.settings, self.paths, self.settings.python
        if name == SERVICE:
            state = self.service_state()
            return Spec(SERVICE, [py, "-m", "es_doctor.lab.service", "--config", str(p.config),
                                  "--log-dir", str(p.logs)],
                        env=dict(state["env"]), image=state["image"], memory=s.memory_limit,
                        binds={str(p.config_dir): CONTAINER_CONFIG_DIR, str(p.logs): CONTAINER_LOG_DIR})
        if name == QDRANT:
            return Spec(QDRANT, [py, "-m", "es_doctor.lab.qdrant_server", "--port", str(s.ports.qdrant),
                                 "--storage", str(p.qdrant), "--faults-file", str(p.faults),
                                 "--init-collection", "task_vectors:1536:Cosine"],
                        image=IMAGE_TAGS[QDRANT], binds={s.qdrant_volume: f"/host{p.qdrant}"})
        if name == POSTGRES:
            return Spec(POSTGRES, infra.postgres_argv(p.pg_data, s.ports.postgres, p.pg_root),
                        image=IMAGE_TAGS[POSTGRES], stop_signal="SIGINT",
                        binds={str(p.pg_root): f"/host{p.pg_root}", s.postgres_volume: f"/host{p.pg_cluster}"})
        if name == PROMETHEUS:
            return Spec(PROMETHEUS, infra.prometheus_argv(p.prometheus / "prometheus.yml", s.ports.prometheus,
                                                          p.prometheus / "data"), image=IMAGE_TAGS[PROMETHEUS])
        raise infra.InfraError(f"unknown component {name!r} (known: {', '.join(COMPONENTS)})")

    # ----------------------------------------------------------------- lifecycle
    def up(self, timeout: float = 60.0) -> None:
        """Start every present component (first boot: images, volumes, database), wait healthy."""
        p, s = self.paths, self.settings
        p.make()
        self._build_pprofd()
        if not s.pg_password:
            s.pg_password, s.pg_superuser_password = procs.new_password(), procs.new_password()
        s.save(p.root)
        if not p.faults.is_file():
            write_faults_file(p.faults, [])
        if self._fresh or not p.config.is_file():
            refresh_service_config(p, s)
        if PROMETHEUS in self.present():
            from es_doctor.alert_rules import RuleOptions, render_rules

            rules = p.prometheus / "alert-rules.yml"
            rules.write_text(render_rules(self.target, RuleOptions("lab", target_label="lab")), encoding="utf-8")
            infra.write_prometheus_config(p.prometheus / "prometheus.yml", infra.prometheus_config(
                [f"127.0.0.1:{s.ports.metrics}"], "email-sender", [str(rules)]))
        if POSTGRES in self.present():
            infra.chown_postgres(p.pg_root)
        if self.mode == "docker":
            self.say("preparing Docker (images, volumes)")
            self._prepare_docker()
        for name in self.present():
            self.say(f"starting {name}")
            self.start_component(name)
            if name == POSTGRES:
                infra.wait_until(lambda: infra.postgres_ready(s.ports.postgres, s.pg_superuser_password),
                                 timeout, "PostgreSQL", 0.2)
                infra.provision_database(s.ports.postgres, s.pg_superuser_password, s.pg_password)
            if name == QDRANT:
                infra.wait_until(lambda: infra.http_ok(f"http://127.0.0.1:{s.ports.qdrant}/healthz"),
                                 timeout, "Qdrant", 0.2)
        self._start_pprofd(timeout)
        write_target(p, self.target)
        self.say("waiting until every component is healthy")
        self.wait_healthy(timeout)
        self.say("waiting until the lab answers at its resting pace")
        self.settled = self.settle()

    def settle(self, timeout: float = 15.0) -> bool:
        """Wait until the lab answers at its resting pace (False: still busy after ``timeout``). Right
        after a start the machine is busy (PostgreSQL, Prometheus and the programs starting, the seed
        tasks): a diagnosis then would read that moment's latency, not the lab's. Settled: three test
        searches and three API calls in a row each answer in under half their WARN threshold."""
        import httpx

        ports, vector = self.settings.ports, [1.0 / 1536**0.5] * 1536
        calls = [("POST", f"http://127.0.0.1:{ports.qdrant}/collections/task_vectors/points/query",
                  {"query": vector, "limit": 1}, SETTLED_SEARCH_MS),
                 ("GET", f"http://127.0.0.1:{ports.api}/api/v1/managers/status", None, SETTLED_API_MS)]
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                quick = True
                for method, url, body, limit in calls:
                    for _ in range(3):
                        started = time.perf_counter()
                        try:
                            client.request(method, url, json=body)
                        except httpx.HTTPError:
                            quick = False
                        quick = quick and (time.perf_counter() - started) * 1000 < limit
                if quick:
                    return True
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.5)

    def _build_pprofd(self) -> None:
        """Build the Go program serving real pprof, where Go is installed, before anything runs: compiling
        is CPU work a running stack would feel (slow requests in its log). Else the stand-in's text pages."""
        from es_doctor.lab import pprofd

        p, s = self.paths, self.settings
        s.pprof = pprofd.unavailable_reason() is None
        if s.pprof:
            self.say("building the Go profiling program")
            try:
                pprofd.build()
            except infra.InfraError as exc:  # an optional sidecar: the lab runs without it, and says why
                s.pprof = False
                pprofd.failed(p.run, str(exc))

    def _start_pprofd(self, timeout: float) -> None:
        from es_doctor.lab import pprofd

        p, s = self.paths, self.settings
        if s.pprof:
            s.ports.pprof = s.ports.pprof or infra.free_port()
            try:
                pprofd.start(p.run, s.ports.pprof, p.faults, timeout)
            except infra.InfraError as exc:
                s.pprof = False
                pprofd.failed(p.run, str(exc))
        s.save(p.root)

    def _prepare_docker(self) -> None:
        d, s = self.docker, self.settings
        assert s.docker_host
        taken = d.owners(COMPONENTS, (s.qdrant_volume, s.postgres_volume))
        if taken:  # one engine holds one stack: its names are the stack's
            what = ", ".join(f"{thing} (lab in {owner})" for thing, owner in taken.items())
            raise infra.InfraError(f"the Docker engine at {s.docker_host} already holds another lab's {what}: stop "
                                   "that lab (lab down --volumes --lab-dir …), or give this one its own engine "
                                   "(--start-dockerd)")
        infra.ensure_base_image(s.docker_host)
        for tag in (SERVICE_IMAGE, *IMAGE_TAGS.values()):
            d.tag(infra.BASE_IMAGE, tag)
        infra.ensure_base_image(s.docker_host, PREVIOUS_IMAGE, release="previous")
        d.ensure_volume(s.qdrant_volume)
        mountpoint = Path(d.ensure_volume(s.postgres_volume))
        if POSTGRES in self.present() and not (mountpoint / "data" / "PG_VERSION").is_file():
            self._initdb_in_container()

    def _initdb_in_container(self) -> None:
        p, s = self.paths, self.settings
        pwfile = infra.write_pwfile(p.pg_root, s.pg_superuser_password)
        try:
            init = " ".join(infra.initdb_argv(p.pg_data, pwfile))
            script = (f"busybox chroot /host /bin/chown postgres:postgres {p.pg_cluster} && "
                      f"busybox chroot /host {init}")
            spec = self.spec(POSTGRES)
            spec.argv = ["busybox", "sh", "-c", script]
            code, out = self.docker.run_once(spec)
            if code != 0:
                raise infra.InfraError(f"initdb in a container failed ({code}): {out[-1500:]}")
        finally:
            pwfile.unlink(missing_ok=True)

    def _initdb_on_host(self) -> None:
        import subprocess

        p = self.paths
        infra.chown_postgres(p.pg_cluster)
        pwfile = infra.write_pwfile(p.pg_root, self.settings.pg_superuser_password)
        try:
            result = subprocess.run(infra.initdb_argv(p.pg_data, pwfile), capture_output=True, text=True,
                                    check=False)
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise infra.InfraError(f"initdb failed: {result.stderr.strip()[-1500:]}")

    def engine_answers(self) -> bool:
        """Process mode, or a Docker engine that answers at the lab's host."""
        return self.mode != "docker" or infra.docker_ping(self.settings.docker_host)

    def running(self) -> list[str]:
        """The components running now (nothing when the lab's engine is gone)."""
        if not self.engine_answers():
            return []
        try:
            return [name for name in self.present() if self.runner.state(name) == "running"]
        except infra.InfraError:
            return []

    def down(self, volumes: bool = False) -> list[str]:
        """Stop and remove every component (and the port squatter); keep data unless ``volumes``.
        Returns notes for the operator (an engine that is gone: nothing to remove there)."""
        notes: list[str] = []
        procs.stop(self.paths.run / "squatter.pid", timeout=5)
        from es_doctor.lab import pprofd

        pprofd.stop(self.paths.run)
        if self.engine_answers():
            for name in reversed(COMPONENTS):
                if name in self.present():
                    self.say(f"stopping {name}")
                self.runner.remove(name)
            if self.mode == "docker" and volumes:
                names = (self.settings.qdrant_volume, self.settings.postgres_volume)
                others = self.docker.owners((), names)  # never another lab's
                for name in names:
                    for v in self.docker.client.volumes.list(filters={"name": name}):
                        if v.name == name and f"volume {name}" not in others:
                            v.remove(force=True)
        else:
            notes.append(f"the Docker engine at {self.settings.docker_host} is gone: no container or volume to "
                         "remove there")
        self.paths.target.unlink(missing_ok=True)
        import shutil

        engine = self.settings.private_engine
        if engine:  # the lab's own engine stops with it; --volumes removes its data (images, volumes) too
            procs.stop(Path(engine) / "docker.pid.lab", timeout=20)
            infra.unmount_under(Path(engine))
            if volumes:
                shutil.rmtree(engine, ignore_errors=True)
        if volumes:  # a full reset: the next `up` starts a fresh lab
            self.say("removing the lab's data")
            (self.lab_dir / "lab.json").unlink(missing_ok=True)
            for path in (self.paths.faults_state, self.paths.faults, self.paths.service_state):
                path.unlink(missing_ok=True)
            for directory in (self.paths.qdrant, self.paths.run, self.paths.pg_root, self.paths.config_dir,
                              self.paths.prometheus, self.paths.logs, self.lab_dir / "tmp"):
                shutil.rmtree(directory, ignore_errors=True)
        return notes

    def status(self) -> dict[str, str]:
        """Each component → running / exited / created / missing / absent: <reason>."""
        out = {}
        for name in COMPONENTS:
            reason = self.settings.absent.get(name)
            out[name] = f"absent: {reason}" if reason else self.runner.state(name)
        return out

    def start_component(self, name: str, recreate: bool = False) -> None:
        if name in self.settings.absent:
            raise infra.InfraError(f"{name} is absent from this lab: {self.settings.absent[name]}")
        if name == POSTGRES and self.mode == "process" and not (self.paths.pg_data / "PG_VERSION").is_file():
            self._initdb_on_host()
        self.runner.start(self.spec(name), recreate=recreate)

    def stop_component(self, name: str) -> None:
        self.spec(name)  # validates the name
        self.runner.stop(name, self.spec(name).stop_timeout)

    def restart_service(self, env_overrides: dict[str, str | None] | None = None,
                        image: str | None = None) -> None:
        """Recreate the service with its env (``None`` removes a variable) and image."""
        import json

        state = self.service_state()
        for key, value in (env_overrides or {}).items():
            if value is None:
                state["env"].pop(key, None)
            else:
                state["env"][key] = value
        if image:
            state["image"] = image
        (self.paths.run / "service.json").write_text(json.dumps(state), encoding="utf-8")
        self.runner.stop(SERVICE, 5)
        self.runner.start(self.spec(SERVICE), recreate=True)

    def reset_service(self) -> None:
        """Back to GO_ENV=staging and the lab image, recreated."""
        (self.paths.run / "service.json").unlink(missing_ok=True)
        self.runner.start(self.spec(SERVICE), recreate=True)

    # ----------------------------------------------------------------- health
    @property
    def target(self) -> Any:
        return build_target(self.paths, self.settings)

    def health(self) -> dict[str, bool]:
        p = self.settings.ports
        checks = {
            "api /health": infra.http_ok(f"http://127.0.0.1:{p.api}/health"),
            "api /ready": infra.http_ok(f"http://127.0.0.1:{p.api}/ready"),
            "metrics": infra.http_ok(f"http://127.0.0.1:{p.metrics}/metrics"),
            "qdrant": infra.http_ok(f"http://127.0.0.1:{p.qdrant}/healthz"),
        }
        if PROMETHEUS in self.present():
            checks["prometheus"] = infra.http_ok(f"http://127.0.0.1:{p.prometheus}/-/ready")
            checks["prometheus scrapes the service"] = checks["prometheus"] and infra.prometheus_target_up(
                f"http://127.0.0.1:{p.prometheus}", "email-sender")
        if self.settings.pprof:
            checks["pprof (Go program)"] = infra.http_ok(f"http://127.0.0.1:{p.pprof}/health")
        if POSTGRES in self.present():
            checks["postgres"] = infra.postgres_ready(p.postgres, self.settings.pg_password, "emailsender",
                                                      "email_sender")
        return checks

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            checks = self.health()
            if all(checks.values()):
                return
            if time.monotonic() > deadline:
                failing = ", ".join(k for k, ok in checks.items() if not ok)
                raise infra.InfraError(f"lab not healthy after {timeout:.0f} s: {failing} failing; "
                                       f"status {self.status()}")
            time.sleep(0.2)
