"""Layering rules that keep es-doctor's parts apart (read from the source, so a new import breaks it)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[2] / "src" / "es_doctor"
#: the SDKs and HTTP libraries: only probes/ (and the lab, a stand-in stack of its own) may import them
SDKS = {"httpx", "httpcore", "docker", "psycopg", "psycopg_pool", "qdrant_client"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_nothing_outside_probes_imports_an_sdk_or_httpx() -> None:
    offenders = {}
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC)
        if relative.parts[0] in ("probes", "lab"):
            continue
        used = _imports(path) & SDKS
        if used:
            offenders[str(relative)] = sorted(used)
    assert offenders == {}


def test_the_core_never_imports_the_lab() -> None:
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if p.relative_to(SRC).parts[0] not in ("lab", "cli")
                 and any(name == "es_doctor" for name in _imports(p))
                 and "es_doctor.lab" in p.read_text(encoding="utf-8")]
    assert offenders == []
