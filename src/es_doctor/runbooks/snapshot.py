"""What a runbook will change, read before it runs and again after its rollback.

"ROLLED BACK" is a comparison, not the absence of errors: the engine reads each part a runbook's steps
can change (:func:`take`) just before the first step that changes it runs (main or rollback phase:
a part no step touched is not compared, and a live writer's changes before the run reached the part,
such as the service writing to Qdrant's volume until a step stops Qdrant, are not the run's), and
after the rollback it reads those parts again; the outcome is ROLLED BACK only when the two are
identical (:func:`differences` names what differs). After a run that ends NOT FIXED the same
comparison says which changes were kept.

What is read depends on the actions the runbook uses:

- the service's config file (``config.*``): its bytes (sha256), mode, and where a symlink points;
- containers (``docker.*``, ``env.*``, ``service.restart``): ``docker inspect``'s Config (each
  environment variable on its own), HostConfig, the effective mounts, the networks, the image id and
  whether it runs - not its id, creation time or start time (a recreate or restart changes those);
- PostgreSQL (``postgres.*``, ``backup.restore-postgres``): each user table's row count and an md5
  over its rows;
- Qdrant (``qdrant.*``, ``backup.restore-qdrant``): the collection's settings, its point count and a
  sha256 over every point's id and payload (vectors are not compared: Qdrant renormalises them);
- volumes (``docker.volume-*``, ``backup.restore-volumes``): each file's name, mode and content; but
  Qdrant's storage volume, when the steps also restore or recover Qdrant's collections, is compared by
  its collections (the Qdrant part): a recovery rewrites the storage's files and a backup leaves a
  snapshot file in it, so the same points and payloads never come back as the same bytes.

Only digests are kept (values are never stored or shown: an environment holds secrets). A part that
cannot be read before the run is "not compared" and said so; one that could be read before but not
after is a difference.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from es_doctor.probes.result import FailureKind

if TYPE_CHECKING:
    from es_doctor.config import Target
    from es_doctor.probes.session import ProbeSession

CONFIG = frozenset({"config.set", "config.restore"})
CONTAINER = frozenset({"docker.recreate", "docker.restart", "docker.start", "docker.stop", "docker.stack-restart",
                       "docker.compose-restart", "service.restart", "env.set", "env.restore", "docker.rebuild"})
POSTGRES = frozenset({"postgres.sql", "postgres.restore", "backup.restore-postgres"})
QDRANT = frozenset({"qdrant.snapshot", "qdrant.recover", "qdrant.delete-collection", "qdrant.create-collection",
                    "backup.restore-qdrant"})
VOLUMES = frozenset({"docker.volume-recreate", "docker.volume-restore", "backup.restore-volumes"})


@dataclass
class Snapshot:
    #: "what: detail" -> a short digest of its value
    items: dict[str, str] = field(default_factory=dict)
    #: a part that could not be read -> why
    unread: dict[str, str] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        return {"items": dict(self.items), "unread": dict(self.unread)}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


_PARTS = (("config", CONFIG), ("containers", CONTAINER), ("postgres", POSTGRES), ("qdrant", QDRANT),
          ("volumes", VOLUMES))


def part_of(action: str) -> str | None:
    """The part (config, containers, postgres, qdrant, volumes) ``action`` can change, if any."""
    return next((part for part, group in _PARTS if action in group), None)


def parts_changed_by(action: str, steps: list[tuple[str, dict[str, Any] | None]]) -> list[str]:
    """The parts a step of ``action`` can change, in a run of ``steps``: its own part, and for a volume
    step of a run that also restores Qdrant, the Qdrant part too (Qdrant's storage is then compared by its
    collections, which the volume step already changes: they are read before it)."""
    part = part_of(action)
    if part is None:
        return []
    if part == "volumes" and _qdrant_by_collections(steps):
        return ["qdrant", "volumes"]
    return [part]


def _qdrant_by_collections(steps: list[tuple[str, dict[str, Any] | None]]) -> bool:
    """Whether the run also restores or recovers Qdrant's collections: its storage volume is then compared
    by them (the Qdrant part), not by its bytes."""
    return "qdrant" in changes(steps)


def changes(steps: list[tuple[str, dict[str, Any] | None]]) -> set[str]:
    """The parts (config, containers, postgres, qdrant, volumes) the (action, inputs) pairs can change."""
    return {part for part in (part_of(a) for a, _ in steps) if part is not None}


def take(steps: list[tuple[str, dict[str, Any] | None]], target: Target, probes: ProbeSession,
         work_dir: Path, patience_s: float = 0.0, before: Snapshot | None = None,
         parts: set[str] | None = None) -> Snapshot:
    """Read every part ``steps`` (the plan's actions and rendered inputs) can change, or only ``parts``.
    ``patience_s``: a part that cannot be read but could be ``before`` is tried again for that long
    (after a run: a component the rollback has just started again)."""
    import time
    snap = Snapshot()
    parts = changes(steps) if parts is None else parts & changes(steps)
    readers: dict[str, Callable[[], dict[str, str]]] = {
        "config": lambda: _config(steps, target),
        "containers": lambda: _containers(steps, target, probes),
        "postgres": lambda: _postgres(probes),
        "qdrant": lambda: _qdrant(target, probes),
        "volumes": lambda: _volumes(steps, target, probes, work_dir),
    }
    deadline = time.monotonic() + patience_s
    for part in sorted(parts):
        while True:
            try:
                snap.items.update(readers[part]())
                snap.unread.pop(part, None)
                break
            except Exception as exc:  # noqa: BLE001 - a part that cannot be read is reported, never a traceback
                snap.unread[part] = f"{type(exc).__name__}: {str(exc)[:200]}"
            if before is None or part in before.unread or time.monotonic() >= deadline:
                break
            time.sleep(1.0)
    return snap


def differences(before: Snapshot, after: Snapshot) -> list[str]:
    """What differs between two snapshots, in words (never the values)."""
    out = []
    for key in sorted(set(before.items) | set(after.items)):
        part = key.split(":", 1)[0]
        if part in before.unread or part in after.unread:
            continue
        if key not in after.items:
            out.append(f"{key}: gone")
        elif key not in before.items:
            out.append(f"{key}: new")
        elif before.items[key] != after.items[key]:
            out.append(f"{key}: differs")
    for part, why in sorted(after.unread.items()):
        if part not in before.unread:
            out.append(f"{part}: could not be read after the run ({why})")
    return out


def not_compared(before: Snapshot) -> list[str]:
    return [f"{part} ({why})" for part, why in sorted(before.unread.items())]


# ----------------------------------------------------------------------------- the parts


def _inputs(steps: list[tuple[str, dict[str, Any] | None]], actions: frozenset[str], key: str) -> set[str]:
    return {str(i[key]) for a, i in steps if a in actions and i and i.get(key)}


def _config(steps: list[tuple[str, dict[str, Any] | None]], target: Target) -> dict[str, str]:
    import stat

    files = _inputs(steps, CONFIG, "file")
    if target.service.config_file:
        files.add(str(target.service.config_file))
    out = {}
    for name in sorted(files):
        path = Path(name).expanduser()
        key = f"config: {path}"
        if path.is_symlink():
            out[f"{key}: link"] = _digest(str(path.readlink()))
        try:
            info = path.stat()
        except FileNotFoundError:
            out[f"{key}: bytes"] = "missing"
            continue
        out[f"{key}: mode"] = oct(stat.S_IMODE(info.st_mode))
        if stat.S_ISREG(info.st_mode):
            out[f"{key}: bytes"] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return out


def _containers(steps: list[tuple[str, dict[str, Any] | None]], target: Target,
                probes: ProbeSession) -> dict[str, str]:
    names = {target.service.container} | _inputs(steps, CONTAINER, "container")
    if any(a in ("docker.stack-restart", "docker.compose-restart") for a, _ in steps):
        names |= set(target.docker.start_order)
    client = probes.docker().client()
    if client.failure is not None or client.value is None:
        raise RuntimeError(client.failure.message if client.failure else "no Docker client")
    api = client.value.api
    out: dict[str, str] = {}
    for name in sorted(names):
        try:
            info = api.inspect_container(name)
        except Exception as exc:
            if type(exc).__name__ != "NotFound":
                raise
            out[f"containers: {name}"] = "missing"
            continue
        out.update({f"containers: {name} {k}": v for k, v in container_items(info).items()})
    return out


def container_items(info: dict[str, Any]) -> dict[str, str]:
    """A container's configuration as digests: what a recreate must carry, not what it renews."""
    config = dict(info.get("Config") or {})
    host = dict(info.get("HostConfig") or {})
    if config.get("Hostname") == str(info.get("Id", ""))[:12]:
        config.pop("Hostname")
    env = config.pop("Env", None) or []
    out = {f"Config.{k}": _digest(v) for k, v in config.items()}
    for entry in env:
        key, _, value = entry.partition("=")
        out[f"Config.Env.{key}"] = _digest(value)
    for key in ("Binds", "Mounts"):  # compared as the effective mounts below (a recreate names anonymous ones)
        host.pop(key, None)
    out.update({f"HostConfig.{k}": _digest(v) for k, v in host.items()})
    out["Mounts"] = _digest(sorted((m.get("Type"), m.get("Name") or m.get("Source"), m.get("Destination"),
                                    m.get("RW")) for m in info.get("Mounts") or []))
    out["Networks"] = _digest(sorted((info.get("NetworkSettings") or {}).get("Networks") or {}))
    out["Image"] = _digest(info.get("Image"))
    out["State.Running"] = _digest(bool((info.get("State") or {}).get("Running")))
    return out


def _postgres(probes: ProbeSession) -> dict[str, str]:
    result = probes.postgres().table_digests(content=True)
    if result.failure is not None:
        raise RuntimeError(result.failure.message)
    return {f"postgres: table {name}": f"{d['rows']} rows {str(d['md5'])[:16]}"
            for name, d in (result.value or {}).items()}


def _qdrant(target: Target, probes: ProbeSession) -> dict[str, str]:
    name = target.qdrant.collection
    qdrant = probes.qdrant()
    info = qdrant.collection(name)
    if info.failure is not None:
        if info.failure.kind is FailureKind.NOT_FOUND:
            return {f"qdrant: collection {name}": "missing"}
        raise RuntimeError(info.failure.message)
    value = info.value
    out = {f"qdrant: collection {name} settings": _digest([getattr(value, "vector_size", None),
                                                            getattr(value, "distance", None)])}
    digest = qdrant.digest(name)
    if digest.failure is not None:
        raise RuntimeError(digest.failure.message)
    points, sha, _vectors = digest.value or (0, "", 0.0)
    out[f"qdrant: collection {name} points"] = f"{points} points payload {sha[:16]}"
    return out


def _volumes(steps: list[tuple[str, dict[str, Any] | None]], target: Target, probes: ProbeSession,
             work_dir: Path) -> dict[str, str]:
    from es_doctor.backup import backup_volumes, helper_image

    names = _inputs(steps, VOLUMES, "volume")
    if any(a == "backup.restore-volumes" for a, _ in steps):
        names |= set(backup_volumes(target))
    out = {}
    if _qdrant_by_collections(steps) and target.is_present("qdrant")[0] and target.qdrant.volume in names:
        names.discard(target.qdrant.volume)
        out[f"volumes: {target.qdrant.volume}"] = "Qdrant's storage: compared by its collections"
    image = helper_image(probes) if names else ""
    for volume in sorted(names):
        with tempfile.TemporaryDirectory(dir=work_dir, prefix=".snapshot-") as tmp:
            dest = Path(tmp) / "volume.tar"
            result = probes.docker().volume_backup(volume, str(dest), image)
            if result.failure is not None:
                if result.failure.kind is FailureKind.NOT_FOUND:
                    out[f"volumes: {volume}"] = "missing"
                    continue
                raise RuntimeError(result.failure.message)
            out[f"volumes: {volume}"] = _tar_digest(dest)
    return out


def _tar_digest(path: Path) -> str:
    """Each member's name, type, mode and content (not its times: a restore may set them anew)."""
    digest = hashlib.sha256()
    with tarfile.open(path) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            digest.update(f"{member.name.lstrip('./')}\t{member.type!r}\t{member.mode:o}\t{member.linkname}\n".encode())
            handle = archive.extractfile(member) if member.isfile() else None
            while handle is not None:
                chunk = handle.read(1 << 20)
                if not chunk:
                    break
                digest.update(chunk)
    return digest.hexdigest()[:16]


def verdict(before: Snapshot, after: Snapshot, *, rolled_back: bool) -> tuple[bool, str]:
    """(whether the target is as it was, the words for the run's message). ``rolled_back``: after a
    rollback (else after a run that did not fix: which changes were kept)."""
    diff = differences(before, after)
    skipped = not_compared(before)
    tail = f" (not compared: {', '.join(skipped)})" if skipped else ""
    if not diff:
        compared = sorted({k.split(":", 1)[0] for k in before.items})
        what = ", ".join(compared) or "nothing"
        return True, (f"the target is as it was before the run (compared: {what}){tail}" if rolled_back
                       else f"no change was kept (compared: {what}){tail}")
    shown = "; ".join(diff[:12]) + (f"; and {len(diff) - 12} more" if len(diff) > 12 else "")
    if rolled_back:
        return False, f"the rollback ran but the target is not as it was: {shown}{tail}"
    return False, f"changes kept: {shown}{tail}"
