"""One error type for known failures, and the one table of exit codes.

Every command returns an :class:`ExitStatus`. ``diagnose`` follows the Nagios plugin
convention (0-3); everything else that is not a finding uses the BSD ``sysexits`` codes so
that a usage or configuration error never shares its code with a CRITICAL finding.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Documented exit codes of every es-doctor command."""

    OK = 0  #: all checks OK / command succeeded
    WARNING = 1  #: at least one WARN finding (diagnose), or a fix that did not verify
    CRITICAL = 2  #: at least one CRIT finding (diagnose)
    UNKNOWN = 3  #: at least one UNKNOWN finding and no CRIT (diagnose)
    USAGE = 64  #: bad command line (click's own usage code 2 is remapped here)
    DATA = 65  #: malformed input file: runbook, backup manifest
    UNAVAILABLE = 69  #: a required service or lock is unavailable
    SOFTWARE = 70  #: a bug in es-doctor (a traceback was written to the crash log)
    CANT_CREATE = 73  #: an output file could not be created
    CONFIG = 78  #: malformed or invalid configuration
    INTERRUPTED = 130  #: Ctrl-C


class EsDoctorError(Exception):
    """A known failure: printed as one clear line, exits with ``exit_status``."""

    exit_status: ExitStatus = ExitStatus.SOFTWARE

    def __init__(self, message: str, *, exit_status: ExitStatus | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_status is not None:
            self.exit_status = exit_status


class ConfigError(EsDoctorError):
    """The configuration file or an ES_DOCTOR_* variable is invalid."""

    exit_status = ExitStatus.CONFIG

    def __init__(
        self, message: str, *, source: str | None = None, line: int | None = None, key: str | None = None
    ) -> None:
        where = source or ""  # no file: the built-in defaults, nothing to name
        if line is not None and where:
            where += f":{line}"
        detail = f"key '{key}': {message}" if key else message
        if where:
            detail = f"{where}: {detail}"
        super().__init__(detail)
        self.source = source
        self.line = line
        self.key = key


class UsageError(EsDoctorError):
    exit_status = ExitStatus.USAGE


class UnavailableError(EsDoctorError):
    exit_status = ExitStatus.UNAVAILABLE


class CantCreateError(EsDoctorError):
    """A file or directory es-doctor must write (state dir, audit log, backup) cannot be created."""

    exit_status = ExitStatus.CANT_CREATE
