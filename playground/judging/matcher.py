"""A constraint compiled into a token matcher on the CPU, the way an engine's backend sees it.

One piece serves three questions: is this text still a viable prefix of the constraint's
language (cut outputs, escaped outputs), does this test string match (the doctor), and how
many tokens did the constraint allow at each step of a run (the inspector). It uses the
backends' own matchers, xgrammar's `GrammarMatcher` and llguidance's `LLMatcher`, so the
answer is what the engine enforces, not what our validator thinks.

Text checks need no model: a byte-level vocabulary (one token per byte, plus an end token)
makes every string a token sequence. Token replays take the model's own tokenizer.
Imports no engine; xgrammar and llguidance are imported where used.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from playground.backends.guidance import guidance_grammar, special_tag_ids
from playground.backends.names import MATCHER_BACKENDS, Backend
from playground.core.constraints import Constraint, Regex
from playground.errors import ConstraintError

_BYTE_EOS = 256


@dataclass(frozen=True)
class StringTest:
    """What a backend's matcher says of one string."""

    accepted: bool  # every character was allowed: the string is a viable prefix
    complete: bool  # ...and the constraint may end right after it
    rejected_at: int | None = None  # index of the first character not allowed
    expected: str | None = None  # what was allowed there instead
    message: str | None = None

    @property
    def matches(self) -> bool:
        return self.accepted and self.complete

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "complete": self.complete, "matches": self.matches,
                "rejected_at": self.rejected_at, "expected": self.expected,
                "message": self.message}


@dataclass(frozen=True)
class Step:
    """One generated token, replayed: how many tokens the constraint allowed before it."""

    token_id: int
    allowed: int | None  # None once the matcher has rejected an earlier token
    vocab: int  # tokens allowed with no constraint at all (the "free" count)
    accepted: bool
    # Whether each token of replay's `check` for this step was allowed here (the inspector
    # asks about the model's own top choices); () when nothing was asked or after a reject.
    checked: tuple[bool, ...] = ()


# ---- vocabularies ------------------------------------------------------------------------


class _ByteTokenizer:
    """The duck-typed tokenizer llguidance's TokenizerWrapper reads: one token per byte."""

    eos_token_id = _BYTE_EOS
    bos_token_id = None
    tokens = [bytes([b]) for b in range(256)] + [b"<end>"]
    special_token_ids = [_BYTE_EOS]

    def __call__(self, text: str | bytes) -> list[int]:
        return list(text.encode("utf-8") if isinstance(text, str) else text)


class Vocabulary:
    """A tokenizer as both backends read it, built once (large vocabularies take ~1 s)."""

    def __init__(self, tokenizer: Any = None, vocab_size: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.size = vocab_size or (len(tokenizer) if tokenizer is not None else _BYTE_EOS + 1)
        self.eos = _BYTE_EOS if tokenizer is None else tokenizer.eos_token_id

    @classmethod
    @functools.cache
    def byte_level(cls) -> Vocabulary:
        return cls()

    @functools.cached_property
    def xgrammar_compiler(self) -> Any:
        import xgrammar as xgr

        if self.tokenizer is None:
            info = xgr.TokenizerInfo(_ByteTokenizer.tokens, vocab_type=xgr.VocabType.RAW,
                                     vocab_size=self.size, stop_token_ids=[_BYTE_EOS])
        else:
            info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.size)
        # Bounded: a shared demo server must not grow without limit (64 MiB of grammars).
        return xgr.GrammarCompiler(info, cache_enabled=True, cache_limit_bytes=64 << 20)

    @functools.cached_property
    def llguidance_tokenizer(self) -> Any:
        import llguidance

        if self.tokenizer is None:
            return llguidance.LLTokenizer(llguidance.TokenizerWrapper(_ByteTokenizer()))
        import llguidance.hf

        return llguidance.hf.from_tokenizer(self.tokenizer, self.size)

    @functools.cached_property
    def unconstrained(self) -> dict[Backend, int]:
        """Tokens each backend allows under "any text": what "free" means at a step."""
        anything = Regex(r"[\s\S]*")
        return {backend: Matcher.create(anything, self, backend)._session().allowed_count()
                for backend in MATCHER_BACKENDS}


@functools.lru_cache(maxsize=8)
def vocabulary_for(tokenizer: Any, vocab_size: int | None = None) -> Vocabulary:
    return Vocabulary(tokenizer, vocab_size)


def describe_bytes(allowed: list[int]) -> str:
    """Allowed next bytes in words, runs folded: "'0'-'9', 'a'-'z', end of output"."""
    ascii_ids = [b for b in allowed if b < 128]
    words: list[str] = []
    start = 0
    while start < len(ascii_ids):
        end = start
        while end + 1 < len(ascii_ids) and ascii_ids[end + 1] == ascii_ids[end] + 1:
            end += 1
        low, high = chr(ascii_ids[start]), chr(ascii_ids[end])
        words.append(repr(low) if end - start < 2 else f"{low!r}-{high!r}")
        if end - start == 1:
            words.append(repr(high))
        start = end + 1
    if any(128 <= b < _BYTE_EOS for b in allowed):
        words.append("a non-ASCII character")
    if _BYTE_EOS in allowed:
        words.append("end of output")
    if not words:
        return "nothing (the matcher is stuck)"
    return ", ".join(words[:12]) + (f", … ({len(words)} groups)" if len(words) > 12 else "")


def _first_line(message: str) -> str:
    from playground.backends.xgrammar import backend_message

    return backend_message(message)


# ---- the matcher -------------------------------------------------------------------------


class Matcher:
    """A constraint compiled for one vocabulary and backend; `_session` starts a fresh parse."""

    def __init__(self, constraint: Constraint, vocabulary: Vocabulary, backend: Backend,
                 compiled: Any) -> None:
        self.constraint = constraint
        self.vocabulary = vocabulary
        self.backend = backend
        self._compiled = compiled

    @classmethod
    def create(cls, constraint: Constraint, tokenizer: Any = None,
               backend: Backend = "xgrammar", any_whitespace: bool = True) -> Matcher:
        """Compile `constraint`; ConstraintError with the backend's reason if it refuses it.

        `tokenizer`: None for text checks (a byte vocabulary), a `Vocabulary`, or a Hugging
        Face tokenizer.
        """
        if isinstance(tokenizer, Vocabulary):
            vocabulary = tokenizer
        elif tokenizer is None:
            vocabulary = Vocabulary.byte_level()
        else:
            vocabulary = vocabulary_for(tokenizer)
        if backend == "xgrammar":
            from playground.backends.xgrammar import to_grammar

            grammar = to_grammar(constraint, any_whitespace)
            try:
                compiled = vocabulary.xgrammar_compiler.compile_grammar(grammar)
            except Exception as exc:  # xgrammar raises RuntimeError with its reason
                raise ConstraintError(
                    f"{constraint.mode}: xgrammar rejects it: {_first_line(str(exc))}") from None
        elif backend == "guidance":
            import llguidance

            try:
                tags = (special_tag_ids(vocabulary.tokenizer)
                        if vocabulary.tokenizer is not None else None)
                compiled = guidance_grammar(constraint, any_whitespace, tags)
            except (ValueError, RuntimeError) as exc:
                raise ConstraintError(
                    f"{constraint.mode}: llguidance rejects it: {_first_line(str(exc))}"
                ) from None
            probe = llguidance.LLMatcher(vocabulary.llguidance_tokenizer, compiled, log_level=0)
            if probe.is_error():
                raise ConstraintError(f"{constraint.mode}: llguidance rejects it: "
                                      f"{_first_line(probe.get_error())}")
        else:
            raise ValueError(f"unknown backend {backend!r}; "
                             f"use one of {', '.join(MATCHER_BACKENDS)}")
        return cls(constraint, vocabulary, backend, compiled)

    def _session(self) -> _Session:
        if self.backend == "xgrammar":
            return _XgrammarSession(self._compiled, self.vocabulary)
        return _GuidanceSession(self._compiled, self.vocabulary)

    # ---- text --------------------------------------------------------------------------

    def test(self, text: str) -> StringTest:
        """Feed `text` to the matcher; where it stops, say what it expected instead."""
        if self.vocabulary.tokenizer is not None:
            return Matcher(self.constraint, Vocabulary.byte_level(), self.backend,
                           self._recompiled_for_bytes()).test(text)
        session = self._session()
        for index, char in enumerate(text):
            for byte in char.encode("utf-8"):
                if session.consume(byte):
                    continue
                expected = self._expected_after(text[:index])
                return StringTest(False, False, index, expected,
                                  f"character {index} ({char!r}) is not allowed here; "
                                  f"expected {expected}")
        complete = session.can_end()
        return StringTest(True, complete, None, None if complete else self._expected_after(text),
                          None if complete else "a viable prefix, but the constraint expects "
                                                "more")

    def viable_prefix(self, text: str) -> bool:
        return self.test(text).accepted

    def accepts(self, text: str) -> bool:
        return self.test(text).matches

    def _expected_after(self, prefix: str) -> str:
        session = self._session()
        for byte in prefix.encode("utf-8"):
            session.consume(byte)
        return describe_bytes(session.allowed_ids())

    def _recompiled_for_bytes(self) -> Any:
        return Matcher.create(self.constraint, None, self.backend)._compiled

    # ---- tokens ------------------------------------------------------------------------

    def replay(self, token_ids: list[int], check: list[list[int]] | None = None
               ) -> list[Step]:
        """Each token's allowed-set size before it, and whether the constraint allowed it.

        `check[i]`: more tokens to ask about at step i (answered in `Step.checked`).
        """
        session = self._session()
        vocab = self.vocabulary.unconstrained[self.backend]
        steps: list[Step] = []
        broken = False
        for index, token in enumerate(token_ids):
            if broken:
                steps.append(Step(token, None, vocab, False))
                continue
            mask = session.mask()
            asked = check[index] if check and index < len(check) else []
            checked = tuple(bool(0 <= t < len(mask) and mask[t]) for t in asked)
            accepted = session.consume(token)
            broken = not accepted
            steps.append(Step(token, int(mask.sum()), vocab, accepted, checked))
        return steps


    def masks(self, token_ids: list[int]) -> Iterator[tuple[Any, bool]]:
        """Before each token: the allowed-token mask (a 0/1 numpy array over the
        vocabulary), and whether the token was then accepted; ends after the first token
        refused (the doctor compares two backends' masks step by step)."""
        session = self._session()
        for token in token_ids:
            mask = session.mask()
            accepted = session.consume(token)
            yield mask, accepted
            if not accepted:
                return


    def walk(self, seed: int, max_tokens: int, skip: Any = (), end_chance: float = 0.3
             ) -> tuple[list[int], bool]:
        """A seeded random path through the constraint: at each step a token drawn
        uniformly from the allowed ones (never one in `skip`, e.g. special tokens), ending
        with chance `end_chance` wherever it may end. (token ids, whether it ended there).
        What a model with random weights writes; tests compare two backends along it."""
        import random

        import numpy as np

        rng = random.Random(seed)
        session = self._session()
        size = len(self.vocabulary.tokenizer) if self.vocabulary.tokenizer is not None \
            else _BYTE_EOS  # the bytes; the end token is ended by can_end
        skipped = np.asarray(sorted(skip), dtype=np.int64)
        ids: list[int] = []
        for _ in range(max_tokens):
            allowed = np.nonzero(session.mask()[:size])[0]
            allowed = allowed[~np.isin(allowed, skipped)]
            if session.can_end() and (len(allowed) == 0 or rng.random() < end_chance):
                return ids, True
            if len(allowed) == 0:
                return ids, False
            token = int(allowed[rng.randrange(len(allowed))])
            ids.append(token)
            session.consume(token)
        return ids, session.can_end()


class _Session:
    """One parse in progress on one backend."""

    def consume(self, token: int) -> bool: ...
    def mask(self) -> Any: ...
    def can_end(self) -> bool: ...

    def allowed_ids(self) -> list[int]:
        import numpy as np

        return np.nonzero(self.mask())[0].tolist()

    def allowed_count(self) -> int:
        return int(self.mask().sum())


def _bits(raw: Any, size: int) -> Any:
    import numpy as np

    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")[:size]


class _XgrammarSession(_Session):
    def __init__(self, compiled: Any, vocabulary: Vocabulary) -> None:
        import xgrammar as xgr

        self.size = vocabulary.size
        self.eos = vocabulary.eos
        self.matcher = xgr.GrammarMatcher(compiled)
        self.bitmask = xgr.allocate_token_bitmask(1, self.size)

    def consume(self, token: int) -> bool:
        return bool(self.matcher.accept_token(token))

    def mask(self) -> Any:
        self.matcher.fill_next_token_bitmask(self.bitmask)
        return _bits(self.bitmask.numpy().tobytes(), self.size)

    def can_end(self) -> bool:
        return bool(self.mask()[self.eos])


class _GuidanceSession(_Session):
    def __init__(self, grammar: str, vocabulary: Vocabulary) -> None:
        import llguidance

        self.size = vocabulary.size
        self.matcher = llguidance.LLMatcher(vocabulary.llguidance_tokenizer, grammar,
                                            log_level=0)

    def consume(self, token: int) -> bool:
        return bool(self.matcher.consume_token(token)) and not self.matcher.is_error()

    def mask(self) -> Any:
        return _bits(self.matcher.compute_bitmask(), self.size)

    def can_end(self) -> bool:
        return bool(self.matcher.is_accepting())
