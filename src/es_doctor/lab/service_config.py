"""The lab service's ``config.yaml`` (the Go service's knobs, STACK.md) and its env overrides."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from es_doctor.units import parse_duration_or


class ConfigLoadError(Exception):
    """The config file is missing or unreadable; the message is the FATAL log line."""


@dataclass
class ServiceConfig:
    path: Path
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    metrics_enabled: bool = True
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 8081
    metrics_path: str = "/metrics"
    qdrant_url: str = "http://127.0.0.1:6333"
    collection: str = "task_vectors"
    vector_size: int = 1536
    postgres_dsn: str | None = None
    cache_max_size: int = 1000
    cache_ttl_s: float = 3600.0
    pool_max_connections: int = 10
    pool_idle_timeout_s: float = 300.0
    bus_buffer_size: int = 1000
    bus_workers: int = 10
    log_dir: Path = field(default_factory=lambda: Path("./logs"))
    log_level: str = "info"
    faults_file: Path | None = None
    traffic_rps: float = 10.0
    memory_limit_bytes: int = 268435456
    seed_tasks: int = 0
    console_log: bool = True

    @property
    def state_file(self) -> Path:
        """Where maintenance/read-only state persists (next to the faults file, else in the log dir)."""
        base = self.faults_file.parent if self.faults_file else self.log_dir
        return base / "service-state.json"


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def load_config(path: str | Path, env: dict[str, str] | None = None) -> ServiceConfig:
    """Read ``path``; raise :class:`ConfigLoadError` when missing or not valid YAML."""
    env = dict(os.environ) if env is None else env
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigLoadError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigLoadError(f"config file unreadable: {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigLoadError(f"invalid config file {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigLoadError(f"invalid config file {path}: top level is not a mapping")
    try:
        return _build(p, data, env)
    except (TypeError, ValueError) as exc:
        raise ConfigLoadError(f"invalid config file {path}: {exc}") from None


def _build(p: Path, data: dict[str, Any], env: dict[str, str]) -> ServiceConfig:
    api, met, qd = _section(data, "api"), _section(data, "metrics"), _section(data, "qdrant")
    pg, vc, cp = _section(data, "postgres"), _section(data, "vector_cache"), _section(data, "connection_pool")
    eb, lg, lab = _section(data, "event_bus"), _section(data, "logging"), _section(data, "lab")
    c = ServiceConfig(path=p)
    c.api_host = str(api.get("host", c.api_host))
    c.api_port = int(env.get("API_PORT") or api.get("port", c.api_port))
    c.metrics_enabled = bool(met.get("enabled", True))
    c.metrics_host = str(met.get("host", c.metrics_host))
    c.metrics_port = int(env.get("METRICS_PORT") or met.get("port", c.metrics_port))
    c.metrics_path = str(met.get("path", c.metrics_path))
    c.qdrant_url = str(qd.get("url", c.qdrant_url)).rstrip("/")
    c.collection = str(qd.get("collection", c.collection))
    c.vector_size = int(qd.get("vector_size", c.vector_size))
    c.postgres_dsn = str(pg["dsn"]) if pg.get("dsn") else None
    c.cache_max_size = int(env.get("CACHE_SIZE") or vc.get("max_size", c.cache_max_size))
    c.cache_ttl_s = parse_duration_or(vc.get("ttl"), c.cache_ttl_s)
    c.pool_max_connections = int(
        env.get("CONNECTION_POOL_SIZE") or cp.get("max_connections", c.pool_max_connections)
    )
    c.pool_idle_timeout_s = parse_duration_or(cp.get("idle_timeout"), c.pool_idle_timeout_s)
    c.bus_buffer_size = max(1, int(eb.get("buffer_size", c.bus_buffer_size)))
    c.bus_workers = max(1, int(eb.get("workers", c.bus_workers)))
    c.log_dir = Path(str(lg.get("dir", "./logs")))
    c.log_level = str(env.get("LOG_LEVEL") or lg.get("level", c.log_level)).lower()
    faults = env.get("LAB_FAULTS_FILE") or lab.get("faults_file")
    c.faults_file = Path(str(faults)) if faults else None
    c.traffic_rps = float(lab.get("traffic_rps", c.traffic_rps))
    c.memory_limit_bytes = int(lab.get("memory_limit_bytes", c.memory_limit_bytes))
    c.seed_tasks = int(lab.get("seed_tasks", c.seed_tasks))
    c.console_log = bool(lab.get("console_log", True))
    return c


def log_dir_hint(path: str | Path, fallback: Path | None = None) -> Path:
    """The log dir to use for a FATAL line when the config could not be loaded: the file's
    ``logging.dir`` when it can be read, else ``fallback`` (the service's ``--log-dir``), else ./logs."""
    default = fallback or Path("./logs")
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        lg = _section(data, "logging") if isinstance(data, dict) else {}
        return Path(str(lg.get("dir", default)))
    except (OSError, yaml.YAMLError):
        return default
