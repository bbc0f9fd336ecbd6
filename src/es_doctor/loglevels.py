"""The service's log levels, once: their order (with the usual aliases) and the ones an operator picks."""

from __future__ import annotations

#: severity order of the service's levels (and the usual aliases)
LEVEL_RANK: dict[str, int] = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "NOTICE": 25, "WARN": 30, "WARNING": 30,
                              "ERROR": 40, "ERR": 40, "FATAL": 50, "PANIC": 50, "CRITICAL": 50, "CRIT": 50}
#: the levels the Go service writes (STACK.md "Logs"), lowest first
LEVEL_CHOICES = ("DEBUG", "INFO", "WARN", "ERROR", "FATAL")


def level_rank(word: str) -> int:
    """The rank of a level word (any case, aliases too); 0 for a word that is not a level."""
    return LEVEL_RANK.get(word.strip().upper(), 0)
