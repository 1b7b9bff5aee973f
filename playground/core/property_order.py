"""A JSON Schema with its top-level properties in another order.

Constrained decoders (xgrammar, llguidance) write an object's properties in the order
`properties` lists them, and what a model writes for a field depends on what it already
wrote ("reasoning" before "answer" reads differently from after), so the Compare tab
offers the same schema reordered as a variant of its own. Only the order changes: the
schema accepts exactly the same documents.
"""

from __future__ import annotations

import json
from typing import Any

from playground.core import limits
from playground.errors import InputError


def property_names(schema_text: str) -> list[str]:
    """The top-level property names, in the schema's order."""
    return list(_properties(_load(schema_text)))


def reorder_properties(schema_text: str, order: list[str] | None = None) -> str:
    """The schema with its top-level `properties` (and `required`) in `order`; names
    left out keep their order after the named ones. No order: reversed."""
    schema = _load(schema_text)
    properties = _properties(schema)
    names = list(properties)
    if order is None:
        order = names[::-1]
    unknown = [name for name in order if name not in properties]
    if unknown:
        raise InputError(f"property order: {unknown[0][:60]!r} is not a property of the "
                         f"schema (it has: {', '.join(names)[:200]})")
    if len(set(order)) != len(order):
        raise InputError("property order: a property is named twice")
    given = set(order)
    ranked = [*order, *(name for name in names if name not in given)]
    rank = {name: place for place, name in enumerate(ranked)}  # not list.index: quadratic
    schema["properties"] = {name: properties[name] for name in ranked}
    required = schema.get("required")
    if isinstance(required, list) and all(isinstance(name, str) for name in required):
        # Kept in the same order as the properties: readers take it as the writing order.
        schema["required"] = sorted(required, key=lambda name: rank.get(name, len(ranked)))
    return json.dumps(schema, indent=2, ensure_ascii=False)


def parse_order(text: str) -> list[str] | None:
    """Names separated by commas or new lines; None (reversed) for an empty box."""
    names = [name.strip() for name in (text or "").replace("\n", ",").split(",")]
    names = [name for name in names if name]
    return names or None


def _load(schema_text: str) -> dict[str, Any]:
    if not isinstance(schema_text, str):
        raise InputError("property order: give the schema as text")
    limits.active().require("max_constraint_chars", len(schema_text))
    try:
        schema = json.loads(schema_text)
    except json.JSONDecodeError as exc:
        raise InputError(f"property order: the schema is not JSON: {exc.msg} (line "
                         f"{exc.lineno})") from None
    except RecursionError:
        raise InputError("property order: the schema is nested too deeply") from None
    if not isinstance(schema, dict):
        raise InputError("property order: the schema is not an object")
    return schema


def _properties(schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties")
    if not isinstance(properties, dict) or len(properties) < 2:
        raise InputError("property order: the schema needs two or more top-level "
                         '"properties" to reorder')
    return properties
