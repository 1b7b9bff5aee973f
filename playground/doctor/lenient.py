"""The lenient ("generate anyway") constraint: what a lenient run sends a backend, what of
the full constraint it gives up, and the verdict's errors that only break what was given up.

The keywords given up come from the coverage table (`playground.doctor.coverage`), which
is imported where used: the service imports this module at startup, and the table pulls in
the backends' compilers.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from playground.core.constraints import Constraint, JsonSchema
from playground.errors import WorkerDied

if TYPE_CHECKING:
    from playground.doctor.coverage import Coverage


@dataclass
class Lenient:
    """The constraint a lenient run sends, and what of the full one it gives up."""

    constraint: Constraint
    backend: str
    not_enforced: list[str] = field(default_factory=list)  # "keyword at path"
    sites: set[tuple[str, str]] = field(default_factory=set)  # (path, keyword)
    how: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "how": self.how, "not_enforced": self.not_enforced,
                "schema": self.constraint.schema if isinstance(self.constraint, JsonSchema)
                else None}


def lenient_schema(schema: Any, backend: str, table: Coverage | None = None) -> Any:
    """What a lenient run sends to `backend`: for guidance, llguidance's own lenient mode
    (unknown keywords and formats ignored, per its x-guidance options); for the others, the
    schema without the keywords the backend rejects."""
    if backend.removeprefix("vllm:") == "guidance" and isinstance(schema, dict):
        options = dict(schema.get("x-guidance") or {})
        options["lenient"] = True
        return {**schema, "x-guidance": options}
    if table is None:
        from playground.doctor.coverage import coverage

        table = coverage(schema, [backend])
    return table.lenient.get(backend, schema)


def lenient(constraint: Constraint, backend: str, time_limit_s: float = 20.0) -> Lenient:
    """For a JSON Schema: the schema `backend` can take, and the keywords it will not
    enforce (rejected, then dropped or ignored; or accepted and let through). Other
    modes have no keywords: the constraint itself."""
    if not isinstance(constraint, JsonSchema) or not isinstance(constraint.schema, dict):
        return Lenient(constraint, backend, how="nothing to relax in this mode")
    from playground.doctor.coverage import coverage

    table = coverage(constraint.schema, [backend], time_limit_s)
    rows = [r for r in table.rows if r.backends.get(backend) in ("rejected", "not enforced")]
    schema = lenient_schema(constraint.schema, backend, table)
    how = ("llguidance's lenient mode (x-guidance: {\"lenient\": true}): unsupported keywords "
           "and formats are ignored" if backend.endswith("guidance")
           else "the keywords the backend rejects are removed")
    if table.refusals.get(backend) is None:
        how = "the backend takes the schema as it is"
    return Lenient(JsonSchema(schema), backend,
                   [f"{r.keyword} at {r.path}" for r in rows],
                   {(r.path, r.keyword) for r in rows}, how)


@functools.lru_cache(maxsize=32)  # the page asks again at every keystroke in the prompt
def bounded_lenient(constraint: Constraint, backend: str, limit_s: float,
                    view: bool = False) -> Lenient:
    """`lenient` in a worker process killed past `limit_s` and a margin (a compiler given
    a huge schema may not return for minutes): TimeoutError then. `view`: for a doctor's
    view, not a run, so it takes no more than the tools' share of the workers."""
    from playground.doctor.testers import warm
    from playground.judging import workers

    call = workers.side_call if view else workers.call
    try:
        return call(lenient, constraint, backend, limit_s, timeout=limit_s + 15,
                    setup=functools.partial(warm, [backend]))
    except WorkerDied as exc:
        raise TimeoutError(str(exc)) from None


def mark_not_enforced(constraint: Constraint, text: str, errors: list[str],
                      relaxed: Lenient) -> tuple[list[str], bool]:
    """The verdict's errors, each one that breaks a keyword the run did not enforce saying
    so; and whether every schema error is such a one (the output is JSON breaking only
    keywords this lenient run left unenforced on purpose: expected, not an escape)."""
    if not relaxed.sites or not isinstance(constraint, JsonSchema):
        return errors, False
    from playground.core.schema import schema_validator
    from playground.doctor.sites import json_path

    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return errors, False
    flagged, others = set(), 0
    for error in schema_validator(constraint.schema).iter_errors(document):
        where = list(error.absolute_schema_path)
        if where and (json_path(tuple(where[:-1])), str(where[-1])) in relaxed.sites:
            flagged.add(f"{error.json_path}: {error.message}")
        else:
            others += 1
    marked = [f"{e} (not enforced by {relaxed.backend} in this lenient run)" if e in flagged
              else e for e in errors]
    return marked, others == 0
