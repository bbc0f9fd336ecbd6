"""Snapshots for the Qdrant stand-in. Like Qdrant's, a snapshot is a tar archive; ours holds
``collection.json`` (a header with the collection's config) and ``points.jsonl`` (one line per point),
stored as ``DIR/snapshots/{collection}/{collection}-{time}.snapshot``."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

FORMAT = "es-doctor-lab-qdrant-snapshot/1"
SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
BATCH = 256


class SnapshotError(ValueError):
    """A snapshot that cannot be read or found."""


def snapshot_dir(storage: Path, collection: str) -> Path:
    return storage / "snapshots" / collection


def describe(path: Path) -> dict[str, Any]:
    """Qdrant's SnapshotDescription for a snapshot file."""
    data = path.read_bytes()
    created = datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return {"name": path.name, "creation_time": created, "size": len(data),
            "checksum": hashlib.sha256(data).hexdigest()}


def list_snapshots(storage: Path, collection: str) -> list[dict[str, Any]]:
    folder = snapshot_dir(storage, collection)
    if not folder.is_dir():
        return []
    return [describe(p) for p in sorted(folder.glob("*.snapshot"))]


def find_snapshot(storage: Path, collection: str, name: str) -> Path:
    if not SAFE_NAME.match(name):
        raise SnapshotError(f"Bad snapshot name: {name}")
    path = snapshot_dir(storage, collection) / name
    if not path.is_file():
        raise FileNotFoundError(f"Snapshot {name} not found")
    return path


def write_snapshot(storage: Path, collection: str, config: dict[str, Any],
                   points: Iterator[dict[str, Any]]) -> Path:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H-%M-%S-%f")
    folder = snapshot_dir(storage, collection)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{collection}-{stamp}.snapshot"
    tmp = path.with_suffix(".tmp")
    header = {"format": FORMAT, "collection": collection, "config": config,
              "created_at": datetime.now(UTC).isoformat()}
    lines = io.BytesIO()
    for point in points:
        lines.write(json.dumps(point).encode() + b"\n")
    with tarfile.open(tmp, "w") as tar:
        for name, data in (("collection.json", json.dumps(header).encode()), ("points.jsonl", lines.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(datetime.now(UTC).timestamp())
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(path)
    return path


def read_snapshot(data: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(config, points) from a snapshot's bytes; :class:`SnapshotError` when it is not one of ours."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            files: dict[str, bytes] = {}
            for member in tar.getmembers():
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is not None:
                    files[member.name] = handle.read()
        raw_header = files.get("collection.json", b"{}")
        raw_points = files.get("points.jsonl", b"")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SnapshotError(f"Invalid snapshot: not a readable tar archive ({exc})") from None
    try:
        header = json.loads(raw_header)
        points = [json.loads(line) for line in raw_points.decode("utf-8", errors="replace").splitlines()
                  if line.strip()]
    except ValueError as exc:
        raise SnapshotError(f"Invalid snapshot: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise SnapshotError("Invalid snapshot: unknown format (not produced by this server)")
    config = header.get("config")
    if not isinstance(config, dict):
        raise SnapshotError("Invalid snapshot: no collection config")
    return config, points


def multipart_file(content_type: str, body: bytes, field: str = "snapshot") -> bytes:
    """The bytes of the uploaded file ``field`` from a multipart/form-data body (else the raw body)."""
    if not content_type.lower().startswith("multipart/"):
        return body
    msg = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
    )
    first: bytes | None = None
    for part in msg.iter_parts():
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        if part.get_param("name", header="content-disposition") == field:
            return payload
        first = first if first is not None else payload
    if first is None:
        raise SnapshotError("no snapshot file in the multipart body")
    return first


def batches(points: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(points), BATCH):
        yield points[i:i + BATCH]
