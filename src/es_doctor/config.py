"""Targets, thresholds and secrets: ``es-doctor.yaml``.

Lookup order: ``--config``, then ``$ES_DOCTOR_CONFIG``, then ``./es-doctor.yaml``, then the
user config dir (``~/.config/es-doctor/es-doctor.yaml``). Without a file the built-in target
``default`` holds STACK.md's addresses. The target ``lab`` is always available: it is read from
the running lab's state directory (``es-doctor lab up`` writes it).

Every value of the selected target can be overridden by ``ES_DOCTOR_<SECTION>__<KEY>``
(e.g. ``ES_DOCTOR_SERVICE__API_URL``, ``ES_DOCTOR_THRESHOLDS__LATENCY_P95_WARN_MS``).
Secrets are written ``env:NAME`` and resolved only when used; they are never printed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from es_doctor.errors import ConfigError
from es_doctor.remediation.policy import RemediationConfig
from es_doctor.secrets import MASK, mask_secret, masked_dump, resolve_secret, scrub, secret_values
from es_doctor.yamlsource import YamlDocument, YamlSyntaxError, load_yaml_file, parse_yaml

ENV_PREFIX = "ES_DOCTOR_"
__all__ = ["MASK", "mask_secret", "masked_dump", "resolve_secret", "scrub", "secret_values"]

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
#: a duration in seconds: a positive, finite number
Seconds = Annotated[float, Field(gt=0)]
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
    scrape_window_s: Seconds = 2.0
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
    max_rps: float = Field(default=200.0, gt=0)
    max_duration_s: float = Field(default=300.0, gt=0)
    max_concurrency: int = Field(default=64, gt=0)
    #: where the test data's marker (``es-doctor-load-<run id>``) lands: the tasks table's title column and
    #: the vectors' payload key (null: test records are removed by the ids the API returned only)
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
    check_timeout_s: Seconds = 10.0
    deadline_s: Seconds = 30.0
    #: components this target does not have, with the reason (their checks read SKIP)
    absent: dict[str, str] = Field(default_factory=dict)

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


#: the guide's "Niveaux d'Escalade": the team of each level and what it handles
GUIDE_ESCALATION_LEVELS: dict[int, dict[str, Any]] = {
    1: {"team": "Équipe Dev",
        "responsibilities": ["Redémarrage services", "Analyse logs basique", "Tests de connectivité"]},
    2: {"team": "DevOps",
        "responsibilities": ["Problèmes infrastructure", "Déploiement/rollback", "Configuration réseau"]},
    3: {"team": "Expertise",
        "responsibilities": ["Corruption données", "Problèmes performance complexes", "Sécurité"]},
}


class EscalationLevel(Strict):
    """Who an escalation level goes to, and the channels that reach them."""

    team: str
    responsibilities: list[str] = Field(default_factory=list)
    #: names of ``escalation.channels`` entries
    channels: list[str] = Field(default_factory=list)


class EscalationChannel(Strict):
    """A notification channel: Slack-compatible webhook, PagerDuty Events API v2, generic JSON webhook."""

    type: Literal["slack", "pagerduty", "webhook"]
    #: the webhook URL (env:NAME); for pagerduty, unset means https://events.pagerduty.com/v2/enqueue
    url: str | None = Secret(description="webhook / events URL (env:NAME)")
    routing_key: str | None = Secret(description="PagerDuty integration (routing) key (env:NAME)")
    timeout_s: float = Field(default=10.0, gt=0)
    #: retries after the first attempt, with exponential backoff starting at backoff_s
    retries: int = Field(default=3, ge=0, le=10)
    backoff_s: float = Field(default=0.2, ge=0)

    @model_validator(mode="after")
    def _needs(self) -> EscalationChannel:
        if self.type == "pagerduty" and not self.routing_key:
            raise ValueError("a pagerduty channel needs a routing_key")
        if self.type != "pagerduty" and not self.url:
            raise ValueError(f"a {self.type} channel needs a url")
        return self


def _guide_levels() -> dict[int, EscalationLevel]:
    return {level: EscalationLevel(**data) for level, data in GUIDE_ESCALATION_LEVELS.items()}


class EscalationConfig(Strict):
    """``es-doctor escalate``: levels (team, responsibilities, channels) and the channels themselves."""

    levels: dict[int, EscalationLevel] = Field(default_factory=_guide_levels)
    channels: dict[str, EscalationChannel] = Field(default_factory=dict)

    @field_validator("levels", mode="before")
    @classmethod
    def _merge_guide(cls, value: Any) -> Any:
        """A level given in the file keeps the guide's team and responsibilities unless it sets them."""
        if not isinstance(value, dict):
            return value
        merged: dict[Any, Any] = {k: dict(v) for k, v in GUIDE_ESCALATION_LEVELS.items()}
        for key, item in value.items():
            number = key if isinstance(key, int) else int(key) if str(key).isdigit() else key
            if isinstance(item, dict) and number in merged:
                merged[number] = {**merged[number], **item}
            else:
                merged[number] = item
        return merged

    @model_validator(mode="after")
    def _consistent(self) -> EscalationConfig:
        for level, spec in self.levels.items():
            if level not in (1, 2, 3):
                raise ValueError(f"escalation level {level} does not exist (levels are 1, 2, 3)")
            unknown = [name for name in spec.channels if name not in self.channels]
            if unknown:
                raise ValueError(f"level {level} names unknown channel(s): {', '.join(unknown)}")
        return self


class ServeConfig(Strict):
    """``es-doctor serve``: the daemon that diagnoses every target on a schedule."""

    #: address:port to listen on; any address but loopback requires ``token``
    listen: str = "127.0.0.1:9109"
    #: seconds between two diagnoses of one target (each target on its own schedule)
    interval_s: float = Field(default=30.0, ge=1.0)
    #: each run starts up to this share of the interval early or late, so targets do not run in step
    jitter_pct: float = Field(default=10.0, ge=0.0, le=50.0)
    #: bearer token every path but /healthz requires (env:NAME); mandatory off loopback
    token: str | None = Secret(description="bearer token of es-doctor serve (env:NAME)")
    #: how long status changes are kept (the latest change of each check is always kept)
    history_retention_days: float = Field(default=30.0, gt=0.0)


class Config(Strict):
    #: the target used without -t; unset: the first target of the file
    default_target: str | None = None
    targets: dict[str, Target] = Field(default_factory=lambda: {"default": Target()})
    #: extra runbook directories; a runbook there overrides a shipped one with the same id
    runbook_dirs: list[str] = Field(default_factory=list)
    #: where fixes append their JSON Lines audit records (default: ``<state_dir>/audit.jsonl``)
    audit_log: str = Field(default_factory=lambda: str(default_state_dir() / "audit.jsonl"))
    #: runs, locks, incidents, backups, serve's database (default: ``$XDG_STATE_HOME/es-doctor``, through
    #: platformdirs; ``ES_DOCTOR_STATE_DIR`` wins over the file)
    state_dir: str = Field(default_factory=lambda: str(default_state_dir()))
    #: where `es-doctor emergency backup` writes (unset: ``<state_dir>/backups``); nothing is written outside it
    backup_dir: str | None = None
    #: es-doctor escalate: the guide's escalation levels and their notification channels
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)
    #: es-doctor serve: listen address, interval, token, history retention
    serve: ServeConfig = Field(default_factory=ServeConfig)
    #: es-doctor serve: which cures an Alertmanager alert may start (auto, approve, never), and the limits
    remediation: RemediationConfig = Field(default_factory=RemediationConfig)


def backup_root(config: Config) -> Path:
    return Path(config.backup_dir or Path(config.state_dir) / "backups").expanduser()


class LoadedConfig(BaseModel):
    """The effective configuration and where it came from."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    config: Config
    source: str | None
    target_name: str
    target: Target


# --------------------------------------------------------------------------- secrets
# resolving, masking and scrubbing live in es_doctor.secrets; these names stay importable from here


# --------------------------------------------------------------------------- loading


def default_state_dir() -> Path:
    """es-doctor's state directory for this user: ``$XDG_STATE_HOME/es-doctor``, else
    ``~/.local/state/es-doctor`` (platformdirs: the platform's convention elsewhere)."""
    from platformdirs import user_state_dir

    return Path(user_state_dir("es-doctor", appauthor=False))


def user_config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "es-doctor"


def lab_dir() -> Path:
    """Where ``es-doctor lab`` keeps its state (``$ES_DOCTOR_LAB_DIR``)."""
    explicit = os.environ.get("ES_DOCTOR_LAB_DIR")
    if explicit:
        return Path(explicit)
    return default_state_dir() / "lab"


def find_config_file(explicit: str | None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError("not a regular file" if path.exists() else "config file not found", source=str(path))
        return path
    env = os.environ.get("ES_DOCTOR_CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError("config file named by ES_DOCTOR_CONFIG not found", source=str(path))
        return path
    for candidate in (Path.cwd() / "es-doctor.yaml", user_config_dir() / "es-doctor.yaml"):
        if candidate.is_file():
            return candidate
    return None


def _format_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _error_message(error: Any) -> str:
    """A pydantic error as words: a validator's own message without pydantic's "Value error, " prefix."""
    ctx = error.get("ctx") or {}
    if error["type"] == "value_error" and "error" in ctx:
        return str(ctx["error"])
    return str(error["msg"])


def validate_document(doc: YamlDocument, model: type[BaseModel], prefix: tuple[Any, ...] = ()) -> Any:
    """Validate ``doc.data`` against ``model``; one ConfigError naming file, line and key."""
    try:
        return model.model_validate(doc.data if doc.data is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        message = _error_message(first)
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        raise ConfigError(
            message, source=doc.source, line=doc.line_of(prefix + loc), key=_format_loc(prefix + loc)
        ) from exc


def load_config_document(doc: YamlDocument) -> Config:
    result: Config = validate_document(doc, Config)
    return result


def load_lab_target() -> Target | None:
    path = lab_dir() / "target.yaml"
    if not path.is_file():
        return None
    try:
        doc = load_yaml_file(path)
    except YamlSyntaxError as exc:
        raise ConfigError(exc.message, source=exc.source, line=exc.line) from exc
    target: Target = validate_document(doc, Target)
    return target


def _is_text(model: type[BaseModel], path: list[str]) -> bool:
    """Whether the field at ``path`` (lower-case names) of ``model`` holds text: its env value is taken verbatim."""
    current: Any = model
    for part in path:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return False
        current = fields[part].annotation
        if get_origin(current) in (Union, UnionType):  # X | None
            members = [a for a in get_args(current) if a is not type(None)]
            current = members[0] if len(members) == 1 else current
    return current is str


def _coerce_env(raw: str) -> Any:
    """Env values are YAML scalars/flow collections: ``3``, ``true``, ``[a, b]``."""
    try:
        doc = parse_yaml(raw, "<env>")
    except YamlSyntaxError:
        return raw
    return raw if doc.data is None else doc.data


def apply_env_overrides(target: Target, environ: dict[str, str]) -> Target:
    data = target.model_dump()
    reserved = {"CONFIG", "TARGET", "LAB_DIR", "STATE_DIR", "AUDIT_LOG"}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :]
        if key in reserved:
            continue
        path = [part.lower() for part in key.split("__")]
        node: Any = data
        for part in path[:-1]:
            if not isinstance(node, dict) or part not in node:
                raise ConfigError("unknown key", source=f"${name}", key=".".join(path))
            node = node[part]
        if not isinstance(node, dict) or path[-1] not in node:
            raise ConfigError("unknown key", source=f"${name}", key=".".join(path))
        node[path[-1]] = raw if _is_text(Target, path) else _coerce_env(raw)
    try:
        return Target.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        var = ENV_PREFIX + "__".join(str(p).upper() for p in first["loc"])
        raise ConfigError(_error_message(first), source=f"${var}", key=_format_loc(tuple(first["loc"]))) from exc


def load_config(explicit_path: str | None = None, target_name: str | None = None, *,
                env_overrides: bool = True) -> LoadedConfig:
    """The effective configuration for one target. Raises ConfigError, never writes anything.

    ``env_overrides=False`` leaves out the ``ES_DOCTOR_<SECTION>__<KEY>`` overrides (several targets at
    once: an override meant for the selected target must not make every target the same)."""
    path = find_config_file(explicit_path)
    if path is None:
        config = Config()
        source = None
    else:
        try:
            doc = load_yaml_file(path)
        except YamlSyntaxError as exc:
            raise ConfigError(exc.message, source=exc.source, line=exc.line) from exc
        config = load_config_document(doc)
        source = str(path)
    name = target_name or os.environ.get("ES_DOCTOR_TARGET") or config.default_target or next(iter(config.targets),
                                                                                                  "default")
    if name in config.targets:
        target = config.targets[name]
    elif name == "lab":
        lab = load_lab_target()
        if lab is None:
            raise ConfigError(
                f"target 'lab' is not running (no {lab_dir() / 'target.yaml'}); start it: es-doctor lab up",
                source=source,
            )
        target = lab
    else:
        known = sorted([*config.targets, "lab"])
        raise ConfigError(f"unknown target '{name}' (known: {', '.join(known)})", source=source)
    audit_given = "audit_log" in config.model_fields_set
    if os.environ.get("ES_DOCTOR_STATE_DIR"):
        config.state_dir = os.environ["ES_DOCTOR_STATE_DIR"]
        if not audit_given:  # the audit log lives in the state dir unless the file puts it elsewhere
            config.audit_log = str(Path(config.state_dir) / "audit.jsonl")
    if os.environ.get("ES_DOCTOR_AUDIT_LOG"):
        config.audit_log = os.environ["ES_DOCTOR_AUDIT_LOG"]
    if env_overrides:
        target = apply_env_overrides(target, dict(os.environ))
    return LoadedConfig(config=config, source=source, target_name=name, target=target)


def parse_size(text: str) -> int:
    """``2G``, ``512m``, ``1.5GiB``, ``1048576`` → bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgGtT]?)(i?[bB])?\s*", text)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    number = float(match.group(1))
    unit = match.group(2).upper()
    factor = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}[unit]
    return int(number * factor)



def load_targets(explicit_path: str | None, names: list[str], all_targets: bool = False) -> list[LoadedConfig]:
    """Several targets at once (``diagnose -t a -t b``, ``--all-targets``, ``serve``): each loaded like
    :func:`load_config`; with one target the env overrides apply as usual, with several they do not.
    ``all_targets``: every target of the file (plus ``lab`` only when named). Duplicates are dropped."""
    if all_targets:
        first = load_config(explicit_path, names[0] if names else None, env_overrides=False)
        names = [*first.config.targets, *[n for n in names if n not in first.config.targets]]
    unique = list(dict.fromkeys(names))
    if len(unique) <= 1:
        return [load_config(explicit_path, unique[0] if unique else None)]
    return [load_config(explicit_path, name, env_overrides=False) for name in unique]
