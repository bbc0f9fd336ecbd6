"""Qdrant: collections, snapshots, recovery."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from es_doctor.runbooks.actions.base import (
    ActionContext,
    Inputs,
    action,
    unwrap,
)


class CollectionInputs(Inputs):
    collection: str = Field(min_length=1, description="the Qdrant collection")


class CreateInputs(CollectionInputs):
    size: int = Field(gt=0, description="the vectors' dimension")
    distance: str = Field(default="Cosine", description="Cosine, Dot, Euclid or Manhattan")


class RecoverInputs(CollectionInputs):
    location: str = Field(min_length=1, description="the snapshot's URL (or file:// path) Qdrant recovers from")


@action("qdrant.create-collection",
        lambda i: f"create Qdrant collection {i.get('collection')} ({i.get('size')}, {i.get('distance', 'Cosine')}) "
                  "if missing", CreateInputs)
def qdrant_create(inputs: CreateInputs, ctx: ActionContext) -> dict[str, Any]:
    name = inputs.collection
    result = unwrap(ctx.qdrant().create_collection(name, inputs.size, inputs.distance),
                    f"create {name}")
    return {"collection": name, "result": result}


@action("qdrant.delete-collection", lambda i: f"delete Qdrant collection {i.get('collection')}", CollectionInputs,
        destructive=True)
def qdrant_delete(inputs: CollectionInputs, ctx: ActionContext) -> dict[str, Any]:
    name = inputs.collection
    existing = unwrap(ctx.qdrant().collections(), "Qdrant collections")
    if name not in existing:
        return {"collection": name, "result": "already absent"}
    return {"collection": name, "result": unwrap(ctx.qdrant().delete_collection(name), f"delete {name}")}


@action("qdrant.snapshot", lambda i: f"snapshot Qdrant collection {i.get('collection')}", CollectionInputs)
def qdrant_snapshot(inputs: CollectionInputs, ctx: ActionContext) -> dict[str, Any]:
    name = inputs.collection
    q = ctx.qdrant()
    points = q.count(name)
    snapshot = unwrap(q.snapshot(name), f"snapshot {name}")
    base = ctx.target.qdrant.url.rstrip("/")
    return {"collection": name, "snapshot": snapshot, "points": points.value if points.ok else None,
            "location": f"{base}/collections/{name}/snapshots/{snapshot}"}


@action("qdrant.recover", lambda i: f"recover Qdrant collection {i.get('collection')} from {i.get('location')}",
        RecoverInputs, destructive=True)
def qdrant_recover(inputs: RecoverInputs, ctx: ActionContext) -> dict[str, Any]:
    name, location = inputs.collection, inputs.location
    return {"result": unwrap(ctx.qdrant().recover(name, location), f"recover {name}")}
