"""The keywords of a schema that can judge a document, each at its node's path: the rows of
the coverage table, and what bisection removes to find the keywords a backend rejects.

The tree is walked with `playground.core.schema.schema_children` (the subschemas of a
node), skipping those under `not` and `if`, whose keywords are parts of a condition.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from playground.core.schema import Keys, schema_children
from playground.doctor.instances import ANNOTATIONS

# Keywords that only hold subschemas for others to use, never judge a document themselves.
_NOT_ROWS = frozenset({"$defs", "definitions"})
# Subschemas that a document must *not* match, or that only choose: their keywords are
# parts of the condition (tested as `not`, `then`, `else`), not rows of their own.
_CONDITIONS = frozenset({"not", "if"})

Path = Keys  # keys and indexes from the schema's root to a node


@dataclass(frozen=True)
class Site:
    """One keyword of the schema: where its node is (keys from the root) and its name."""

    path: Path
    keyword: str

    @property
    def json_path(self) -> str:
        return json_path(self.path)


def json_path(keys: Path) -> str:
    """`$.properties.a[0]`, with keys that are not plain names quoted: `$["a b"]`."""
    out = "$"
    for key in keys:
        if isinstance(key, int):
            out += f"[{key}]"
        elif isinstance(key, str) and key.replace("_", "a").replace("$", "a").isalnum() \
                and not key[:1].isdigit():
            out += f".{key}"
        else:
            out += f"[{json.dumps(key)}]"
    return out


def sites(schema: Any) -> list[Site]:
    """Every keyword that can judge a document, at its node's path, in document order."""
    found: list[Site] = []

    def walk(node: Any, path: Path) -> None:
        if not isinstance(node, dict):
            return
        children: dict[str, list[tuple[Keys, Any]]] = {}
        for keys, sub in schema_children(node):
            children.setdefault(str(keys[0]), []).append((keys, sub))
        for key in node:  # each keyword, then the keywords under it: document order
            if key not in ANNOTATIONS and key not in _NOT_ROWS and not key.startswith("x-"):
                found.append(Site(path, key))
            if key not in _CONDITIONS:
                for keys, sub in children.get(key, []):
                    walk(sub, (*path, *keys))

    walk(schema, ())
    return found


def node_at(schema: Any, path: Path) -> Any:
    """The node at `path` (KeyError, IndexError or TypeError if there is none)."""
    node = schema
    for key in path:
        node = node[key]
    return node


def without(schema: Any, removed: list[Site]) -> Any:
    """A copy of `schema` with these keywords taken out (those under a removed one go too)."""
    out = copy.deepcopy(schema)
    for site in removed:
        try:
            node = node_at(out, site.path)
        except (KeyError, IndexError, TypeError):
            continue
        if isinstance(node, dict):
            node.pop(site.keyword, None)
    return out
