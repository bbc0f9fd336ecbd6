"""``runbooks/schema.json``: the JSON Schema of the runbook format, generated from the models.

Each action has one entry (``$defs/inputs.<action>``, from its inputs model) and a step names the one
of its action (``if action == X then inputs: inputs.X``), so an editor completes and checks a step's
inputs. Any input may also be a template (a string holding ``{{ … }}``): its type is known once rendered.
Regenerate with ``python -m es_doctor.runbooks.schema`` (a test fails when it is stale).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from es_doctor.runbooks.model import Runbook

SCHEMA_ID = "https://es-doctor.dev/schemas/runbook-1.json"


#: a value given by a template, accepted for any input
TEMPLATE: dict[str, Any] = {"type": "string", "pattern": r"\{\{", "description": "a template ({{ … }})"}


def _templated(prop: dict[str, Any]) -> dict[str, Any]:
    """An input's schema, with a template accepted in its place."""
    keep: dict[str, Any] = {k: prop[k] for k in ("title", "description", "default") if k in prop}
    rest = {k: v for k, v in prop.items() if k not in keep}
    return {**keep, "anyOf": [rest, {"$ref": "#/$defs/template"}]}


def action_inputs_schema(name: str, defs: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of one action's inputs; the definitions it refers to (``JsonValue``) go to ``defs``."""
    from es_doctor.runbooks.actions import REGISTRY

    spec = REGISTRY[name]
    schema = spec.inputs.model_json_schema(by_alias=True)
    defs.update(schema.pop("$defs", {}))  # shared by name (pydantic names them after their type)
    schema["properties"] = {k: _templated(v) for k, v in schema.get("properties", {}).items()}
    doc = (spec.run.__doc__ or "").strip().split("\n\n")[0]
    schema["title"] = f"inputs of {name}"
    schema["description"] = " ".join(doc.split()) if doc else f"the inputs of the {name} action"
    return schema


def runbook_schema() -> dict[str, Any]:
    from es_doctor.runbooks.actions import REGISTRY

    schema = Runbook.model_json_schema(by_alias=True)
    defs = schema.setdefault("$defs", {})
    defs["template"] = TEMPLATE
    for name in sorted(REGISTRY):
        defs[f"inputs.{name}"] = action_inputs_schema(name, defs)
    defs["Step"]["allOf"] = [
        {"if": {"properties": {"action": {"const": name}}, "required": ["action"]},
         "then": {"properties": {"inputs": {"$ref": f"#/$defs/inputs.{name}"}}}}
        for name in sorted(REGISTRY)]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def render_schema() -> str:
    return json.dumps(runbook_schema(), indent=2, sort_keys=True) + "\n"


def schema_path() -> Path:
    from es_doctor.runbooks.loader import shipped_dir

    return shipped_dir() / "schema.json"


if __name__ == "__main__":
    schema_path().write_text(render_schema(), encoding="utf-8")
    print(f"wrote {schema_path()}")
