"""The runbook actions: one registry, filled by the domain modules of this package.

Every action declares the model of its inputs (``Inputs``), ``describe(inputs)`` (what it would do:
the dry-run plan) and ``run(inputs, ctx)`` (do it with the validated model, return a dict of outputs
for later steps' templates); it fails by raising
:class:`ActionError`. Domains: ``service`` (the service's API, HTTP), ``docker``, ``qdrant``,
``postgres``, ``process``, ``config`` (config file and environment), ``flow`` (wait_for, notify,
shell, fail), ``security``, ``backup``. :data:`ACTION_NAMES` is read from the registry: there is no
second list.
"""

from __future__ import annotations

from es_doctor.runbooks.actions import (  # noqa: F401 - importing a domain registers its actions
    backup,
    config,
    docker,
    flow,
    postgres,
    process,
    qdrant,
    security,
    service,
)
from es_doctor.runbooks.actions.base import (
    REGISTRY,
    RUN_ENV,
    ActionContext,
    ActionError,
    ActionSpec,
    Inputs,
    NoInputs,
    action,
    input_problem,
    stamp,
    unwrap,
    validate_inputs,
)
from es_doctor.runbooks.actions.config import config_restore, config_set

#: every action's name (the loader validates ``step.action`` against it)
ACTION_NAMES: frozenset[str] = frozenset(REGISTRY)

__all__ = ["ACTION_NAMES", "REGISTRY", "RUN_ENV", "ActionContext", "ActionError", "ActionSpec", "Inputs", "NoInputs",
           "action", "config_restore", "config_set", "input_problem", "stamp", "unwrap", "validate_inputs"]
