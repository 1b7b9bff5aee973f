"""What a schema's `$ref`s may do: point inside the schema, and never loop without progress.

A remote (`http:`), `file:` or relative (`other.json`) reference would make validation
reach outside the server, so it is refused when the schema is checked, with how to inline
it. A cycle of references that applies to the same value again and again (`a` is
`{"$ref": "#/$defs/a"}`, or `{"allOf": [{"$ref": ...}]}` back to itself) never ends:
jsonschema recursed until RecursionError ("engine error: AssertionError" in places). A
recursive schema that descends into a property or item on the way is fine, and kept.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from playground.errors import ConstraintError

INLINE_HOW = ('copy the referenced schema under "$defs" (e.g. "$defs": {"item": {...}}) and '
              'point to it with "$ref": "#/$defs/item"; remote and file references are never '
              "fetched")
# Keywords whose subschemas apply to the same value as the schema holding them.
_SAME_VALUE_LISTS = ("allOf", "anyOf", "oneOf")
_SAME_VALUE_ONE = ("not", "if", "then", "else")


def check_ref(ref: str, path: str) -> None:
    """Refuse a `$ref` that does not point inside this schema."""
    if not ref.startswith("#"):
        raise ConstraintError(f"json: $ref {ref[:80]!r} at {path} points outside the schema: "
                              f"{INLINE_HOW}")


def resolve(root: Any, ref: str) -> Any:
    """The node a local JSON-pointer `$ref` names, or None (anchors and $id are not read)."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node = root
    for part in ref[2:].split("/"):
        part = unquote(part).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _same_value(node: dict[str, Any], root: Any) -> list[tuple[str, Any]]:
    """(how, subschema) pairs applied to the same value as `node`."""
    found: list[tuple[str, Any]] = []
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = resolve(root, ref)
        if isinstance(target, dict):
            found.append((ref, target))
    for key in _SAME_VALUE_LISTS:
        if isinstance(node.get(key), list):
            found += [(f"{key}[{i}]", sub) for i, sub in enumerate(node[key])
                      if isinstance(sub, dict)]
    found += [(key, node[key]) for key in _SAME_VALUE_ONE if isinstance(node.get(key), dict)]
    return found


def check_cycles(root: Any) -> None:
    """Refuse a reference cycle that never moves to a property or an item."""
    if not isinstance(root, dict):
        return
    done: set[int] = set()

    def visit(node: dict[str, Any], trail: list[tuple[int, str]]) -> None:
        if id(node) in done:
            return
        for how, sub in _same_value(node, root):
            ids = [seen for seen, _ in trail]
            if id(sub) in ids:
                loop = [step for _, step in trail[ids.index(id(sub)) + 1:]] + [how]
                raise ConstraintError(
                    f"json: $ref cycle {' -> '.join(loop)[:200]} applies to the same value "
                    "forever; let the recursion go through a property or an array item")
            visit(sub, [*trail, (id(sub), how)])
        done.add(id(node))

    stack: list[Any] = [root]
    while stack:  # every subschema, as a start of a possible cycle
        node = stack.pop()
        if isinstance(node, dict):
            visit(node, [(id(node), "")])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
