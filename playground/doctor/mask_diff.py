"""Where two backends' masks differ, token by token: a run's output tokens replayed through
xgrammar and llguidance for the same constraint and tokenizer, on the CPU.

The conformance table (`playground.doctor.conformance`) says which keywords a backend lets
through; this says where, in one output, the two backends allowed different tokens: at
each step the sizes of both allowed sets and a few tokens only one of them allows. A step
whose sets agree is not reported, nor anything after the first token either backend
refuses (that step is, with who refused). The inspector's "compare backends" calls
`compare_masks` with its run's constraint, tokenizer and output ids
(`playground.run.inspection`); `python -m playground conformance --mask-diff SCHEMA
--text TEXT` calls `mask_diff` with the CPU model's tokenizer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from playground.backends.names import MATCHER_BACKENDS, Backend
from playground.core.constraints import Constraint
from playground.judging.matcher import Matcher

EXAMPLES = 5
BYTE_END = 256  # the end token of the matcher's byte vocabulary (no tokenizer)


@dataclass(frozen=True)
class MaskStep:
    """One step where the backends' allowed sets differ, or where one refused the token."""

    step: int  # index of the token in the output
    token_id: int
    token: str  # its text
    prefix: str  # the output before it (its end, for long outputs)
    allowed: dict[str, int]  # per backend, how many tokens it allowed here
    only: dict[str, int]  # per backend, how many tokens only it allowed
    examples: dict[str, list[str]] = field(default_factory=dict)  # a few of those, as text
    accepted: dict[str, bool] = field(default_factory=dict)  # whether each took the token

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "token_id": self.token_id, "token": self.token,
                "prefix": self.prefix, "allowed": self.allowed, "only": self.only,
                "examples": self.examples, "accepted": self.accepted}


def _texts(tokenizer: Any, ids: list[int]) -> list[str]:
    """Each id as text, special tokens included (an end token shows as itself); None: the
    matcher's byte vocabulary, whose 256 is the end."""
    if tokenizer is None:
        return ["<end>" if i == BYTE_END else bytes([i]).decode("utf-8", "replace")
                for i in ids]
    return list(tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False))


def _decode(tokenizer: Any, ids: list[int]) -> str:
    if tokenizer is None:
        return bytes(i for i in ids if i < BYTE_END).decode("utf-8", "replace")
    return str(tokenizer.decode(ids, skip_special_tokens=False))


@dataclass(frozen=True)
class Comparison:
    """The steps where the masks differ along one output, and how much of it was compared:
    `compared` of `tokens` steps (fewer when a backend refused a token or time ran out)."""

    backends: tuple[Backend, Backend]
    steps: list[MaskStep]
    compared: int
    tokens: int
    out_of_time: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"backends": list(self.backends), "steps": [s.as_dict() for s in self.steps],
                "compared": self.compared, "tokens": self.tokens,
                "out_of_time": self.out_of_time}


def compare_masks(constraint: Constraint, tokenizer: Any, token_ids: list[int],
                  backends: tuple[Backend, Backend] = MATCHER_BACKENDS,
                  any_whitespace: bool = True, examples: int = EXAMPLES,
                  time_limit_s: float | None = None) -> Comparison:
    """`mask_diff` with its bookkeeping: how many steps were compared, and whether
    `time_limit_s` (the seconds the replay may take, compiles included) ran out first."""
    deadline = None if time_limit_s is None else time.perf_counter() + time_limit_s
    found: list[MaskStep] = []
    compared, out_of_time = 0, False
    for step, difference in _replay(constraint, tokenizer, token_ids, backends,
                                    any_whitespace, examples):
        compared = step + 1
        if difference is not None:
            found.append(difference)
        if deadline is not None and time.perf_counter() > deadline and \
                compared < len(token_ids):
            out_of_time = True
            break
    return Comparison(backends, found, compared, len(token_ids), out_of_time)


def mask_diff(constraint: Constraint, tokenizer: Any, token_ids: list[int],
              backends: tuple[Backend, Backend] = MATCHER_BACKENDS,
              examples: int = EXAMPLES, any_whitespace: bool = True) -> list[MaskStep]:
    """Each step of `token_ids` where the two backends' masks differ, and the step where
    either refuses its token (the last reported). `tokenizer`: a Hugging Face tokenizer,
    or None for the byte vocabulary (ids are bytes, 256 the end). ConstraintError where a
    backend refuses the constraint itself: then there is no mask to compare."""
    return [found for _, found in _replay(constraint, tokenizer, token_ids, backends,
                                          any_whitespace, examples) if found is not None]


def _replay(constraint: Constraint, tokenizer: Any, token_ids: list[int],
            backends: tuple[Backend, Backend], any_whitespace: bool, examples: int
            ) -> Iterator[tuple[int, MaskStep | None]]:
    """Each step compared: (its index, how the masks differ there, or None)."""
    import numpy as np

    first, second = (Matcher.create(constraint, tokenizer, backend, any_whitespace)
                     for backend in backends)
    pairs = zip(first.masks(token_ids), second.masks(token_ids), strict=False)
    for step, ((mask_a, took_a), (mask_b, took_b)) in enumerate(pairs):
        a, b = mask_a.astype(bool), mask_b.astype(bool)
        size = min(len(a), len(b))  # a backend may pad its mask past the vocabulary
        a, b = a[:size], b[:size]
        if np.array_equal(a, b) and took_a == took_b:
            yield step, None
            if not took_a:
                return  # both refused it: the replay ends, with no difference to show
            continue
        only = {backends[0]: np.nonzero(a & ~b)[0], backends[1]: np.nonzero(b & ~a)[0]}
        token = token_ids[step]
        prefix = _decode(tokenizer, token_ids[:step])
        yield step, MaskStep(
            step, token, _texts(tokenizer, [token])[0], prefix[-80:],
            {backends[0]: int(a.sum()), backends[1]: int(b.sum())},
            {name: len(ids) for name, ids in only.items()},
            {name: _texts(tokenizer, ids[:examples].tolist()) for name, ids in only.items()},
            {backends[0]: took_a, backends[1]: took_b})
        if not (took_a and took_b):
            return
