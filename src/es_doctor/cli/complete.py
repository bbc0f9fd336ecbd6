"""Values the shell completes (``typer --install-completion``): targets, check ids, symptom classes, runbook
ids and fault names. Each reads what es-doctor itself reads (the config file, the registry, the runbook
directories, the fault table) and never fails: a broken config completes nothing instead of a traceback."""

from __future__ import annotations

import typer


def _starting(values: list[str], incomplete: str) -> list[str]:
    return sorted(v for v in dict.fromkeys(values) if v.startswith(incomplete))


def targets(ctx: typer.Context, incomplete: str) -> list[str]:
    """The targets of the config file in use (``-c`` or the usual lookup), and ``lab``."""
    names = ["lab"]
    try:
        from es_doctor.config import find_config_file
        from es_doctor.yamlsource import load_yaml_file

        path = find_config_file((ctx.find_root().params or {}).get("config"))
        if path is not None:
            data = load_yaml_file(path).data
            if isinstance(data, dict) and isinstance(data.get("targets"), dict):
                names += [str(name) for name in data["targets"]]
            else:  # a file without targets: the built-in one
                names.append("default")
        else:
            names.append("default")
    except Exception:  # noqa: BLE001 - completion must never print a traceback into the shell
        return _starting(names, incomplete)
    return _starting(names, incomplete)


def checks(incomplete: str) -> list[str]:
    """Every check id."""
    from es_doctor.checks.registry import load_all

    return _starting(list(load_all()), incomplete)


def classes(incomplete: str) -> list[str]:
    """The guide's symptom classes."""
    from es_doctor.symptoms import SYMPTOM_CLASSES

    return _starting(list(SYMPTOM_CLASSES), incomplete)


def runbooks(incomplete: str) -> list[str]:
    """Every runbook id (shipped and the user's)."""
    try:
        from es_doctor.runbooks.loader import load_runbooks

        return _starting(list(load_runbooks(tolerant=True).runbooks), incomplete)
    except Exception:  # noqa: BLE001 - same: nothing rather than a traceback
        return []


def runbooks_and_findings(incomplete: str) -> list[str]:
    """What ``fix`` takes: a runbook id or a finding (check) id."""
    return sorted({*runbooks(incomplete), *checks(incomplete)})


def faults(incomplete: str) -> list[str]:
    """The lab's fault names."""
    from es_doctor.lab.fault_table import FAULT_SPECS

    return _starting(list(FAULT_SPECS), incomplete)
