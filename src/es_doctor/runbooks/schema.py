"""``runbooks/schema.json``: the JSON Schema of the runbook format, generated from the models.

Regenerate with ``python -m es_doctor.runbooks.schema`` (a test fails when it is stale).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from es_doctor.runbooks.model import Runbook

SCHEMA_ID = "https://es-doctor.dev/schemas/runbook-1.json"


def runbook_schema() -> dict[str, Any]:
    schema = Runbook.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def render_schema() -> str:
    return json.dumps(runbook_schema(), indent=2, sort_keys=True) + "\n"


def schema_path() -> Path:
    from es_doctor.runbooks.loader import shipped_dir

    return shipped_dir() / "schema.json"


if __name__ == "__main__":
    schema_path().write_text(render_schema(), encoding="utf-8")
    print(f"wrote {schema_path()}")
