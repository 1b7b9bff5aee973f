"""Each backend as the doctor asks it: its compiler, which may refuse a schema, and a
matcher that says whether it lets a text through.

xgrammar and llguidance are asked through `playground.judging.matcher`; vLLM's outlines
backend through the regex it builds, run in RE2; the `vllm:` columns through vLLM's own
request validation (`refusal`), then the matcher of the backend beneath.

Both compiling and refusing are remembered per process for the last few schemas: a
suite's schema is compiled by its refusal check, its MaskBench-style tests and the
coverage, once for a backend and once again for its `vllm:` column (the same matcher).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import threading
from typing import Any

from cachetools import LRUCache

from playground.backends.names import RAW_BACKENDS, VLLM_CHECKS
from playground.core.constraints import JsonSchema
from playground.errors import ConstraintError
from playground.judging.matcher import StringTest


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


def text_of(document: Any) -> str:
    """Compact JSON: no whitespace, which every backend accepts between tokens."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


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


# ---- what is remembered ------------------------------------------------------------------

_KEEP_TESTERS, _KEEP_REFUSALS, _KEEP_ANSWERS = 16, 512, 4096
Key = tuple[str, bytes]  # (backend, digest of the schema)
# Least recently used goes first: bisecting a refused schema compiles hundreds of near
# copies of it, which must not push out the schema asked about all along.
_TESTERS: LRUCache[Key, Tester | ConstraintError] = LRUCache(maxsize=_KEEP_TESTERS)
# A refusal costs seconds where vLLM's outlines check parses a large schema's regex.
_REFUSALS: LRUCache[Key, str | None] = LRUCache(maxsize=_KEEP_REFUSALS)
# cachetools' caches are not thread-safe (a read reorders them): every access holds it.
_lock = threading.Lock()
_UNASKED = object()  # not remembered (None is a remembered answer: "accepted")


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


def _key(schema: Any) -> bytes | None:
    """A digest of the schema's text: a key that stays small however large the schema
    (bisecting a large schema asks hundreds of near copies of it)."""
    try:
        text = json.dumps(schema)
    except (TypeError, ValueError):  # not JSON: not remembered
        return None
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20).digest()


def _recall(cache: LRUCache[Key, Any], key: Key) -> Any:
    with _lock:
        return cache.get(key, _UNASKED)


def _remember(cache: LRUCache[Key, Any], key: Key, value: Any) -> None:
    with _lock:
        cache[key] = value


def compile_tester(backend: str, schema: Any) -> Tester:
    """The backend's matcher for `schema`; ConstraintError with its message if refused."""
    raw = backend.removeprefix("vllm:")  # a `vllm:` column shares its backend's matcher
    digest = _key(schema)
    found = _recall(_TESTERS, (raw, digest)) if digest is not None else _UNASKED
    if found is _UNASKED:
        try:
            found = _Remembered(_compile_tester(raw, schema))
        except ConstraintError as exc:
            found = exc
        if digest is not None:
            _remember(_TESTERS, (raw, digest), found)
    if isinstance(found, ConstraintError):
        raise ConstraintError(str(found))  # a new one: a raised error keeps its traceback
    return found


def _compile_tester(raw: str, schema: Any) -> Tester:
    if raw == "outlines":
        return OutlinesTester(outlines_regex(schema))
    from playground.judging.matcher import Matcher

    return _MatcherTester(Matcher.create(JsonSchema(schema), None, raw))  # type: ignore[arg-type]


def refusal(backend: str, schema: Any) -> str | None:
    """The backend's reason for refusing `schema`, or None if it accepts it (remembered
    for the last few hundred schemas asked)."""
    if schema == {} or schema is True:  # any JSON; vLLM reads an empty schema as none
        return None
    digest = _key(schema)
    if digest is not None:
        found = _recall(_REFUSALS, (backend, digest))
        if found is not _UNASKED:
            return found  # type: ignore[no-any-return]
    reason = _refusal(backend, schema)
    if digest is not None:
        _remember(_REFUSALS, (backend, digest), reason)
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
