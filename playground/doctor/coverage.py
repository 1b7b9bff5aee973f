"""What each backend really enforces of a JSON Schema, keyword by keyword.

Derived from the backends themselves, never from a hand-kept list:

- *rejected*: the backend's own compiler (xgrammar, llguidance, outlines-core; vLLM's own
  request validation for the `vllm:` columns) refuses the schema, and removing this keyword
  is what makes it accept the schema (`playground.doctor.rejected`). The message is the
  backend's own.
- *enforced* / *not enforced*: for the schema with the rejected keywords removed (what a
  lenient run sends), a document is built that violates just this keyword
  (`playground.doctor.probes`), and the backend's matcher (`playground.doctor.testers`) is
  asked whether it lets that document through. A document the validator accepts is asked
  too: a backend that refuses valid documents cannot be judged on the broken one.
- *untested*: no such document could be built (the reason says why) or time ran out.

The "lenient" schema per backend, what a lenient run sends, comes from the same analysis
(`Coverage.lenient`; `playground.doctor.lenient` reads it).

The Tool call tab's coverage (`tools_coverage`) is this table for each tool's parameters
schema, each row's path led by the tool's name, under one time limit for all the tools.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from playground.core.constraints import ToolCalls
from playground.doctor.probes import Documents, Probe
from playground.doctor.rejected import rejected_keywords
from playground.doctor.sites import Site, sites, without
from playground.doctor.testers import Tester, available_backends, compile_tester, refusal, text_of
from playground.errors import ConstraintError

Label = str  # "enforced" | "not enforced" | "rejected" | "untested"


@dataclass
class Row:
    path: str
    keyword: str
    backends: dict[str, Label] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    # The document that breaks only this keyword (compact JSON), where one was built.
    document: str | None = None
    # Per backend, the document its label rests on: the one let through or stopped (a
    # backend may stop `document` and let another break of the same keyword through).
    evidence: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "keyword": self.keyword, "backends": self.backends,
                "messages": self.messages, "document": self.document,
                "evidence": self.evidence}

    def label(self, backend: str, label: Label, message: str) -> None:
        self.backends[backend], self.messages[backend] = label, message


@dataclass
class Coverage:
    rows: list[Row]
    # Per backend: the schema a lenient run sends (rejected keywords removed), and why.
    lenient: dict[str, Any]
    refusals: dict[str, str | None]
    notes: list[str] = field(default_factory=list)

    def as_list(self) -> list[dict[str, Any]]:
        return [row.as_dict() for row in self.rows]

    def not_enforced(self, backend: str) -> list[str]:
        """"keyword at path" for each keyword the backend rejects or lets through."""
        return [f"{row.keyword} at {row.path}" for row in self.rows
                if row.backends.get(backend) in ("rejected", "not enforced")]

    def full(self, backend: str) -> bool:
        return all(row.backends.get(backend) in ("enforced", "untested") for row in self.rows)


class _Table:
    """One coverage run: the rows so far, and the probes shared by every backend's column
    (a probe is built once, then asked of each backend's matcher)."""

    def __init__(self, schema: Any, time_limit_s: float, deadline: float | None = None
                 ) -> None:
        self.schema = schema
        self.time_limit_s = time_limit_s
        # Given: shared with other tables (a tool set's schemas share one time limit).
        self.deadline = time.monotonic() + time_limit_s if deadline is None else deadline
        self.found = sites(schema)
        self.rows = {site: Row(site.json_path, site.keyword) for site in self.found}
        self.documents = Documents(schema)
        self.probes: dict[Site, Probe | str] = {}
        self.lenient: dict[str, Any] = {}
        self.refusals: dict[str, str | None] = {}
        self.notes: list[str] = []

    def column(self, backend: str) -> None:
        """Fill in `backend`'s labels: rejected keywords first, then the rest judged by the
        matcher of the schema without them."""
        blamed = self._rejected(backend)
        if blamed is None:
            return
        kept = without(self.schema, blamed)
        self.lenient[backend] = kept
        try:
            tester = compile_tester(backend, kept)
        except ConstraintError as exc:
            for site in self.found:
                if site not in blamed:
                    self.rows[site].label(backend, "untested",
                                          f"the lenient schema did not compile: {exc}")
            return
        for site in self.found:
            if site not in blamed:
                self._judged(backend, site, blamed, tester)

    def _rejected(self, backend: str) -> list[Site] | None:
        """The keywords the backend rejects, each row labelled; None where it refuses the
        schema whatever is removed (or time ran out finding why): every row rejected."""
        reason = refusal(backend, self.schema)
        self.refusals[backend] = reason
        if reason is None:
            return []
        try:
            blamed = rejected_keywords(self.schema,
                                       lambda s: refusal(backend, s) is None,
                                       self.found, self.deadline)
        except TimeoutError:
            blamed = None
            reason += f" (which keywords are to blame: not found in {self.time_limit_s:g} s)"
        if blamed is None:
            self.notes.append(f"{backend} refuses the schema: {reason}")
            for row in self.rows.values():
                row.label(backend, "rejected", reason)
            return None
        for site in blamed:
            # With several to blame, the message of this one alone where time allows.
            alone = refusal(backend, without(self.schema, [s for s in blamed if s != site])) \
                if len(blamed) > 1 and time.monotonic() < self.deadline else None
            self.rows[site].label(backend, "rejected", alone or reason or "")
        return blamed

    def _judged(self, backend: str, site: Site, blamed: list[Site], tester: Tester) -> None:
        row = self.rows[site]
        parent = next((b for b in blamed if site.path[:len(b.path) + 1]
                       == (*b.path, b.keyword)), None)
        if parent is not None:
            row.label(backend, "rejected",
                      f"removed with `{parent.keyword}` at {parent.json_path}")
            return
        if time.monotonic() > self.deadline:
            row.label(backend, "untested", f"time limit ({self.time_limit_s:g} s) reached")
            return
        if site not in self.probes:
            probe = self.probes[site] = self.documents.probe(site)
            if isinstance(probe, Probe):
                row.document = text_of(probe.document)
        label, message, evidence = _judge(tester, self.probes[site])
        row.label(backend, label, message)
        if evidence is not None:
            row.evidence[backend] = evidence

    def result(self) -> Coverage:
        return Coverage(list(self.rows.values()), self.lenient, self.refusals, self.notes)


def coverage(schema: Any, backends: list[str] | None = None,
             time_limit_s: float = 30.0) -> Coverage:
    """The per-keyword, per-backend table for `schema` (see the module's docstring)."""
    table = _Table(schema, time_limit_s)
    for backend in available_backends() if backends is None else backends:
        table.column(backend)
    return table.result()


def tool_schemas(constraint: ToolCalls) -> list[tuple[str, Any]]:
    """(name, parameters) of the tools a call may name: a named choice constrains its one."""
    return [(tool.name, tool.parameters) for tool in constraint.allowed]


def tools_coverage(tools: Sequence[tuple[str, Any]], backends: list[str] | None = None,
                   time_limit_s: float = 30.0) -> Coverage:
    """`coverage` of each (tool name, parameters schema), in one table: each row's path,
    and each note, starts with the tool's name ("get_weather: $.properties.unit"), and
    `lenient` is per backend {tool name: lenient schema}. The tools share one deadline,
    so a tool set takes no longer than one schema would. A boolean schema has no keywords,
    hence no rows."""
    deadline = time.monotonic() + time_limit_s
    chosen = available_backends() if backends is None else backends
    found = Coverage([], {}, {backend: None for backend in chosen})
    for name, schema in tools:
        if not isinstance(schema, dict):
            continue
        table = _Table(schema, time_limit_s, deadline)
        for backend in chosen:
            table.column(backend)
        part = table.result()
        for row in part.rows:
            row.path = f"{name}: {row.path}"
        found.rows += part.rows
        found.notes += [f"{name}: {note}" for note in part.notes]
        for backend, kept in part.lenient.items():
            found.lenient.setdefault(backend, {})[name] = kept
        for backend, reason in part.refusals.items():
            if reason is not None and found.refusals.get(backend) is None:
                found.refusals[backend] = f"{name}: {reason}"  # the first refused tool's
    return found


def _judge(tester: Tester, probe: Probe | str) -> tuple[Label, str, str | None]:
    """The label, the reason, and the document the label rests on."""
    if isinstance(probe, str):
        return "untested", probe, None
    broken_text = text_of(probe.document)
    broken = tester.test(broken_text)
    if broken.matches:
        return "not enforced", (f"let through {_short(broken_text)}, which breaks it: "
                                f"{probe.error}"), broken_text
    for other, error in probe.others:
        other_text = text_of(other)
        if tester.test(other_text).matches:
            return "not enforced", (f"let through {_short(other_text)}, which breaks it: "
                                    f"{error} (it stopped another break: {probe.error})"
                                    ), other_text
    if probe.valid is None:
        return "untested", (f"it stopped {_short(broken_text)} ({probe.error}), but no "
                            "document is valid here to show that it lets valid ones "
                            "through"), None
    # Stopped: by the break, or by something the backend refuses in valid documents too?
    # The valid twin sharing the longest start with the broken one must go through: past
    # where the broken one stopped if a twin goes that far, else at least the valid one.
    stop = broken.rejected_at if broken.rejected_at is not None else -1
    twins = sorted(probe.twins, key=lambda t: -_common(text_of(t), broken_text))
    far = [t for t in twins if _common(text_of(t), broken_text) >= stop]
    twin_text = text_of(far[0] if far else probe.valid)
    verdict = tester.test(twin_text)
    if verdict.matches:
        where = f"at character {stop}" if stop >= 0 else "(no match)"
        return "enforced", f"stopped {_short(broken_text)} {where} ({probe.error})", broken_text
    return "untested", (f"it refuses a valid document too, {_short(twin_text)}: "
                        f"{verdict.message}"), None


def _common(a: str, b: str) -> int:
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return length


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
