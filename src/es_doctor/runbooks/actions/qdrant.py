"""Qdrant: collections, snapshots, recovery."""

from __future__ import annotations

from typing import Any

from es_doctor.runbooks.actions.base import (
    ActionContext,
    action,
    need,
    unwrap,
)


@action("qdrant.create-collection",
        lambda i: f"create Qdrant collection {i.get('collection')} ({i.get('size')}, {i.get('distance', 'Cosine')}) "
                  "if missing")
def qdrant_create(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    name, size = need(inputs, "collection"), need(inputs, "size", int)
    result = unwrap(ctx.qdrant().create_collection(name, int(size), str(inputs.get("distance", "Cosine"))),
                    f"create {name}")
    return {"collection": name, "result": result}


@action("qdrant.delete-collection", lambda i: f"delete Qdrant collection {i.get('collection')}", destructive=True)
def qdrant_delete(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    name = need(inputs, "collection")
    existing = unwrap(ctx.qdrant().collections(), "Qdrant collections")
    if name not in existing:
        return {"collection": name, "result": "already absent"}
    return {"collection": name, "result": unwrap(ctx.qdrant().delete_collection(name), f"delete {name}")}


@action("qdrant.snapshot", lambda i: f"snapshot Qdrant collection {i.get('collection')}")
def qdrant_snapshot(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    name = need(inputs, "collection")
    q = ctx.qdrant()
    points = q.count(name)
    snapshot = unwrap(q.snapshot(name), f"snapshot {name}")
    base = ctx.target.qdrant.url.rstrip("/")
    return {"collection": name, "snapshot": snapshot, "points": points.value if points.ok else None,
            "location": f"{base}/collections/{name}/snapshots/{snapshot}"}


@action("qdrant.recover", lambda i: f"recover Qdrant collection {i.get('collection')} from {i.get('location')}",
        destructive=True)
def qdrant_recover(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    name, location = need(inputs, "collection"), need(inputs, "location")
    return {"result": unwrap(ctx.qdrant().recover(name, location), f"recover {name}")}
