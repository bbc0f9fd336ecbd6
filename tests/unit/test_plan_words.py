"""A plan reads as words: lists, mappings and command lines are written out, never as Python reprs."""

from __future__ import annotations

import pytest

from es_doctor.runbooks.actions import REGISTRY


@pytest.mark.parametrize(("action", "inputs", "text"), [
    ("shell", {"argv": ["pg_dump", "-Fc", "my db"]}, "run pg_dump -Fc 'my db'"),
    ("docker.exec", {"argv": ["cat", "/app/config.yaml"], "container": "email-sender-go"},
     "run cat /app/config.yaml in container email-sender-go"),
    ("env.require", {"names": ["GO_ENV", "DB_URL"], "container": "email-sender-go"},
     "require GO_ENV, DB_URL in the environment of email-sender-go"),
    ("env.set", {"container": "email-sender-go", "env": {"GO_ENV": "staging"}},
     "recreate email-sender-go with GO_ENV (staging)"),
    ("config.set", {"key": "vector_cache.size", "value": 10000},
     "set vector_cache.size = 10000 in the service's config.yaml (backup kept)"),
    ("wait_for", {"check": ["startup.health", "startup.qdrant"]},
     "wait until startup.health, startup.qdrant is OK (up to 60 s)"),
])
def test_step_descriptions_have_no_repr(action: str, inputs: dict[str, object], text: str) -> None:
    described = REGISTRY[action].describe(inputs)
    assert described == text
    assert "['" not in described and "{'" not in described
