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
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from es_doctor.errors import ConfigError
from es_doctor.yamlsource import YamlDocument, YamlSyntaxError, load_yaml_file, parse_yaml

ENV_PREFIX = "ES_DOCTOR_"
MASK = "********"

#: Field metadata marking a value as a secret (masked in every output).
SECRET: dict[str, Any] = {"secret": True}


def Secret(default: str | None = None, description: str = "") -> Any:  # noqa: N802
    """A secret field: a literal (discouraged) or ``env:NAME``."""
    return Field(default=default, description=description, json_schema_extra=SECRET)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Thresholds(Strict):
    """The guide's 'Seuils d'Alerte Recommandés'."""

    latency_p95_warn_ms: float = 100.0
    latency_p95_crit_ms: float = 500.0
    memory_warn_pct: float = 85.0
    memory_crit_pct: float = 95.0
    error_rate_warn_pct: float = 1.0
    error_rate_crit_pct: float = 5.0
    uptime_warn_pct: float = 99.9
    uptime_crit_pct: float = 99.0
    vector_insert_error_warn_pct: float = 0.1
    vector_search_latency_warn_ms: float = 50.0
    qdrant_connection_errors_crit: float = 0.0
    event_bus_saturation_warn_pct: float = 80.0
    event_bus_saturation_crit_pct: float = 95.0
    #: seconds between the two metric scrapes that rates and percentiles come from
    scrape_window_s: float = 2.0
    #: how far back the log checks look: the last N lines, and of those the last S seconds
    log_window_lines: int = 2000
    log_window_s: float = 60.0


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
    #: per-check timeout and overall deadline of diagnose, seconds
    check_timeout_s: float = 10.0
    deadline_s: float = 30.0
    #: components this target does not have, with the reason (their checks read SKIP)
    absent: dict[str, str] = Field(default_factory=dict)

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


class Config(Strict):
    #: the target used without -t; unset: the first target of the file
    default_target: str | None = None
    targets: dict[str, Target] = Field(default_factory=lambda: {"default": Target()})
    #: extra runbook directories; a runbook there overrides a shipped one with the same id
    runbook_dirs: list[str] = Field(default_factory=list)
    #: where fixes append their JSON Lines audit records
    audit_log: str = "~/.local/state/es-doctor/audit.jsonl"
    state_dir: str = "~/.local/state/es-doctor"
    #: where `es-doctor emergency backup` writes (unset: ``<state_dir>/backups``); nothing is written outside it
    backup_dir: str | None = None
    #: es-doctor escalate: the guide's escalation levels and their notification channels
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)


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


def resolve_secret(value: str | None) -> str | None:
    """Resolve ``env:NAME`` (and ``env:NAME`` parts of a DSN's password) at use time."""
    if value is None:
        return None
    if value.startswith("env:"):
        name = value[4:]
        return os.environ.get(name)
    return re.sub(r"env:([A-Za-z_][A-Za-z0-9_]*)", lambda m: os.environ.get(m.group(1), ""), value)


def mask_url(url: str) -> str:
    """Hide the password of a URL/DSN: ``postgresql://u:pw@h/db`` → ``postgresql://u:********@h/db``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{netloc[-1]}"))


def mask_secret(value: str | None) -> str | None:
    """How a secret field is shown: its env: reference, a masked DSN, or the mask."""
    if value is None:
        return None
    if re.fullmatch(r"env:[A-Za-z_][A-Za-z0-9_]*", value):
        return value
    if "://" in value:
        parts = urlsplit(value)
        if parts.password is not None and not parts.password.startswith("env:"):
            return mask_url(value)
        if parts.query or (parts.path.strip("/") and not parts.password):
            # webhook-style URLs carry their secret in the path or query: hide all but the host
            if parts.scheme.startswith("postgres") or parts.scheme.startswith("redis"):
                return value
            return urlunsplit((parts.scheme, parts.hostname or "", "/" + MASK, "", ""))
        return value
    return MASK


def masked_dump(model: BaseModel) -> Any:
    """The model as plain data with every secret field masked."""
    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("secret"):
            out[name] = mask_secret(value)
        elif isinstance(value, BaseModel):
            out[name] = masked_dump(value)
        elif isinstance(value, dict):
            out[name] = {k: masked_dump(v) if isinstance(v, BaseModel) else v for k, v in value.items()}
        elif isinstance(value, list):
            out[name] = [masked_dump(v) if isinstance(v, BaseModel) else v for v in value]
        else:
            out[name] = value
    return out


def secret_values(model: BaseModel) -> list[str]:
    """Every resolved secret value in ``model`` (to scrub from free text such as logs)."""
    found: list[str] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("secret") and isinstance(value, str):
            for candidate in (value, resolve_secret(value)):
                if not candidate:
                    continue
                if "://" in candidate:
                    password = urlsplit(candidate).password
                    if password and not password.startswith("env:"):
                        found.append(password)
                    if urlsplit(candidate).path.strip("/") or urlsplit(candidate).query:
                        found.append(candidate)
                elif not candidate.startswith("env:"):
                    found.append(candidate)
        elif isinstance(value, BaseModel):
            found.extend(secret_values(value))
        elif isinstance(value, dict):
            for item in value.values():
                if isinstance(item, BaseModel):
                    found.extend(secret_values(item))
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, BaseModel):
                    found.extend(secret_values(item))
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """Replace every known secret in free text by the mask."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


# --------------------------------------------------------------------------- loading


def user_config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "es-doctor"


def lab_dir() -> Path:
    """Where ``es-doctor lab`` keeps its state (``$ES_DOCTOR_LAB_DIR``)."""
    explicit = os.environ.get("ES_DOCTOR_LAB_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "es-doctor" / "lab"


def find_config_file(explicit: str | None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError("config file not found", source=str(path))
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


def validate_document(doc: YamlDocument, model: type[BaseModel], prefix: tuple[Any, ...] = ()) -> Any:
    """Validate ``doc.data`` against ``model``; one ConfigError naming file, line and key."""
    try:
        return model.model_validate(doc.data if doc.data is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        message = first["msg"]
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
        node[path[-1]] = _coerce_env(raw) if not isinstance(node[path[-1]], str) else raw
    try:
        return Target.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        var = ENV_PREFIX + "__".join(str(p).upper() for p in first["loc"])
        raise ConfigError(first["msg"], source=f"${var}", key=_format_loc(tuple(first["loc"]))) from exc


def load_config(explicit_path: str | None = None, target_name: str | None = None) -> LoadedConfig:
    """The effective configuration for one target. Raises ConfigError, never writes anything."""
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
    if os.environ.get("ES_DOCTOR_AUDIT_LOG"):
        config.audit_log = os.environ["ES_DOCTOR_AUDIT_LOG"]
    if os.environ.get("ES_DOCTOR_STATE_DIR"):
        config.state_dir = os.environ["ES_DOCTOR_STATE_DIR"]
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

