"""The lab directory: its settings (``lab.json``), the service's ``config.yaml`` and ``target.yaml``.

``target.yaml`` is an :class:`es_doctor.config.Target` describing the running lab; es-doctor reads it
for ``-t lab`` (``$ES_DOCTOR_LAB_DIR``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from es_doctor.config import (
    DockerConfig,
    LoadConfig,
    PostgresConfig,
    PrometheusConfig,
    QdrantConfig,
    ServiceConfig,
    Target,
    Thresholds,
)
from es_doctor.lab import infra

Mode = Literal["docker", "process"]
SERVICE, QDRANT, POSTGRES, PROMETHEUS = "email-sender-go", "qdrant", "postgres", "prometheus"
#: start order; stop order is the reverse
COMPONENTS = (POSTGRES, QDRANT, SERVICE, PROMETHEUS)
SERVICE_IMAGE = "email-sender-go:lab"
PREVIOUS_IMAGE = "email-sender-go:previous"
CONTAINER_CONFIG_DIR = "/app/config"
CONTAINER_LOG_DIR = "/app/logs"


@dataclass
class LabPorts:
    api: int = 0
    metrics: int = 0
    qdrant: int = 0
    postgres: int = 0
    prometheus: int = 0
    #: the lab's Go program (real net/http/pprof), where Go is installed
    pprof: int = 0

    def resolved(self) -> LabPorts:
        """A copy with every 0 replaced by a free port."""
        return LabPorts(**{k: v or infra.free_port() for k, v in asdict(self).items()})


@dataclass
class LabSettings:
    """Everything ``lab.json`` keeps so another CLI invocation can drive the same lab."""

    mode: Mode
    ports: LabPorts
    docker_host: str | None = None
    compose_project: str = "email_sender"
    qdrant_volume: str = "qdrant_data"
    postgres_volume: str = "postgres_data"
    memory_limit: int = 256 * 1024 * 1024
    seed_tasks: int = 5
    traffic_rps: float = 10.0
    python: str = sys.executable
    #: component → reason, for the components this lab does not run
    absent: dict[str, str] = field(default_factory=dict)
    pg_password: str = ""
    pg_superuser_password: str = ""
    #: the lab's Go program serves pprof (set by `lab up` where Go is installed)
    pprof: bool = False
    #: the private Docker engine's directory when ``lab up --start-dockerd`` started one for this lab
    private_engine: str | None = None

    def save(self, lab_dir: Path) -> None:
        path = lab_dir / "lab.json"
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        path.chmod(0o600)

    @classmethod
    def load(cls, lab_dir: Path) -> LabSettings:
        try:
            data: dict[str, Any] = json.loads((lab_dir / "lab.json").read_text(encoding="utf-8"))
            data["ports"] = LabPorts(**data["ports"])
            settings = cls(**data)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise infra.InfraError(f"{lab_dir / 'lab.json'} cannot be read ({type(exc).__name__}: {exc}); "
                                   f"remove {lab_dir} to start a new lab there") from None
        if settings.private_engine is None and settings.docker_host == f"unix://{LEGACY_ENGINE_DIR}/d.sock":
            settings.private_engine = str(LEGACY_ENGINE_DIR)  # a lab.json written before engines were per lab
        return settings


#: the one engine every ``--start-dockerd`` lab shared before each lab had its own
LEGACY_ENGINE_DIR = Path("/tmp/es-doctor-lab-engine")


def private_engine_dir(lab_dir: Path) -> Path:
    """The private Docker engine of the lab in ``lab_dir``: one per lab dir, so two labs never share an
    engine (nor its ``postgres_data`` volume). Under /tmp with a digest of the lab dir, not inside it: the
    engine's unix socket path must stay under the kernel's 108 bytes whatever the lab dir's length."""
    digest = hashlib.sha256(str(lab_dir.expanduser().resolve()).encode()).hexdigest()[:12]
    return Path("/tmp") / f"es-doctor-lab-engine-{digest}"


def engine_host(engine_dir: Path) -> str:
    return f"unix://{engine_dir}/d.sock"


def fresh_settings(lab_dir: Path, mode: Mode, ports: LabPorts, docker_host: str | None,
                   private_engine: Path | None, absent: dict[str, str]) -> LabSettings:
    """The settings of a lab (re)started in ``lab_dir`` from what was detected now: mode, engine and
    components. From a previous ``lab.json`` only what its data needs is kept: the database passwords
    (its cluster was initialised with them) and its ports where they are still free (stable addresses)."""
    previous = None
    if (lab_dir / "lab.json").is_file():
        with contextlib.suppress(infra.InfraError):  # unreadable: nothing to keep
            previous = LabSettings.load(lab_dir)
    wanted = asdict(ports)
    if previous is not None:
        for name, port in asdict(previous.ports).items():
            if not wanted[name] and port and port_free(port):
                wanted[name] = port
    settings = LabSettings(mode=mode, ports=LabPorts(**wanted).resolved(), docker_host=docker_host,
                           private_engine=str(private_engine) if private_engine else None, absent=dict(absent))
    if previous is not None:
        settings.pg_password, settings.pg_superuser_password = previous.pg_password, previous.pg_superuser_password
    return settings


def port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the lab's servers bind
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LabPaths:
    def __init__(self, lab_dir: Path) -> None:
        self.root = lab_dir.resolve()
        self.config_dir = self.root / "config"
        self.config = self.config_dir / "config.yaml"
        self.logs = self.root / "logs"
        self.faults = self.root / "faults.json"
        self.faults_state = self.root / "faults-state.json"
        #: the service's persisted read-only/maintenance modes (written by the service, next to faults.json)
        self.service_state = self.root / "service-state.json"
        self.qdrant = self.root / "qdrant"
        self.prometheus = self.root / "prometheus"
        self.run = self.root / "run"
        self.target = self.root / "target.yaml"
        self.pg_root = pg_root_for(self.root)
        self.pg_cluster = self.pg_root / "cluster"
        self.pg_data = self.pg_cluster / "data"

    def make(self) -> None:
        for d in (self.config_dir, self.logs, self.qdrant, self.prometheus, self.run, self.pg_cluster):
            d.mkdir(parents=True, exist_ok=True)
        for d in (self.root, self.logs, self.pg_root):
            d.chmod(0o755)


def pg_root_for(lab_dir: Path) -> Path:
    """PostgreSQL runs as user postgres: its files go where that user can reach them."""
    if infra.traversable(lab_dir / "pg"):
        return lab_dir / "pg"
    digest = hashlib.sha256(str(lab_dir).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"es-doctor-lab-pg-{digest}"


def service_config(paths: LabPaths, s: LabSettings) -> dict[str, Any]:
    """The service's ``config.yaml`` (STACK.md's knobs)."""
    config: dict[str, Any] = {
        "api": {"host": "127.0.0.1", "port": s.ports.api},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": s.ports.metrics, "path": "/metrics"},
        "qdrant": {"url": f"http://127.0.0.1:{s.ports.qdrant}", "collection": "task_vectors",
                   "vector_size": 1536},
        "vector_cache": {"max_size": 1000, "ttl": "1h"},
        "connection_pool": {"max_connections": 10, "idle_timeout": "5m"},
        "event_bus": {"buffer_size": 1000, "workers": 10},
        "logging": {"dir": str(paths.logs), "level": "info"},
        "lab": {"faults_file": str(paths.faults), "traffic_rps": s.traffic_rps,
                "memory_limit_bytes": s.memory_limit, "seed_tasks": s.seed_tasks,
                # in a container the service also logs to stderr, as the real one does: `docker logs`
                "console_log": s.mode == "docker"},
    }
    if POSTGRES not in s.absent:
        config["postgres"] = {"dsn": f"postgresql://emailsender:{s.pg_password}@127.0.0.1:"
                                     f"{s.ports.postgres}/email_sender"}
    return config


def write_service_config(paths: LabPaths, config: dict[str, Any]) -> None:
    paths.config.write_text("# email-sender-go configuration (es-doctor lab)\n"
                            + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


#: the sections of config.yaml an operator or a runbook tunes: kept when the lab is started again
TUNED = ("vector_cache", "connection_pool", "event_bus")


def refresh_service_config(paths: LabPaths, s: LabSettings) -> None:
    """Write config.yaml for settings ``s``: the lab's own keys (ports, addresses, log dir, PostgreSQL's
    DSN) from ``s``, the tuned sections and ``metrics.enabled`` kept from the file already there."""
    config = service_config(paths, s)
    try:
        old = yaml.safe_load(paths.config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        old = None
    if isinstance(old, dict):
        for section in TUNED:
            if isinstance(old.get(section), dict):
                config[section] = old[section]
        if isinstance(old.get("metrics"), dict) and "enabled" in old["metrics"]:
            config["metrics"]["enabled"] = old["metrics"]["enabled"]
    write_service_config(paths, config)


#: monitoring.uptime's window on the lab: its faults (and the tests' many restarts) stop the service on
#: purpose, so an outage leaves the uptime within half a minute instead of a day
LAB_UPTIME_WINDOW_S = 30.0
#: the lab's signal window (alert rules' rates, a check's widened window): a minute of its ~10 requests/s
LAB_SIGNAL_WINDOW_S = 60.0
#: the fewest requests (inserts) the lab grades a ratio on: its minute holds ~500 requests but only ~100
#: inserts (fewer on a loaded machine)
LAB_MIN_REQUESTS = 50


def build_target(paths: LabPaths, s: LabSettings) -> Target:
    docker = s.mode == "docker"
    p = s.ports
    absent = {"redis": "the lab runs no Redis", "grafana": "the lab runs no Grafana", **s.absent}
    if not docker:
        absent.setdefault("docker", "the lab runs in process mode (no Docker engine)")
    return Target(
        description=f"es-doctor lab ({s.mode} mode) in {paths.root}",
        service=ServiceConfig(
            api_url=f"http://127.0.0.1:{p.api}", metrics_url=f"http://127.0.0.1:{p.metrics}/metrics",
            # the Go program's real pprof where Go is installed, else the stand-in's text pages
            pprof_url=f"http://127.0.0.1:{p.pprof if s.pprof else p.metrics}/debug/pprof",
            container=SERVICE, image=SERVICE_IMAGE,
            config_path=f"{CONTAINER_CONFIG_DIR}/config.yaml" if docker else str(paths.config),
            config_file=str(paths.config), log_dir=str(paths.logs),
            memory_limit=f"{s.memory_limit // (1024 * 1024)}M",
            # process mode: the lab's own supervisor restarts the service (docker mode: Docker does)
            restart_command=None if docker else [s.python, "-m", "es_doctor", "lab", "restart", SERVICE,
                                                  "--lab-dir", str(paths.root)]),
        qdrant=QdrantConfig(url=f"http://127.0.0.1:{p.qdrant}", container=QDRANT, volume=s.qdrant_volume),
        postgres=PostgresConfig(dsn=f"postgresql://emailsender@127.0.0.1:{p.postgres}/email_sender",
                                password=s.pg_password or None, container=POSTGRES, volume=s.postgres_volume),
        prometheus=PrometheusConfig(url=f"http://127.0.0.1:{p.prometheus}", container=PROMETHEUS,
                                    jobs=["email-sender"]),
        docker=DockerConfig(host=s.docker_host, compose_project=s.compose_project,
                            volumes=[s.qdrant_volume, s.postgres_volume]),
        thresholds=Thresholds(uptime_window_s=LAB_UPTIME_WINDOW_S, signal_window_s=LAB_SIGNAL_WINDOW_S,
                              min_requests=LAB_MIN_REQUESTS),
        absent=absent,
        load=LoadConfig(lab=True),  # es-doctor load runs here without --yes
    )


def write_target(paths: LabPaths, target: Target) -> None:
    data = target.model_dump(mode="json", exclude_defaults=False)
    paths.target.write_text("# written by `es-doctor lab up`: the running lab as an es-doctor target\n"
                            + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    paths.target.chmod(0o600)
