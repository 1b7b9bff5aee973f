"""Continuous batching for the CPU engine: every running sequence decodes in one step.

A small model on a CPU is bound by reading its weights (SmolLM2-135M in int8: ~135 MB a
step), so a step that carries several sequences costs little more than one. Sequences
join between steps (each prefilled alone, so a long prompt never pads another) and leave
when they end. Each keeps its own constraint (an xgrammar matcher; the batch's masks are
filled into one bitmask and applied at once), sampling settings, seed, stop strings and
cancellation. `max_batch` caps the sequences in a step; the others wait their turn.

Memory: each sequence holds its own key/value cache, grown in place (llama.KV, 128
positions of room at a time), so the caches of a step are at most `max_batch` × (prompt +
max tokens + 128) positions, plus one copy of the last prompt's cache while the decoder
runs. Nothing is padded. All of it runs on the engine's one model thread.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

from playground.engines.base import SamplingSettings, TokenDist

log = logging.getLogger(__name__)


@dataclass
class Sequence:
    """One request's decoding: what it was given, and where it stands."""

    prompt_ids: list[int]
    compiled: Any  # xgrammar's CompiledGrammar, or None for free text
    settings: SamplingSettings
    on_token: Callable[[int], None]
    cancelled: threading.Event
    dists: list[TokenDist] | None = None  # each step's distribution before the mask
    done: Future = field(default_factory=Future)  # (output ids, finish reason)
    out: list[int] = field(default_factory=list)
    text: str = ""
    matcher: Any = None
    generator: Any = None
    logits: Any = None  # the next step's logits, [vocab]
    cache: Any = None


class BatchDecoder:
    """Runs the sequences given to `submit` on `executor` (the model's one thread), all
    of them in each step, until none is left."""

    def __init__(self, model: Any, torch: Any, stop_ids: set[int],
                 decode: Callable[[list[int]], str], executor: Executor, max_batch: int,
                 closed: threading.Event) -> None:
        self.model, self.torch, self.stop_ids, self.decode = model, torch, stop_ids, decode
        self.executor, self.max_batch, self.closed = executor, max_batch, closed
        self.batched = hasattr(model, "step")  # llama.py; transformers' models step alone
        self.waiting: deque[Sequence] = deque()
        self.lock = threading.Lock()
        self.running = False
        self.largest_step = 0  # the most sequences one step carried (tests read it)
        # The last prompt prefilled, its logits and a copy of its cache: both sides of a
        # click send the same prompt, a moment apart, so the second is not prefilled again.
        self.last_prefill: tuple[list[int], Any, Any] | None = None
        self.prefills = 0  # prompts prefilled, shared ones not counted (tests read it)

    def submit(self, sequence: Sequence) -> Future:
        with self.lock:
            self.waiting.append(sequence)
            if not self.running:
                self.running = True
                self.executor.submit(self._loop)
        return sequence.done

    def close(self) -> None:
        """The server is stopping: running sequences end at their next step ("cancelled",
        `closed` is set by the engine), waiting ones at once."""
        with self.lock:
            waiting = list(self.waiting)
            self.waiting.clear()
        for sequence in waiting:
            if not sequence.done.done():
                sequence.done.set_result((sequence.out, "cancelled"))

    def _loop(self) -> None:
        active: list[Sequence] = []
        try:
            while True:
                with self.lock:
                    room = max(1, self.max_batch) - len(active)
                    joining = [self.waiting.popleft()
                               for _ in range(max(0, min(room, len(self.waiting))))]
                    if not active and not joining:
                        self.running = False
                        self.last_prefill = None  # up to a whole context's cache
                        return
                for sequence in joining:
                    if self._start(sequence):
                        active.append(sequence)
                active = self._step(active)
        except BaseException as exc:  # every sequence in hand learns of it; none hangs
            log.exception("the CPU decode loop failed")
            with self.lock:
                stranded = active + list(self.waiting)
                self.waiting.clear()
                self.running = False
                self.last_prefill = None
            for sequence in stranded:
                if not sequence.done.done():
                    sequence.done.set_exception(exc)

    def _start(self, sequence: Sequence) -> bool:
        """Prefill one joining sequence alone; False if it failed (its future says why)."""
        import xgrammar as xgr

        torch = self.torch
        try:
            if sequence.compiled is not None:
                sequence.matcher = xgr.GrammarMatcher(sequence.compiled)
            if sequence.settings.seed is not None:
                sequence.generator = torch.Generator().manual_seed(sequence.settings.seed)
            sequence.logits, sequence.cache = self._prefill(sequence.prompt_ids)
            return True
        except Exception as exc:  # this sequence fails alone; the batch goes on
            log.exception("a CPU sequence could not start")
            sequence.done.set_exception(exc)
            return False

    def _prefill(self, ids: list[int]) -> tuple[Any, Any]:
        """The prompt's last logits and a cache of its own."""
        last = self.last_prefill
        if self.batched and last is not None and last[0] == ids:
            return last[1], [kv.copy() for kv in last[2]]
        with self.torch.inference_mode():
            logits, cache = self.model(self.torch.tensor([ids]))
        self.prefills += 1
        if self.batched:  # llama.py's cache copies; transformers' has no such copy
            self.last_prefill = (ids, logits[0], [kv.copy() for kv in cache])
        return logits[0], cache

    def _step(self, active: list[Sequence]) -> list[Sequence]:
        """Pick each sequence's next token under its own mask; the ones still going decode
        it together. Returns them."""
        import xgrammar as xgr

        torch = self.torch
        self.largest_step = max(self.largest_step, len(active))
        going = [s for s in active if not self._ended(s, "cancelled", s.cancelled.is_set()
                                                      or self.closed.is_set())]
        if not going:
            return []
        logits = torch.stack([s.logits for s in going])
        unmasked = {row: torch.log_softmax(logits[row].float(), dim=-1)  # for the inspector
                    for row, s in enumerate(going) if s.dists is not None}
        constrained = [row for row, s in enumerate(going) if s.matcher is not None]
        if constrained:
            vocab = going[constrained[0]].compiled.tokenizer_info.vocab_size
            bitmask = xgr.allocate_token_bitmask(len(going), vocab)
            for row in constrained:
                going[row].matcher.fill_next_token_bitmask(bitmask, row)
            xgr.apply_token_bitmask_inplace(logits, bitmask, indices=constrained)
        continuing = []
        for row, sequence in enumerate(going):
            token = pick(torch, logits[row], sequence.settings, sequence.generator)
            if sequence.dists is not None:
                sequence.dists.append(distribution(unmasked[row], token))
            sequence.out.append(token)
            sequence.on_token(token)
            if not self._finished(sequence, token):
                if sequence.matcher is not None and not sequence.matcher.accept_token(token):
                    raise RuntimeError(f"xgrammar refused token {token} it had allowed")
                continuing.append(sequence)
        if continuing:
            with torch.inference_mode():
                rows, caches = self.forward_rows([s.out[-1] for s in continuing],
                                             [s.cache for s in continuing])
            for row, sequence in enumerate(continuing):
                sequence.logits, sequence.cache = rows[row], caches[row]
        return continuing

    def forward_rows(self, tokens: list[int], caches: list[Any]) -> tuple[Any, list[Any]]:
        if self.batched:
            return self.model.step(tokens, caches)
        torch = self.torch
        outs = [self.model(torch.tensor([[token]]), cache) for token, cache in
                zip(tokens, caches, strict=True)]
        return torch.cat([logits for logits, _ in outs]), [cache for _, cache in outs]

    def _finished(self, sequence: Sequence, token: int) -> bool:
        if self._ended(sequence, "stop", token in self.stop_ids):
            return True
        stops = sequence.settings.stop
        if stops:
            before, sequence.text = len(sequence.text), self.decode(sequence.out)
            # A new occurrence must end inside the text this token added.
            if self._ended(sequence, "stop", any(
                    stop in sequence.text[max(0, before - len(stop) + 1):] for stop in stops)):
                return True
        return self._ended(sequence, "length",
                           len(sequence.out) >= sequence.settings.max_tokens)

    def _ended(self, sequence: Sequence, reason: str, ended: bool) -> bool:
        if ended:
            sequence.cache = sequence.logits = sequence.matcher = None  # its memory goes now
            sequence.done.set_result((sequence.out, reason))
        return ended


def distribution(logprobs: Any, token: int, k: int = 5) -> TokenDist:
    """The top `k` of a step's log-probabilities, and the chosen token's value and rank."""
    values, order = logprobs.topk(k)
    chosen = logprobs[token]
    return TokenDist(list(zip(order.tolist(), values.tolist(), strict=True)), float(chosen),
                     int((logprobs > chosen).sum()) + 1)


def pick(torch: Any, logits: Any, settings: SamplingSettings, generator: Any) -> int:
    """The next token: argmax at temperature 0, else nucleus (top-p) sampling."""
    if settings.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / settings.temperature, dim=-1)
    if settings.top_p < 1:
        probs = nucleus(probs, settings.top_p)
    return int(torch.multinomial(probs, 1, generator=generator))


def nucleus(probs: Any, top_p: float) -> Any:
    """`probs` with all but the smallest set of most probable tokens whose mass reaches
    `top_p` set to 0 (the most probable token always stays).

    Not transformers' TopPLogitsWarper: the same rule, but it sums in ascending order and
    breaks ties the other way, so a seed would no longer give the same output. On 1,200
    bf16-rounded random logits (bf16 logits tie often) its mask differed from this one
    691 times and the seeded draw 2 times; on 2,400 fp32 ones, 31 masks, no draw.
    """
    sorted_probs, order = probs.sort(descending=True)
    drop = sorted_probs.cumsum(-1) - sorted_probs >= top_p
    return probs.scatter(0, order[drop], 0.0)
