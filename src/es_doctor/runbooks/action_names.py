"""The names of the runbook actions (the engine's registry implements each; the loader validates
``step.action`` against this set, so a runbook naming an unknown action is rejected at load time)."""

from __future__ import annotations

ACTION_NAMES: frozenset[str] = frozenset({
    "http",
    "docker.restart", "docker.start", "docker.stop", "docker.exec", "docker.logs", "docker.prune",
    "docker.compose-restart", "docker.rebuild", "docker.recreate", "docker.stack-restart", "deploy.previous",
    "docker.volume-backup", "docker.volume-restore", "docker.volume-recreate", "archive.verify",
    "qdrant.create-collection", "qdrant.snapshot", "qdrant.recover", "qdrant.delete-collection",
    "postgres.sql", "postgres.dump", "postgres.restore",
    "process.free-port",
    "service.mode", "service.restart",
    "config.set", "config.restore",
    "env.show", "env.require", "env.set",
    "wait_for",
    "notify",
    "security.analyze",
    "backup.create", "backup.validate", "backup.require-freeze", "backup.restore-volumes",
    "backup.restore-postgres", "backup.restore-qdrant",
    "shell",
    "fail",
})
