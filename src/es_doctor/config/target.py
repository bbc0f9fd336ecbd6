"""The target model: one stack's addresses, containers, thresholds and metric names (``targets:`` entries).

Every section is a strict pydantic model (unknown keys and NaN/infinite numbers are refused). A field made
with :func:`Secret` is masked in every output and may be written ``env:NAME``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from es_doctor.units import parse_duration

#: Field metadata marking a value as a secret (masked in every output).
SECRET: dict[str, Any] = {"secret": True}


def Secret(default: str | None = None, description: str = "") -> Any:  # noqa: N802
    """A secret field: a literal (discouraged) or ``env:NAME``."""
    return Field(default=default, description=description, json_schema_extra=SECRET)


class Strict(BaseModel):
    #: NaN and infinities are refused everywhere: no threshold, timeout or size can be "nan"
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


#: the components a target can mark ``absent`` (the sections with an ``enabled`` flag)
COMPONENTS = ("service", "qdrant", "postgres", "redis", "prometheus", "grafana", "docker")


def _duration(value: object) -> object:
    """A duration written ``90s``, ``1m30s``, ``1h30m``, ``500ms`` (or a number of seconds) → seconds."""
    return parse_duration(value) if isinstance(value, str) else value


#: the longest duration any setting may hold (a year): a larger one overflows the clock's arithmetic
#: (``1e300`` passed validation and diagnose died with OverflowError)
MAX_SECONDS = 366 * 86400.0
#: a duration in seconds: a positive, finite number (or a duration written ``1m30s``), at most a year
Seconds = Annotated[float, BeforeValidator(_duration), Field(gt=0, le=MAX_SECONDS)]
#: the same, zero allowed
SecondsOrZero = Annotated[float, BeforeValidator(_duration), Field(ge=0, le=MAX_SECONDS)]
#: the same, at least one second and at most a day (an interval)
SecondsAtLeast1 = Annotated[float, BeforeValidator(_duration), Field(ge=1.0, le=86400)]
#: a timeout in seconds: positive, at most an hour
TimeoutSeconds = Annotated[float, BeforeValidator(_duration), Field(gt=0, le=3600)]
#: a duration of at most a day (a deadline, a load test's length)
DaySeconds = Annotated[float, BeforeValidator(_duration), Field(gt=0, le=86400)]
#: a threshold: a finite number, not negative
Level = Annotated[float, Field(ge=0)]


class Thresholds(Strict):
    """The guide's 'Seuils d'Alerte Recommandés'."""

    latency_p95_warn_ms: Level = 100.0
    latency_p95_crit_ms: Level = 500.0
    memory_warn_pct: Level = 85.0
    memory_crit_pct: Level = 95.0
    error_rate_warn_pct: Level = 1.0
    error_rate_crit_pct: Level = 5.0
    uptime_warn_pct: Level = 99.9
    uptime_crit_pct: Level = 99.0
    #: how far back ``monitoring.uptime`` (and the uptime alert rules) look: the guide's day by default
    uptime_window_s: Seconds = 86400.0
    vector_insert_error_warn_pct: Level = 0.1
    vector_search_latency_warn_ms: Level = 50.0
    qdrant_connection_errors_crit: Level = 0.0
    event_bus_saturation_warn_pct: Level = 80.0
    event_bus_saturation_crit_pct: Level = 95.0
    #: seconds between the two metric scrapes that rates and percentiles come from
    scrape_window_s: TimeoutSeconds = 2.0
    #: fewest requests (events) a ratio (error rate, insert error ratio) is graded on (es_doctor.signals)
    min_requests: Annotated[int, Field(ge=1, le=10**9)] = 100
    #: fewest observations a latency percentile is graded on
    min_observations: Annotated[int, Field(ge=1, le=10**9)] = 10
    #: the window of the alert rules' rates and percentiles, and how far a check widens its window over
    #: Prometheus when its two scrapes hold too few requests
    signal_window_s: Annotated[float, Field(ge=10, le=86400 * 7)] = 300.0
    #: how far back the log checks look: the last N lines, and of those the last S seconds
    log_window_lines: Annotated[int, Field(gt=0)] = 2000
    log_window_s: Seconds = 60.0


class MetricNames(Strict):
    """Metric names of the service (STACK.md defaults)."""

    requests_total: str = "email_sender_http_requests_total"
    request_duration: str = "email_sender_http_request_duration_seconds"
    event_bus_depth: str = "email_sender_event_bus_queue_depth"
    event_bus_capacity: str = "email_sender_event_bus_capacity"
    event_bus_dropped: str = "email_sender_event_bus_dropped_total"
    event_bus_published: str = "email_sender_event_bus_published_total"
    vector_operations: str = "email_sender_vector_operations_total"
    vector_search_duration: str = "email_sender_vector_search_duration_seconds"
    qdrant_connection_errors: str = "email_sender_qdrant_connection_errors_total"
    managers_up: str = "email_sender_managers_up"
    db_connections: str = "email_sender_db_connections"
    resident_memory: str = "process_resident_memory_bytes"
    start_time: str = "process_start_time_seconds"
    prefix: str = "email_sender_"


class ServiceConfig(Strict):
    enabled: bool = True
    api_url: str = "http://localhost:8080"
    metrics_url: str = "http://localhost:8081/metrics"
    pprof_url: str = "http://localhost:8081/debug/pprof"
    container: str = "email-sender-go"
    #: the image (with tag) the deployment is meant to run; drift is checked against it
    image: str = "email-sender-go:latest"
    #: the service's config file inside its container
    config_path: str = "/app/config/config.yaml"
    #: the same file on this host, when the service runs without Docker
    config_file: str | None = None
    #: the service's log directory on this host (`logs/` of the deployment)
    log_dir: str = "logs"
    main_log: str = "email-sender.log"
    error_log: str = "email-sender-error.log"
    #: memory limit used when Docker reports none (the compose file's 2G)
    memory_limit: str = "2G"
    api_key: str | None = Secret(description="bearer token for the service API, if any")
    openai_api_key: str | None = Secret(description="OpenAI key (quota check)")
    #: required environment variables of the service
    required_env: list[str] = Field(default_factory=lambda: ["GO_ENV"])
    #: how to restart the service where Docker does not run it: an argv (no shell), e.g.
    #: ["systemctl", "restart", "email-sender-go"]; used by the `service.restart` action
    restart_command: list[str] | None = None

    #: of those, the ones whose value may be shown (startup.go-env); the others read set/unset
    show_env: list[str] = Field(default_factory=lambda: ["GO_ENV"])

    @field_validator("memory_limit")
    @classmethod
    def _size(cls, value: str) -> str:
        parse_size(value)  # ValueError: "not a size: 'lots'"
        return value


class QdrantConfig(Strict):
    enabled: bool = True
    #: ``http(s)://host:port`` or ``local:/path`` (embedded) or ``local::memory:``
    url: str = "http://localhost:6333"
    api_key: str | None = Secret()
    container: str = "qdrant"
    collection: str = "task_vectors"
    vector_size: int = 1536
    distance: Literal["Cosine", "Dot", "Euclid", "Manhattan"] = "Cosine"
    #: payload key holding the PostgreSQL task id
    task_id_key: str = "task_id"
    volume: str = "qdrant_data"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not (value.startswith(("http://", "https://", "local:"))):
            raise ValueError("must be an http(s):// URL or local:PATH")
        return value


class PostgresConfig(Strict):
    enabled: bool = True
    dsn: str = Secret("postgresql://emailsender@localhost:5432/email_sender")
    password: str | None = Secret(description="password, when not in the DSN (env:PGPASSWORD)")
    container: str = "postgres"
    tasks_table: str = "tasks"
    id_column: str = "id"
    volume: str = "postgres_data"


class RedisConfig(Strict):
    enabled: bool = True
    url: str = Secret("redis://localhost:6379")
    container: str = "redis"


class PrometheusConfig(Strict):
    enabled: bool = True
    url: str = "http://localhost:9090"
    container: str = "prometheus"
    #: scrape job names that count as the service's target
    jobs: list[str] = Field(default_factory=lambda: ["email-sender", "email-sender-go"])


class GrafanaConfig(Strict):
    enabled: bool = True
    url: str = "http://localhost:3000"
    container: str = "grafana"


class DockerConfig(Strict):
    enabled: bool = True
    #: ``unix:///var/run/docker.sock``, ``tcp://…``; None: ``$DOCKER_HOST`` or the default socket
    host: str | None = None
    compose_project: str = "email_sender"
    volumes: list[str] = Field(default_factory=lambda: ["qdrant_data", "postgres_data"])
    #: start order (stop order is the reverse)
    start_order: list[str] = Field(
        default_factory=lambda: ["postgres", "redis", "qdrant", "email-sender-go", "prometheus", "grafana"]
    )


class LogsConfig(Strict):
    deployment_glob: str = "deployment-*.log"
    migration_glob: str = "migration-*.log"


class LoadConfig(Strict):
    """``es-doctor load``: what a load test may do on this target."""

    #: a disposable stack (``es-doctor lab up`` writes true): load runs on it without ``--yes``, once its API
    #: has shown it is the lab (``GET /_lab/faults``); any other target needs ``--yes``
    lab: bool = False
    #: the highest arrival rate (requests/s), duration (s) and concurrency a load test may ask for
    max_rps: float = Field(default=200.0, gt=0, le=100_000)
    max_duration_s: DaySeconds = 300.0
    max_concurrency: int = Field(default=64, gt=0, le=4096)
    #: where the test data's marker (``es-doctor-load-<run id>``) lands: the tasks table's title column and
    #: the vectors' payload key; cleanup deletes a record only when it has one of the ids the API returned
    #: *and* the marker (null: nothing is deleted, the records are reported)
    title_column: str | None = "title"
    title_key: str | None = "title"


class Target(Strict):
    """One stack es-doctor can diagnose."""

    description: str = ""
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    qdrant: QdrantConfig = Field(default_factory=QdrantConfig)
    postgres: PostgresConfig = Field(default_factory=PostgresConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    grafana: GrafanaConfig = Field(default_factory=GrafanaConfig)
    docker: DockerConfig = Field(default_factory=DockerConfig)
    logs: LogsConfig = Field(default_factory=LogsConfig)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    metrics: MetricNames = Field(default_factory=MetricNames)
    #: es-doctor load: caps, and whether this target is the lab
    load: LoadConfig = Field(default_factory=LoadConfig)
    #: per-check timeout and overall deadline of diagnose, seconds
    check_timeout_s: TimeoutSeconds = 10.0
    deadline_s: DaySeconds = 30.0
    #: components this target does not have, with the reason (their checks read SKIP)
    absent: dict[str, str] = Field(default={})

    @field_validator("absent")
    @classmethod
    def _components(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"unknown component(s) {', '.join(unknown)} (known: {', '.join(COMPONENTS)})")
        return value

    def is_present(self, component: str) -> tuple[bool, str]:
        if component in self.absent:
            return False, self.absent[component]
        section = getattr(self, component, None)
        if section is not None and getattr(section, "enabled", True) is False:
            return False, f"{component} is disabled in the target's configuration"
        return True, ""


def parse_size(text: str) -> int:
    """``2G``, ``512m``, ``1.5GiB``, ``1048576`` → bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgGtT]?)(i?[bB])?\s*", text)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    number = float(match.group(1))
    unit = match.group(2).upper()
    factor = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}[unit]
    return int(number * factor)

