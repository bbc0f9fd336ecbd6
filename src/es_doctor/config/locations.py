"""Where es-doctor's files are: the state directory, the user config dir, the lab's dir, the config file."""

from __future__ import annotations

import os
from pathlib import Path

from es_doctor.errors import ConfigError


def default_state_dir() -> Path:
    """es-doctor's state directory for this user: ``$XDG_STATE_HOME/es-doctor``, else
    ``~/.local/state/es-doctor`` (platformdirs: the platform's convention elsewhere)."""
    from platformdirs import user_state_dir

    return Path(user_state_dir("es-doctor", appauthor=False))


#: the state directory of the configuration this process loaded last (see :func:`state_dir_in_use`)
_LOADED_STATE_DIR: list[Path] = []


def note_state_dir(path: str | Path) -> None:
    """Remember the state directory a loaded configuration names (its ``state_dir``, or the override)."""
    _LOADED_STATE_DIR[:] = [Path(path).expanduser()]


def state_dir_in_use() -> Path:
    """Where this process's state goes when no configuration is at hand (a crash log):
    ``$ES_DOCTOR_STATE_DIR`` (which wins over every file), else the state directory of the configuration
    loaded last, else :func:`default_state_dir`."""
    if os.environ.get("ES_DOCTOR_STATE_DIR"):
        return Path(os.environ["ES_DOCTOR_STATE_DIR"])
    return _LOADED_STATE_DIR[0] if _LOADED_STATE_DIR else default_state_dir()


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

