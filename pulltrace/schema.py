"""JSON Schema files generated from the wire model, so non-Python consumers can validate.

Run ``python -m pulltrace.schema`` after changing ``model.py``; a test fails while the files
in ``docs/schemas/`` disagree with the model.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from pulltrace.model import SCHEMA_TYPES

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def schema_for(kind: type[msgspec.Struct]) -> dict[str, Any]:
    schema: dict[str, Any] = _clean_descriptions(msgspec.json.schema(kind))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def _clean_descriptions(node: Any) -> Any:
    """Docstrings dedented here rather than by msgspec, whose dedenting changed in 0.23: the
    committed files must not depend on which msgspec release generated them."""
    if isinstance(node, dict):
        return {
            key: inspect.cleandoc(value)
            if key == "description" and isinstance(value, str)
            else _clean_descriptions(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_clean_descriptions(item) for item in node]
    return node


def render(kind: type[msgspec.Struct]) -> str:
    return json.dumps(schema_for(kind), indent=2, sort_keys=True) + "\n"


def main() -> int:
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for name, kind in SCHEMA_TYPES.items():
        path = SCHEMA_DIR / f"{name}.v1.json"
        path.write_text(render(kind))
        print(path, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
