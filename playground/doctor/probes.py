"""A document that breaks only one keyword: a valid document through the keyword's node,
with one value there replaced by a break (`playground.doctor.breaks`) that the validator
confirms breaks that keyword and nothing else."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from referencing.exceptions import Unresolvable

from playground.core.schema import MAP_SUBSCHEMAS, resolve_ref
from playground.doctor.breaks import Spot, breaks
from playground.doctor.instances import Instances, within
from playground.doctor.sites import Site, node_at
from playground.errors import ConstraintError, NoInstance

# Required names left out beyond the first: each is one more matcher run per backend.
MAX_OTHER_PROBES = 4


@dataclass
class Probe:
    """A document valid but for one keyword, the valid one it came from, and the error."""

    document: Any
    valid: Any  # None where the schema admits no valid document reaching this keyword
    error: str
    # Valid documents sharing a start with `document` (the valid one first): a backend
    # that stops the broken one where a valid twin goes on is stopping the break.
    twins: list[Any] = field(default_factory=list)
    # For `required`, the object with each other required name left out: a backend may
    # enforce some names and not others (xgrammar ignores names `properties` lacks), and
    # one let through is enough to say "not enforced".
    others: list[tuple[Any, str]] = field(default_factory=list)  # (document, error)


class Documents:
    """Builds, for each keyword, a document that breaks only that keyword."""

    def __init__(self, schema: Any) -> None:
        from playground.core.schema import schema_validator

        self.schema = schema
        self.validator = schema_validator(schema)
        self.instances = Instances(schema, self._node_valid)
        checker = self.validator.format_checker
        self.checked_formats = set(checker.checkers) if checker is not None else set()

    def _node_valid(self, node: Any, value: Any) -> bool:
        try:
            return self.validator.evolve(schema=node).is_valid(value)
        except Exception:  # an unresolvable $ref in a subschema: say no
            return False

    def _instance(self, node: Any) -> Any:
        # A fresh builder: `self.instances` holds the focus and location of its last build.
        return Instances(self.schema, self._node_valid).value(node, [])

    def probe(self, site: Site) -> Probe | str:
        """A Probe, or why none could be built."""
        if site.keyword == "if":
            return "`if` only chooses between `then` and `else`; they are tested instead"
        node = node_at(self.schema, site.path)
        if site.keyword == "format" and node.get("format") not in self.checked_formats:
            return (f"the validator does not check format {node.get('format')!r}, so no "
                    "document breaks it")
        prefer = node.get(site.keyword) if site.keyword in ("then", "else") else None
        try:
            base, location = self.instances.build(node, prefer)
        except NoInstance as exc:
            return f"no valid document could be built: {exc}"
        except RecursionError:
            return "no valid document could be built: the schema recurses too deep"
        owned = self._owned(node, site.keyword)
        try:
            if not self.validator.is_valid(base):
                return self._closest(base, location, node, site.keyword, owned)
            if location is None:
                return "no valid document reaches this part of the schema"
            return self._broken(base, location, node, site.keyword, owned)
        except re.error as exc:  # a pattern neither RE2 nor Python's re reads (\cC)
            return f"the validator cannot read a pattern of this schema ({exc})"
        except NotThere:
            return "no valid document reaches this part of the schema"
        except Unresolvable as exc:  # a $ref to another document: never fetched
            return f"the validator cannot resolve a $ref of this schema ({exc})"

    def _closest(self, base: Any, location: list[Any] | None, node: dict[str, Any],
                 keyword: str, owned: set[int]) -> Probe | str:
        """No valid document: a Probe still where the closest breaks only this keyword."""
        errors = list(self.validator.iter_errors(base))
        if location is not None and all(_belongs(e, node, keyword, owned) for e in errors):
            # No value satisfies this subschema (say enum strings under type object), and
            # the closest breaks only this keyword: a backend that lets it through does
            # not enforce it, whatever else it does.
            return Probe(base, None, errors[0].message[:200])
        return f"no valid document could be built (the closest: {errors[0].message[:120]})"

    def _broken(self, base: Any, location: list[Any], node: dict[str, Any], keyword: str,
                owned: set[int]) -> Probe | str:
        """The first break the validator blames on this keyword alone, put into `base`."""
        current = _get(base, location)
        found: list[tuple[Any, str, Any]] = []
        spot = Spot(node, node.get(keyword), current, self._instance)
        for candidate in breaks(spot, keyword):
            document = _set(base, location, candidate)
            errors = list(self.validator.iter_errors(document))
            if errors and all(_belongs(e, node, keyword, owned) for e in errors):
                found.append((document, errors[0].message[:200], candidate))
                # Each more is a matcher run per backend (seconds for outlines' large
                # regexes): only where the breaks differ in kind.
                if keyword != "required" or len(found) > MAX_OTHER_PROBES:
                    break
        if not found:
            return (f"no document breaking only `{keyword}` could be built "
                    "(the validator found other errors too, or none)")
        document, error, candidate = found[0]
        twins = [base] + [_set(base, location, part) for part in _parts(candidate)]
        return Probe(document, base, error, [t for t in twins if self.validator.is_valid(t)],
                     [(other, message) for other, message, _ in found[1:]])

    def _owned(self, node: dict[str, Any], keyword: str) -> set[int]:
        """ids of the subschemas under the keyword: their errors are the keyword's too."""
        value = node.get(keyword)
        owned: set[int] = set()
        if keyword == "$ref" and isinstance(value, str):
            try:
                owned |= within(resolve_ref(self.schema, value)[0])
            except ConstraintError:  # outside the schema, or nowhere: nothing owned
                pass
        for item in (value.values() if isinstance(value, dict) and keyword in MAP_SUBSCHEMAS
                     else value if isinstance(value, list) else [value]):
            if isinstance(item, dict):
                owned |= within(item)
        return owned


def _parts(value: Any) -> list[Any]:
    """Shorter versions of a list or object: its leading items or keys."""
    if isinstance(value, list):
        return [value[:k] for k in range(len(value) - 1, 0, -1)]
    if isinstance(value, dict):
        items = list(value.items())
        return [dict(items[:k]) for k in range(len(items) - 1, 0, -1)]
    return []


def _belongs(error: Any, node: dict[str, Any], keyword: str, owned: set[int]) -> bool:
    if error.validator == keyword and error.schema is node:
        return True
    return id(error.schema) in owned


class NotThere(Exception):
    """The builder's location is not in its document (a `not` inside a `not` builds a
    document that does not reach the part it located)."""


def _get(document: Any, location: list[Any]) -> Any:
    for key in location:
        try:
            document = document[key]
        except (KeyError, IndexError, TypeError):
            raise NotThere(location) from None
    return document


def _set(document: Any, location: list[Any], value: Any) -> Any:
    if not location:
        return value
    out = copy.deepcopy(document)
    parent = _get(out, location[:-1])
    parent[location[-1]] = value
    return out
