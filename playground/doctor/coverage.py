"""What each backend really enforces of a JSON Schema, keyword by keyword.

Derived from the backends themselves, never from a hand-kept list:

- *rejected*: the backend's own compiler (xgrammar, llguidance, outlines-core; vLLM's own
  request validation for the `vllm:` columns) refuses the schema, and removing this keyword
  is what makes it accept the schema. Found by removing keywords (deepest first) and
  bisecting, so only the keywords to blame are named; the message is the backend's own.
- *enforced* / *not enforced*: for the schema with the rejected keywords removed (what a
  lenient run sends), a document is built that violates just this keyword (the validator
  confirms its errors all come from this keyword), and the backend's matcher is asked
  whether it lets that document through. A document the validator accepts is asked too:
  a backend that refuses valid documents cannot be judged on the broken one.
- *untested*: no such document could be built (the reason says why) or time ran out.

The "lenient" schema per backend, what a lenient run sends, comes from the same analysis.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from playground.backends.names import RAW_BACKENDS, VLLM_CHECKS
from playground.core.constraints import JsonSchema
from playground.doctor.instances import (
    ANNOTATIONS,
    FORMAT_VIOLATIONS,
    LIST_SUBSCHEMAS,
    MAP_SUBSCHEMAS,
    ONE_SUBSCHEMA,
    Instances,
    string_for,
    within,
)
from playground.errors import ConstraintError, NoInstance
from playground.judging.matcher import StringTest

Label = str  # "enforced" | "not enforced" | "rejected" | "untested"
# Keywords that only hold subschemas for others to use, never judge a document themselves.
_NOT_ROWS = frozenset({"$defs", "definitions"})
# Subschemas that a document must *not* match, or that only choose: their keywords are
# parts of the condition (tested as `not`, `then`, `else`), not rows of their own.
_CONDITIONS = frozenset({"not", "if"})
_SHAPE = frozenset({"type", "properties", "items", "prefixItems", "$ref", "allOf", "anyOf",
                    "oneOf"})
_WRONG_TYPES: list[Any] = [None, True, 0, -1, 1.5, "", "a", [], {}]
# Required names left out beyond the first: each is one more matcher run per backend.
MAX_OTHER_PROBES = 4


@dataclass(frozen=True)
class Site:
    """One keyword of the schema: where its node is (keys from the root) and its name."""

    path: tuple[Any, ...]
    keyword: str

    @property
    def json_path(self) -> str:
        return json_path(self.path)


def json_path(keys: tuple[Any, ...]) -> str:
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

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            if key not in ANNOTATIONS and key not in _NOT_ROWS and not key.startswith("x-"):
                found.append(Site(path, key))
            if key in MAP_SUBSCHEMAS and isinstance(value, dict):
                for name, sub in value.items():
                    walk(sub, (*path, key, name))
            elif key in LIST_SUBSCHEMAS and isinstance(value, list):
                for index, sub in enumerate(value):
                    walk(sub, (*path, key, index))
            elif key in ONE_SUBSCHEMA and isinstance(value, dict) and key not in _CONDITIONS:
                walk(value, (*path, key))
            elif key == "dependencies" and isinstance(value, dict):
                for name, sub in value.items():
                    walk(sub, (*path, key, name))

    walk(schema, ())
    return found


def node_at(schema: Any, path: tuple[Any, ...]) -> Any:
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


# ---- backends: a compiler that may refuse, and a matcher for text ----------------------


class Tester:
    """A compiled schema that says whether it lets a text through."""

    def test(self, text: str) -> StringTest: ...


class _MatcherTester(Tester):
    def __init__(self, matcher: Any) -> None:
        self.matcher = matcher

    def test(self, text: str) -> StringTest:
        return self.matcher.test(text)


class OutlinesTester(Tester):
    """The regex vLLM's outlines backend builds (`build_regex_from_schema`), full-matched
    with RE2. outlines-core walks that regex as an automaton over the vocabulary; building
    that automaton took 8 s for a seven-property schema on this machine (optional
    properties multiply its states), so the same regex runs in RE2, an automaton engine of
    the same family (both refuse lookarounds and backreferences)."""

    def __init__(self, regex: str) -> None:
        import re2

        self.regex = regex
        options = re2.Options()
        options.log_errors = False
        options.max_mem = 64 << 20
        try:
            self.compiled = re2.compile(regex, options)
        except re2.error as exc:
            raise ConstraintError(f"json: outlines' regex does not compile in RE2: "
                                  f"{_one_line(exc)}") from None

    def test(self, text: str) -> StringTest:
        if self.compiled.fullmatch(text) is not None:
            return StringTest(True, True)
        return StringTest(False, False, None, None, "does not match outlines' regex")


def outlines_regex(schema: Any) -> str:
    """The regex vLLM's outlines backend builds for a schema (ConstraintError if none)."""
    from outlines_core.json_schema import build_regex_from_schema

    try:
        return build_regex_from_schema(json.dumps(schema))
    except Exception as exc:  # outlines-core raises ValueError/TypeError with its reason
        raise ConstraintError(f"json: outlines rejects it: {_one_line(exc)}") from None


def _one_line(exc: BaseException | str) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def available_backends(include_vllm: bool | None = None) -> list[str]:
    """The backends this machine can ask: the compilers installed, and vLLM's validation
    where vllm is installed (`include_vllm` None: if importable)."""
    found = [name for name, module in zip(RAW_BACKENDS, ("xgrammar", "llguidance",
                                                         "outlines_core"), strict=True)
             if importlib.util.find_spec(module) is not None]
    if include_vllm is None:
        include_vllm = importlib.util.find_spec("vllm") is not None
    if include_vllm:
        found += [name for name in VLLM_CHECKS if name.split(":")[1] in found]
    return found


_WARMED: set[str] = set()


def warm(backends: tuple[str, ...] | list[str] = RAW_BACKENDS) -> None:
    """Import what these backends need (xgrammar imports torch: seconds), once per
    process: a worker's setup, outside its time limit (playground.judging.workers). For the
    `vllm:` columns, one check of a tiny schema each: vLLM's import (~6 s on 2 cores) and
    the tokenizer its check reads, which the first real check paid before, in its limit
    and in its compile time."""
    import llguidance  # noqa: F401
    import xgrammar  # noqa: F401

    for backend in backends:
        if backend.startswith("vllm:") and backend not in _WARMED:
            from playground.backends.vllm import vllm_check

            vllm_check(JsonSchema({"type": "integer"}), backend.removeprefix("vllm:"))
            _WARMED.add(backend)


class _Remembered(Tester):
    """A tester that answers each text once: the doctor asks the same documents of a
    backend and of its `vllm:` column (one matcher when their lenient schemas agree)."""

    def __init__(self, tester: Tester) -> None:
        self.tester = tester
        self.answers: dict[str, StringTest] = {}

    def test(self, text: str) -> StringTest:
        found = self.answers.get(text)
        if found is None:
            found = self.tester.test(text)
            if len(self.answers) < _KEEP_ANSWERS:  # a server's worker lives long
                self.answers[text] = found
        return found


# Per process, the few schemas last compiled: a suite's schema is compiled by its refusal
# check, its MaskBench-style tests and the coverage, once for a backend and once again for
# its `vllm:` column (the same matcher); each of those compiled it anew before.
_TESTERS: OrderedDict[tuple[str, bytes], Tester | ConstraintError] = OrderedDict()
_REFUSALS: OrderedDict[tuple[str, bytes], str | None] = OrderedDict()
_KEEP_TESTERS, _KEEP_REFUSALS, _KEEP_ANSWERS = 16, 512, 4096
_lock = threading.Lock()
_UNASKED = object()


def _remember(store: OrderedDict[Any, Any], key: Any, value: Any, keep: int) -> None:
    with _lock:
        store[key] = value
        while len(store) > keep:
            store.popitem(last=False)


def _key(schema: Any) -> bytes | None:
    """A digest of the schema's text: a key that stays small however large the schema
    (bisecting a large schema asks hundreds of near copies of it)."""
    try:
        text = json.dumps(schema)
    except (TypeError, ValueError):  # not JSON: not remembered
        return None
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20).digest()


def compile_tester(backend: str, schema: Any) -> Tester:
    """The backend's matcher for `schema`; ConstraintError with its message if refused."""
    raw = backend.removeprefix("vllm:")
    key = _key(schema)
    found = _TESTERS.get((raw, key)) if key is not None else None
    if found is not None:  # least recently used goes first: bisection's near copies
        with _lock:        # must not push out the schema asked about all along
            if (raw, key) in _TESTERS:
                _TESTERS.move_to_end((raw, key))
    else:
        try:
            found = _Remembered(_compile_tester(raw, schema))
        except ConstraintError as exc:
            found = exc
        if key is not None:
            _remember(_TESTERS, (raw, key), found, _KEEP_TESTERS)
    if isinstance(found, ConstraintError):
        raise ConstraintError(str(found))
    return found


def _compile_tester(raw: str, schema: Any) -> Tester:
    if raw == "outlines":
        return OutlinesTester(outlines_regex(schema))
    from playground.judging.matcher import Matcher

    return _MatcherTester(Matcher.create(JsonSchema(schema), None, raw))  # type: ignore[arg-type]


def refusal(backend: str, schema: Any) -> str | None:
    """The backend's reason for refusing `schema`, or None if it accepts it (remembered
    for the last few hundred schemas asked: vLLM's outlines check of a large schema parses
    its regex in Python, seconds each time)."""
    if schema == {} or schema is True:  # any JSON; vLLM reads an empty schema as none
        return None
    key = _key(schema)
    if key is not None:
        found = _REFUSALS.get((backend, key), _UNASKED)
        if found is not _UNASKED:
            return found  # type: ignore[return-value]
    reason = _refusal(backend, schema)
    if key is not None:
        _remember(_REFUSALS, (backend, key), reason, _KEEP_REFUSALS)
    return reason


def _refusal(backend: str, schema: Any) -> str | None:
    if backend.startswith("vllm:"):
        from playground.backends.vllm import vllm_check

        accepted, message = vllm_check(JsonSchema(schema), backend.removeprefix("vllm:"))
        return None if accepted else f"vLLM ({backend[5:]}): {message}"
    try:
        if backend == "outlines":  # its compiler is the regex; the matcher is ours
            outlines_regex(schema)
        else:
            compile_tester(backend, schema)
    except ConstraintError as exc:
        return str(exc).removeprefix("json: ")
    return None


# ---- rejected keywords --------------------------------------------------------------


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


# ---- documents that break one keyword --------------------------------------------------


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
        if not self.validator.is_valid(base):
            errors = list(self.validator.iter_errors(base))
            if location is not None and all(_belongs(e, node, site.keyword, owned)
                                            for e in errors):
                # No value satisfies this subschema (say enum strings under type object),
                # and the closest breaks only this keyword: a backend that lets it
                # through does not enforce it, whatever else it does.
                return Probe(base, None, errors[0].message[:200])
            return (f"no valid document could be built (the closest: "
                    f"{errors[0].message[:120]})")
        if location is None:
            return "no valid document reaches this part of the schema"
        current = _get(base, location)
        found: list[tuple[Any, str, Any]] = []
        for candidate in self._candidates(node, site.keyword, current, location):
            document = _set(base, location, candidate)
            errors = list(self.validator.iter_errors(document))
            if errors and all(_belongs(e, node, site.keyword, owned) for e in errors):
                found.append((document, errors[0].message[:200], candidate))
                # Each more is a matcher run per backend (seconds for outlines' large
                # regexes): only where the breaks differ in kind.
                if site.keyword != "required" or len(found) > MAX_OTHER_PROBES:
                    break
        if not found:
            return (f"no document breaking only `{site.keyword}` could be built "
                    "(the validator found other errors too, or none)")
        document, error, candidate = found[0]
        twins = [base] + [_set(base, location, part) for part in _parts(candidate)]
        return Probe(document, base, error, [t for t in twins if self.validator.is_valid(t)],
                     [(other, message) for other, message, _ in found[1:]])

    def _owned(self, node: dict[str, Any], keyword: str) -> set[int]:
        value = node.get(keyword)
        owned: set[int] = set()
        if keyword == "$ref" and isinstance(value, str):
            try:
                owned |= within(self.instances.resolve(value))
            except NoInstance:
                pass
        for item in (value.values() if isinstance(value, dict) and keyword in MAP_SUBSCHEMAS
                     else value if isinstance(value, list) else [value]):
            if isinstance(item, dict):
                owned |= within(item)
        return owned

    def _candidates(self, node: dict[str, Any], keyword: str, current: Any,
                    location: list[Any]) -> list[Any]:
        value = node.get(keyword)
        found: list[Any] = []
        if keyword in ("minimum", "exclusiveMinimum") and _number(value):
            found += [value - 1, value - 0.5, value]
        elif keyword in ("maximum", "exclusiveMaximum") and _number(value):
            found += [value + 1, value + 0.5, value]
        elif keyword == "multipleOf" and _number(value):
            found += [value + 1, value * 1.5, value / 2] if isinstance(current, int | float) \
                else []
        elif keyword == "minLength" and isinstance(current, str) and isinstance(value, int):
            found += [current[:max(value - 1, 0)], ""]
        elif keyword == "maxLength" and isinstance(current, str) and isinstance(value, int):
            found += [current + (current[-1:] or "a") * (value + 1 - len(current)),
                      "a" * (value + 1)]
        elif keyword == "pattern":
            # First, strings of the pattern without its lookarounds: the breaks an engine
            # that ignores them (xgrammar inside a schema, with a warning) lets through.
            found += [string_for(value, last=True), string_for(value)] \
                if isinstance(value, str) else []
            found += ["", "!", "~~ ~~", "a", "0", "A", " ", "aaaaaaaaaaaaaaaa"]
        elif keyword == "format" and isinstance(value, str):
            found += FORMAT_VIOLATIONS.get(value, []) + ["not a valid " + value, "", "x"]
        elif keyword in ("enum", "const"):
            found += ["not-in-the-list", 987654321, None, False, {}, []]
        elif keyword == "required" and isinstance(current, dict):
            found += [{k: v for k, v in current.items() if k != name}
                      for name in value if name in current]
        elif keyword in ("minItems", "minContains") and isinstance(current, list):
            found += [current[:max(int(value) - 1, 0)], []]
        elif keyword in ("maxItems", "maxContains") and isinstance(current, list):
            current = current or [self._item(node, location)]
            grown = current + [current[-1]] * (int(value) + 1)
            found += [grown, current + _distinct(current[-1], int(value) + 1)]
        elif keyword == "uniqueItems" and isinstance(current, list):
            item = current[0] if current else self._item(node, location)
            found += [[*current, item] if current else [item, item]]
        elif keyword in ("minProperties",) and isinstance(current, dict):
            found += [dict(list(current.items())[:max(int(value) - 1, 0)]), {}]
        elif keyword in ("maxProperties", "additionalProperties", "unevaluatedProperties",
                         "propertyNames", "patternProperties") and isinstance(current, dict):
            for key in ("zz_extra", "~not a name~", "0", "", "A"):
                for extra in _WRONG_TYPES:
                    found.append({**current, key: extra})
            if keyword == "patternProperties":
                for pattern in value:
                    key = string_for(pattern) or "a"
                    found += [{**current, key: wrong} for wrong in _WRONG_TYPES]
        elif keyword in ("dependentRequired", "dependencies", "dependentSchemas") and \
                isinstance(current, dict) and isinstance(value, dict):
            for trigger, needs in value.items():
                bare = {k: v for k, v in current.items()
                        if not (isinstance(needs, list) and k in needs)}
                found += [{**bare, trigger: wrong} for wrong in _WRONG_TYPES]
        elif keyword == "not":
            try:
                found.append(Instances(self.schema, self._node_valid).value(value, []))
            except (NoInstance, RecursionError):
                pass
        elif keyword in ("items", "prefixItems", "additionalItems", "unevaluatedItems",
                         "contains") and isinstance(current, list):
            seed = current or [self._item(node, location)]
            for wrong in _WRONG_TYPES:
                found += [[wrong, *seed[1:]], [*seed, wrong], [wrong]]
            found.append([])
        elif keyword == "properties" and isinstance(current, dict):
            for name in current:
                found += [{**current, name: wrong} for wrong in _WRONG_TYPES]
        elif keyword in ("then", "else"):
            found += self._branch_breaks(node, keyword, current)
        if isinstance(current, dict):  # the keywords of an object's parts: break a part
            for name in current:
                found += [{**current, name: wrong} for wrong in _WRONG_TYPES]
        return found + [w for w in _WRONG_TYPES if w != current]

    def _branch_breaks(self, node: dict[str, Any], keyword: str, current: Any) -> list[Any]:
        """Values that keep `if`'s answer and break `then` (or `else`)."""
        branch = node.get(keyword)
        out: list[Any] = []
        if isinstance(current, dict) and isinstance(branch, dict):
            for name in branch.get("required", []):
                out.append({k: v for k, v in current.items() if k != name})
            for name in (branch.get("properties") or {}):
                out += [{**current, name: wrong} for wrong in _WRONG_TYPES]
        return out

    def _item(self, node: dict[str, Any], location: list[Any]) -> Any:
        items = node.get("items", True)
        try:
            return Instances(self.schema, self._node_valid).value(
                items if isinstance(items, dict | bool) else True, [])
        except (NoInstance, RecursionError):
            return 0


def _parts(value: Any) -> list[Any]:
    """Shorter versions of a list or object: its leading items or keys."""
    if isinstance(value, list):
        return [value[:k] for k in range(len(value) - 1, 0, -1)]
    if isinstance(value, dict):
        items = list(value.items())
        return [dict(items[:k]) for k in range(len(items) - 1, 0, -1)]
    return []


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _distinct(value: Any, count: int) -> list[Any]:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return [value] * count
    return [value + (str(i) if isinstance(value, str) else i + 1) for i in range(count)]


def _belongs(error: Any, node: dict[str, Any], keyword: str, owned: set[int]) -> bool:
    if error.validator == keyword and error.schema is node:
        return True
    return id(error.schema) in owned


def _get(document: Any, location: list[Any]) -> Any:
    for key in location:
        document = document[key]
    return document


def _set(document: Any, location: list[Any], value: Any) -> Any:
    if not location:
        return value
    out = copy.deepcopy(document)
    parent = _get(out, location[:-1])
    parent[location[-1]] = value
    return out


def text_of(document: Any) -> str:
    """Compact JSON: no whitespace, which every backend accepts between tokens."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


# ---- the table -------------------------------------------------------------------------


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


def coverage(schema: Any, backends: list[str] | None = None,
             time_limit_s: float = 30.0) -> Coverage:
    """The per-keyword, per-backend table for `schema` (see the module's docstring)."""
    deadline = time.monotonic() + time_limit_s
    backends = available_backends() if backends is None else backends
    found = sites(schema)
    rows = {site: Row(site.json_path, site.keyword) for site in found}
    documents = Documents(schema)
    probes: dict[Site, Probe | str] = {}
    lenient: dict[str, Any] = {}
    refusals: dict[str, str | None] = {}
    notes: list[str] = []
    for backend in backends:
        reason = refusal(backend, schema)
        refusals[backend] = reason
        blamed: list[Site] | None = []
        if reason is not None:
            try:
                blamed = rejected_keywords(schema, lambda s, b=backend: refusal(b, s) is None,
                                           found, deadline)
            except TimeoutError:
                blamed = None
                reason += f" (which keywords are to blame: not found in {time_limit_s:g} s)"
            if blamed is None:
                notes.append(f"{backend} refuses the schema: {reason}")
                for row in rows.values():
                    row.backends[backend], row.messages[backend] = "rejected", reason
                continue
        for site in blamed:
            alone = refusal(backend, without(schema, [s for s in blamed if s != site])) \
                if len(blamed) > 1 and time.monotonic() < deadline else None
            rows[site].backends[backend] = "rejected"
            rows[site].messages[backend] = alone or reason or ""
        kept = without(schema, blamed)
        lenient[backend] = kept
        try:
            tester = compile_tester(backend, kept)
        except ConstraintError as exc:
            for site in found:
                if site not in blamed:
                    rows[site].backends[backend] = "untested"
                    rows[site].messages[backend] = f"the lenient schema did not compile: {exc}"
            continue
        for site in found:
            if site in blamed:
                continue
            parent = next((b for b in blamed if site.path[:len(b.path) + 1]
                           == (*b.path, b.keyword)), None)
            if parent is not None:
                rows[site].backends[backend] = "rejected"
                rows[site].messages[backend] = (f"removed with `{parent.keyword}` at "
                                                f"{parent.json_path}")
                continue
            if time.monotonic() > deadline:
                rows[site].backends[backend] = "untested"
                rows[site].messages[backend] = f"time limit ({time_limit_s:g} s) reached"
                continue
            if site not in probes:
                probes[site] = documents.probe(site)
                if isinstance(probes[site], Probe):
                    rows[site].document = text_of(probes[site].document)
            label, message, evidence = _judge(tester, probes[site])
            rows[site].backends[backend], rows[site].messages[backend] = label, message
            if evidence is not None:
                rows[site].evidence[backend] = evidence
    return Coverage(list(rows.values()), lenient, refusals, notes)


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


def lenient_schema(schema: Any, backend: str, table: Coverage | None = None) -> Any:
    """What a lenient run sends to `backend`: for guidance, llguidance's own lenient mode
    (unknown keywords and formats ignored, per its x-guidance options); for the others, the
    schema without the keywords the backend rejects."""
    if backend.removeprefix("vllm:") == "guidance" and isinstance(schema, dict):
        options = dict(schema.get("x-guidance") or {})
        options["lenient"] = True
        return {**schema, "x-guidance": options}
    table = table or coverage(schema, [backend])
    return table.lenient.get(backend, schema)
