"""Targets and settings: ``es-doctor.yaml``.

Lookup order: ``--config``, then ``$ES_DOCTOR_CONFIG``, then ``./es-doctor.yaml``, then the
user config dir (``~/.config/es-doctor/es-doctor.yaml``). Without a file the built-in target
``default`` holds STACK.md's addresses. The target ``lab`` is always available: it is read from
the running lab's state directory (``es-doctor lab up`` writes it).

Every value of the selected target can be overridden by ``ES_DOCTOR_<SECTION>__<KEY>``
(e.g. ``ES_DOCTOR_SERVICE__API_URL``, ``ES_DOCTOR_THRESHOLDS__LATENCY_P95_WARN_MS``).
Secrets are written ``env:NAME`` and resolved only when used (:mod:`es_doctor.secrets`); they are
never printed.

The package's rooms: :mod:`~es_doctor.config.target` (the target model), :mod:`~es_doctor.config.settings`
(escalation, serve, state and backup dirs: the whole file), :mod:`~es_doctor.config.locations` (where
files are) and :mod:`~es_doctor.config.load` (finding, validating and overriding). The common names are
importable from here. Secrets are not: import :mod:`es_doctor.secrets`.
"""

from __future__ import annotations

from es_doctor.config.load import (
    ENV_PREFIX,
    apply_env_overrides,
    load_config,
    load_config_document,
    load_lab_target,
    load_targets,
    validate_document,
)
from es_doctor.config.locations import default_state_dir, find_config_file, lab_dir, user_config_dir
from es_doctor.config.settings import (
    GUIDE_ESCALATION_LEVELS,
    Config,
    EscalationChannel,
    EscalationConfig,
    EscalationLevel,
    LoadedConfig,
    ServeConfig,
    backup_root,
)
from es_doctor.config.target import (
    COMPONENTS,
    SECRET,
    DockerConfig,
    GrafanaConfig,
    LoadConfig,
    LogsConfig,
    MetricNames,
    PostgresConfig,
    PrometheusConfig,
    QdrantConfig,
    RedisConfig,
    Seconds,
    Secret,
    ServiceConfig,
    Strict,
    Target,
    Thresholds,
    parse_size,
)

__all__ = [
    "COMPONENTS",
    "ENV_PREFIX",
    "GUIDE_ESCALATION_LEVELS",
    "SECRET",
    "Config",
    "DockerConfig",
    "EscalationChannel",
    "EscalationConfig",
    "EscalationLevel",
    "GrafanaConfig",
    "LoadConfig",
    "LoadedConfig",
    "LogsConfig",
    "MetricNames",
    "PostgresConfig",
    "PrometheusConfig",
    "QdrantConfig",
    "RedisConfig",
    "Seconds",
    "Secret",
    "ServeConfig",
    "ServiceConfig",
    "Strict",
    "Target",
    "Thresholds",
    "apply_env_overrides",
    "backup_root",
    "default_state_dir",
    "find_config_file",
    "lab_dir",
    "load_config",
    "load_config_document",
    "load_lab_target",
    "load_targets",
    "parse_size",
    "user_config_dir",
    "validate_document",
]
