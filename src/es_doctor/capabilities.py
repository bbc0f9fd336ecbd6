"""What a target can run: a runbook's ``requires:`` against the target (Docker, a restart command, the
service on this host, its config file, a component). Read before a cure is printed (a printed cure is
one the target can run) and before a runbook runs (it is REFUSED otherwise)."""

from __future__ import annotations

from collections.abc import Sequence

from es_doctor.config import Target


def missing_requirements(requires: Sequence[str], target: Target) -> list[str]:
    """Each of ``requires`` (a runbook's ``requires:``) the target lacks, with the reason."""
    from urllib.parse import urlsplit

    from es_doctor.probes.ports import is_local_host

    out = []
    for need in requires:
        if need == "local":
            host = urlsplit(target.service.api_url).hostname or "localhost"
            local, why = is_local_host(host)
            if not local:
                out.append(f"needs the service on this host: {why}")
        elif need == "config-file":
            if not target.service.config_file:
                out.append("needs the service's config file on this host (service.config_file is not set)")
        elif need == "restart":
            docker, why = target.is_present("docker")
            if not docker and not target.service.restart_command:
                out.append(f"needs a way to restart the service: no Docker ({why}) and no service.restart_command")
        else:
            present, why = target.is_present(need)
            if not present:
                out.append(f"needs {need}: {why}")
    return out
