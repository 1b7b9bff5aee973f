"""Whether a constrained output came out in the tokens the tokenizer itself would write.

A constraint can walk a model down a spelling no tokenizer produces: with SmolLM2 on the
CPU the choice "Strongly agree" came out as S|t|ro|n|gl|y| |a|gr|e|e, 12 tokens where the
tokenizer writes 3, each forced against the model's own choice (mean log-probability
−10.3 against −0.95 for the free run). The text fits the format, yet the model was made
to spell, which is where constrained outputs lose quality. The inspector shows it; this
says it, in the verdict, the API and batch totals.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from playground.engines.base import Engine

# Threads of their own: in asyncio's default pool the checks queued behind the verdicts'
# threads (each waiting for a validation worker). A batched encode (engines/batched_encode.py)
# holds each caller's thread until its batch is done, so a batch holds at most this many
# texts: 64 puts a 128-request burst's checks into two encodes (idle threads cost little).
_ENCODING = ThreadPoolExecutor(max_workers=64, thread_name_prefix="tokenization-check")


class Tokenization(BaseModel):
    model_config = ConfigDict(extra="forbid")

    canonical: bool
    tokens: int  # the output's tokens, without the end-of-sequence one
    canonical_tokens: int  # the tokens the tokenizer writes the same text in
    first_difference: int | None = None  # the first token (0-based) that differs


async def canonical_ids(engine: Engine, text: str) -> list[int] | None:
    """The ids the engine's tokenizer writes `text` in (None where it cannot say)."""
    return await asyncio.get_running_loop().run_in_executor(
        _ENCODING, engine.text_token_ids, text)


def compare(output_ids: list[int], canonical_ids: list[int],
            special_ids: frozenset[int] | set[int]) -> Tokenization:
    """The output's ids against the tokenizer's own encoding of its text (special tokens
    at the end, such as end-of-sequence, left out)."""
    ids = list(output_ids)
    while ids and ids[-1] in special_ids:
        ids.pop()
    first = next((i for i, (a, b) in enumerate(zip(ids, canonical_ids, strict=False))
                  if a != b), None)
    if first is None and len(ids) != len(canonical_ids):
        first = min(len(ids), len(canonical_ids))
    return Tokenization(canonical=first is None, tokens=len(ids),
                        canonical_tokens=len(canonical_ids), first_difference=first)


def warning(tokenization: Tokenization) -> str | None:
    """One line for the verdict area, or None where the tokenization is the tokenizer's."""
    if tokenization.canonical:
        return None
    return (f"Odd tokenization: the constraint made the model spell this output in "
            f"{tokenization.tokens} tokens where its tokenizer writes the same text in "
            f"{tokenization.canonical_tokens} (from token "
            f"{(tokenization.first_difference or 0) + 1}"
            f"), a path the model would not take by itself, so expect lower quality. Try a "
            f"leading space in the choices or pattern, or a prompt that names the options.")
