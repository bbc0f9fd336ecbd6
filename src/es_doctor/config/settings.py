"""The file's settings beyond its targets: escalation levels and channels, ``serve``, state and backup dirs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from es_doctor.config.locations import default_state_dir
from es_doctor.config.remediation import RemediationConfig
from es_doctor.config.target import SecondsAtLeast1, SecondsOrZero, Secret, Strict, Target, TimeoutSeconds

#: where ``es-doctor serve`` listens unless told otherwise (``serve.listen``)
DEFAULT_LISTEN = "127.0.0.1:9109"
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
    responsibilities: list[str] = Field(default=[])
    #: names of ``escalation.channels`` entries
    channels: list[str] = Field(default=[])


class EscalationChannel(Strict):
    """A notification channel: Slack-compatible webhook, PagerDuty Events API v2, generic JSON webhook."""

    type: Literal["slack", "pagerduty", "webhook"]
    #: the webhook URL (env:NAME); for pagerduty, unset means https://events.pagerduty.com/v2/enqueue
    url: str | None = Secret(description="webhook / events URL (env:NAME)")
    routing_key: str | None = Secret(description="PagerDuty integration (routing) key (env:NAME)")
    timeout_s: TimeoutSeconds = 10.0
    #: retries after the first attempt, with exponential backoff starting at backoff_s
    retries: int = Field(default=3, ge=0, le=10)
    backoff_s: SecondsOrZero = 0.2

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
    channels: dict[str, EscalationChannel] = Field(default={})

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
    listen: str = DEFAULT_LISTEN
    #: seconds between two diagnoses of one target (each target on its own schedule)
    interval_s: SecondsAtLeast1 = 30.0
    #: each run starts up to this share of the interval early or late, so targets do not run in step
    jitter_pct: float = Field(default=10.0, ge=0.0, le=50.0)
    #: bearer token every path but /healthz requires (env:NAME); mandatory off loopback
    token: str | None = Secret(description="bearer token of es-doctor serve (env:NAME)")
    #: how long status changes are kept (the latest change of each check is always kept)
    history_retention_days: float = Field(default=30.0, gt=0.0, le=36600)


class Config(Strict):
    #: the target used without -t; unset: the first target of the file
    default_target: str | None = None
    targets: dict[str, Target] = Field(default_factory=lambda: {"default": Target()})
    #: extra runbook directories; a runbook there overrides a shipped one with the same id
    runbook_dirs: list[str] = Field(default=[])
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


