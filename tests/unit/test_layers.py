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


def _es_doctor_imports(path: Path) -> set[str]:
    """The es_doctor modules ``path`` imports (absolute and relative, lazy imports inside functions too)."""
    found: set[str] = set()
    package = ".".join(("es_doctor", *path.relative_to(SRC).with_suffix("").parts[:-1]))
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("es_doctor"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.startswith("es_doctor"):
                found.add(module)
    return found


#: the ground floor: modules every part may use, which import nothing of es_doctor's but each other
GROUND = {"es_doctor.secrets", "es_doctor.errors", "es_doctor.yamlsource", "es_doctor.units"}
#: what the config package may import: the ground floor and itself (never a probe, a check or the CLI)
CONFIG_MAY = GROUND | {"es_doctor.config"}


def test_secrets_import_nothing_of_es_doctor() -> None:
    """``secrets`` is used by probes, config, render, the engine: an import of theirs would run back up."""
    assert _es_doctor_imports(SRC / "secrets.py") == set()


def test_units_import_nothing_of_es_doctor() -> None:
    """``units`` (durations, sizes, stamps) is read by config, the lab, the CLI and the renderers alike."""
    assert _es_doctor_imports(SRC / "units.py") == set()


def test_the_config_package_imports_only_the_ground_floor() -> None:
    offenders = {}
    for path in (SRC / "config").rglob("*.py"):
        bad = {m for m in _es_doctor_imports(path)
               if not any(m == allowed or m.startswith(allowed + ".") for allowed in CONFIG_MAY)}
        if bad:
            offenders[str(path.relative_to(SRC))] = sorted(bad)
    assert offenders == {}


def test_secrets_are_not_re_exported_by_config() -> None:
    import es_doctor.config as config

    for name in ("MASK", "mask_secret", "masked_dump", "resolve_secret", "scrub", "secret_values", "split_dsn"):
        assert not hasattr(config, name), f"es_doctor.config re-exports {name}: import es_doctor.secrets"


#: SDKs a target may not use: imported only inside the function that needs them (never at a module's top
#: level, probes included), so a run pays only for those of its target's checks (#25)
LAZY_SDKS = {"docker", "psycopg", "psycopg_pool", "qdrant_client", "grafana_foundation_sdk", "jinja2", "ruamel"}


def _top_level_imports(path: Path) -> set[str]:
    """The packages ``path`` imports when it is imported (module body, ``try``/``if`` blocks; not functions)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.If) and not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


#: the one module of a command's own that may import its SDK at its top (itself imported lazily by its command)
SDK_HOMES = {"dashboard.py": {"grafana_foundation_sdk"}, "runbooks/templating.py": {"jinja2"}}


def test_no_module_imports_a_target_sdk_at_import_time() -> None:
    offenders = {}
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC)
        if relative.parts[0] == "lab":  # the lab's programs are a stack of their own
            continue
        used = (_top_level_imports(path) & LAZY_SDKS) - SDK_HOMES.get(relative.as_posix(), set())
        if used:
            offenders[str(relative)] = sorted(used)
    assert offenders == {}


def test_the_top_level_import_reader_sees_a_planted_import(tmp_path: Path) -> None:
    planted = tmp_path / "m.py"
    planted.write_text("import os\ntry:\n    import psycopg\nexcept ImportError:\n    pass\n"
                       "def f():\n    import docker\nif TYPE_CHECKING:\n    import qdrant_client\n")
    assert _top_level_imports(planted) & LAZY_SDKS == {"psycopg"}


#: what builds a client of a target (or of anything es-doctor talks to): es-doctor's probes and the SDKs' clients
CLIENT_MAKERS = {
    "HttpProbe", "DockerProbe", "QdrantProbe", "PostgresProbe", "PrometheusProbe", "ServiceApi", "AdvisoryLock",
    "Poster", "BoundedTransport", "bounded_client",  # es-doctor's probes and their bounded HTTP clients
    "Client", "AsyncClient", "HTTPTransport",  # httpx
    "DockerClient", "APIClient", "from_env",  # docker
    "QdrantClient", "AsyncQdrantClient",  # qdrant-client
    "ConnectionPool", "AsyncConnection",  # psycopg_pool, psycopg
}


def _client_calls(path: Path) -> list[str]:
    """``name:line`` of every call in ``path`` that builds a probe or an SDK client (``psycopg.connect``
    and ``Connection.connect`` included; ``sqlite3.connect`` is a local file, not a client of the stack)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        base = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
        if name in CLIENT_MAKERS or (name == "connect" and base in ("psycopg", "Connection")):
            found.append(f"{name}:{node.lineno}")
    return found


def test_nothing_outside_probes_builds_a_probe_or_a_client() -> None:
    """The probe session is the only door: checks, actions, backups and commands take their clients from
    it (``probes/session.py``), so every client is bounded, carries the target's secrets, and is closed."""
    offenders = {}
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC)
        if relative.parts[0] in ("probes", "lab"):
            continue
        calls = _client_calls(path)
        if calls:
            offenders[str(relative)] = calls
    assert offenders == {}


def test_the_client_rule_sees_a_client(tmp_path: Path) -> None:
    """The rule above is not blind: each way of building a client is caught."""
    sample = tmp_path / "sample.py"
    sample.write_text("import psycopg, httpx\nfrom es_doctor.probes.http import HttpProbe\n"
                      "a = HttpProbe(timeout=1)\nb = httpx.Client()\nc = psycopg.connect('')\n"
                      "d = sqlite3.connect(':memory:')\n", encoding="utf-8")
    assert _client_calls(sample) == ["HttpProbe:3", "Client:4", "connect:5"]


def test_no_module_outside_probes_opens_a_session_it_does_not_close() -> None:
    """A ``ProbeSession(...)`` made outside ``probes/`` is a ``with`` item, or the session a context object
    keeps for its owner to close (CheckContext, ActionContext): never one made and left."""
    offenders = []
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC)
        if relative.parts[0] in ("probes", "lab"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        in_with = {id(item.context_expr) for node in ast.walk(tree) if isinstance(node, ast.With)
                   for item in node.items}
        kept = {id(node.value) for node in ast.walk(tree)
                if isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr in ("session", "probes")
                                                        for t in node.targets)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ProbeSession"
                    and id(node) not in in_with | kept):
                offenders.append(f"{relative}:{node.lineno}")
    assert offenders == []
