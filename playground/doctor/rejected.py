"""Which keywords a backend rejects: those whose removal makes its compiler (or vLLM's
request validation) accept the schema, found by removing keywords and bisecting, so only
the keywords to blame are named."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from playground.doctor.sites import Site, without

# The keywords that give a node its shape: blamed last at one depth.
_SHAPE = frozenset({"type", "properties", "items", "prefixItems", "$ref", "allOf", "anyOf",
                    "oneOf"})


def rejected_keywords(schema: Any, accepts: Callable[[Any], bool], candidates: list[Site],
                      deadline: float) -> list[Site] | None:
    """The keywords whose removal makes `accepts` true: removed deepest first, each culprit
    found by bisection. None if removing every keyword still does not help; TimeoutError
    past `deadline`."""
    # Deepest first, and at one depth the keywords that give a node its shape last: a
    # check such as vLLM's "type array with uniqueItems" is then blamed on uniqueItems.
    order = sorted(candidates, key=lambda s: (-len(s.path), s.keyword in _SHAPE))
    blamed: list[Site] = []
    while not accepts(without(schema, blamed)):
        rest = [site for site in order if site not in blamed]
        if time.monotonic() > deadline:
            raise TimeoutError
        if not rest or not accepts(without(schema, blamed + rest)):
            return None
        low, high = 1, len(rest)
        while low < high:
            middle = (low + high) // 2
            if accepts(without(schema, blamed + rest[:middle])):
                high = middle
            else:
                low = middle + 1
        blamed.append(rest[low - 1])
    return blamed
