"""Values that may break one keyword of a schema node: a table from keyword to the values
worth trying in place of a valid one.

Nothing here has to be right: `playground.doctor.probes` puts each value into a valid
document and keeps the first the validator says breaks only that keyword. The order is
the order tried, so the likeliest single-keyword break comes first. Every keyword is also
tried with a part of an object broken and with values of the wrong type (`breaks`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from playground.doctor.instances import FORMAT_VIOLATIONS, string_for
from playground.errors import NoInstance

# A value of each JSON type, and the empty and the one-character string.
WRONG_TYPES: list[Any] = [None, True, 0, -1, 1.5, "", "a", [], {}]


@dataclass(frozen=True)
class Spot:
    """Where a break goes: the keyword's node and value, the valid document's value at that
    node, and a way to build a valid value of a subschema (NoInstance or RecursionError
    where none can be built)."""

    node: dict[str, Any]
    value: Any
    current: Any
    instance: Callable[[Any], Any]

    def item(self) -> Any:
        """A valid item of the node's array, or 0 where none can be built."""
        items = self.node.get("items", True)
        try:
            return self.instance(items if isinstance(items, dict | bool) else True)
        except (NoInstance, RecursionError):
            return 0


Breaker = Callable[[Spot], list[Any]]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _distinct(value: Any, count: int) -> list[Any]:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return [value] * count
    return [value + (str(i) if isinstance(value, str) else i + 1) for i in range(count)]


def _each_part_wrong(current: dict[str, Any]) -> list[Any]:
    return [{**current, name: wrong} for name in current for wrong in WRONG_TYPES]


def _below(spot: Spot) -> list[Any]:
    value = spot.value
    return [value - 1, value - 0.5, value] if _number(value) else []


def _above(spot: Spot) -> list[Any]:
    value = spot.value
    return [value + 1, value + 0.5, value] if _number(value) else []


def _not_a_multiple(spot: Spot) -> list[Any]:
    value = spot.value
    if not _number(value) or not isinstance(spot.current, int | float):
        return []
    return [value + 1, value * 1.5, value / 2]


def _too_short_string(spot: Spot) -> list[Any]:
    current, value = spot.current, spot.value
    if not isinstance(current, str) or not isinstance(value, int):
        return []
    return [current[:max(value - 1, 0)], ""]


def _too_long_string(spot: Spot) -> list[Any]:
    current, value = spot.current, spot.value
    if not isinstance(current, str) or not isinstance(value, int):
        return []
    return [current + (current[-1:] or "a") * (value + 1 - len(current)), "a" * (value + 1)]


def _off_pattern(spot: Spot) -> list[Any]:
    # First, strings of the pattern without its lookarounds: the breaks an engine that
    # ignores them (xgrammar inside a schema, with a warning) lets through.
    own = [string_for(spot.value, last=True), string_for(spot.value)] \
        if isinstance(spot.value, str) else []
    return own + ["", "!", "~~ ~~", "a", "0", "A", " ", "aaaaaaaaaaaaaaaa"]


def _off_format(spot: Spot) -> list[Any]:
    value = spot.value
    if not isinstance(value, str):
        return []
    return FORMAT_VIOLATIONS.get(value, []) + ["not a valid " + value, "", "x"]


def _not_listed(spot: Spot) -> list[Any]:
    return ["not-in-the-list", 987654321, None, False, {}, []]


def _one_required_left_out(spot: Spot) -> list[Any]:
    current = spot.current
    if not isinstance(current, dict):
        return []
    return [{k: v for k, v in current.items() if k != name}
            for name in spot.value if name in current]


def _too_few_items(spot: Spot) -> list[Any]:
    current = spot.current
    if not isinstance(current, list):
        return []
    return [current[:max(int(spot.value) - 1, 0)], []]


def _too_many_items(spot: Spot) -> list[Any]:
    if not isinstance(spot.current, list):
        return []
    current = spot.current or [spot.item()]
    # The last item repeated, then distinct ones for a schema that wants unique items too.
    return [current + [current[-1]] * (int(spot.value) + 1),
            current + _distinct(current[-1], int(spot.value) + 1)]


def _a_duplicate(spot: Spot) -> list[Any]:
    current = spot.current
    if not isinstance(current, list):
        return []
    item = current[0] if current else spot.item()
    return [[*current, item] if current else [item, item]]


def _too_few_properties(spot: Spot) -> list[Any]:
    current = spot.current
    if not isinstance(current, dict):
        return []
    return [dict(list(current.items())[:max(int(spot.value) - 1, 0)]), {}]


def _an_extra_property(spot: Spot) -> list[Any]:
    """A property of each type under names a schema rarely allows."""
    current = spot.current
    if not isinstance(current, dict):
        return []
    return [{**current, key: extra} for key in ("zz_extra", "~not a name~", "0", "", "A")
            for extra in WRONG_TYPES]


def _a_wrong_pattern_property(spot: Spot) -> list[Any]:
    """An extra property, then one of each type under a name each pattern matches."""
    found = _an_extra_property(spot)
    if found:
        for pattern in spot.value:
            key = string_for(pattern) or "a"
            found += [{**spot.current, key: wrong} for wrong in WRONG_TYPES]
    return found


def _trigger_without_dependents(spot: Spot) -> list[Any]:
    current, value = spot.current, spot.value
    if not isinstance(current, dict) or not isinstance(value, dict):
        return []
    found = []
    for trigger, needs in value.items():
        bare = {k: v for k, v in current.items() if not (isinstance(needs, list) and k in needs)}
        found += [{**bare, trigger: wrong} for wrong in WRONG_TYPES]
    return found


def _matching_the_negated(spot: Spot) -> list[Any]:
    try:
        return [spot.instance(spot.value)]
    except (NoInstance, RecursionError):
        return []


def _a_wrong_item(spot: Spot) -> list[Any]:
    if not isinstance(spot.current, list):
        return []
    seed = spot.current or [spot.item()]
    found = [case for wrong in WRONG_TYPES
             for case in ([wrong, *seed[1:]], [*seed, wrong], [wrong])]
    return found + [[]]  # `contains`: no item at all


def _a_wrong_property(spot: Spot) -> list[Any]:
    return _each_part_wrong(spot.current) if isinstance(spot.current, dict) else []


def _a_branch_broken(spot: Spot) -> list[Any]:
    """Values that keep `if`'s answer and break `then` (or `else`): the valid value chose
    that branch, so only its own required names and properties are broken."""
    current, branch = spot.current, spot.value
    if not isinstance(current, dict) or not isinstance(branch, dict):
        return []
    found: list[Any] = [{k: v for k, v in current.items() if k != name}
                        for name in branch.get("required", [])]
    for name in (branch.get("properties") or {}):
        found += [{**current, name: wrong} for wrong in WRONG_TYPES]
    return found


BREAKS: dict[str, Breaker] = {
    "minimum": _below, "exclusiveMinimum": _below,
    "maximum": _above, "exclusiveMaximum": _above,
    "multipleOf": _not_a_multiple,
    "minLength": _too_short_string, "maxLength": _too_long_string,
    "pattern": _off_pattern, "format": _off_format,
    "enum": _not_listed, "const": _not_listed,
    "required": _one_required_left_out,
    "minItems": _too_few_items, "minContains": _too_few_items,
    "maxItems": _too_many_items, "maxContains": _too_many_items,
    "uniqueItems": _a_duplicate,
    "minProperties": _too_few_properties,
    **dict.fromkeys(("maxProperties", "additionalProperties", "unevaluatedProperties",
                     "propertyNames"), _an_extra_property),
    "patternProperties": _a_wrong_pattern_property,
    **dict.fromkeys(("dependentRequired", "dependencies", "dependentSchemas"),
                    _trigger_without_dependents),
    "not": _matching_the_negated,
    **dict.fromkeys(("items", "prefixItems", "additionalItems", "unevaluatedItems",
                     "contains"), _a_wrong_item),
    "properties": _a_wrong_property,
    "then": _a_branch_broken, "else": _a_branch_broken,
}


def breaks(spot: Spot, keyword: str) -> list[Any]:
    """The values to try for `keyword`: its own, then (keywords of an object's parts, such
    as `$ref` or `allOf` over an object) each part broken, then values of other types."""
    found = BREAKS[keyword](spot) if keyword in BREAKS else []
    if isinstance(spot.current, dict):
        found += _each_part_wrong(spot.current)
    return found + [w for w in WRONG_TYPES if w != spot.current]
