"""vLLM's grammar masks filled for the whole batch in one call (xgrammar's
BatchGrammarMatcher), inside vLLM's engine core.

vLLM 0.26 fills the batch's token masks one request after another
(`StructuredOutputManager.grammar_bitmask`), in Python, while the GPU runs the forward
pass; it goes to threads only past 128 requests. Where the masks take longer than the
forward pass, the step waits for them: at 128 JSON-constrained requests on an H200 a
constrained request got less than half the free one's throughput. xgrammar's
BatchGrammarMatcher fills every mask in one call, on C++ threads without the GIL (vLLM
PR #51331, open, does the same).

vLLM has no registry of structured-output backends to add one to, so `install` replaces
that one method of the class in the engine core process (the playground's engine-core
entry, `vllm_engine.run_engine_core`, calls it before vLLM starts). Every case this does
not cover (another backend, speculative decoding, a reasoning parser) goes to vLLM's own
method, unchanged. Nothing of vLLM's source is copied or edited.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# Set by the engine, read in the engine core process (which inherits the environment):
# "0" leaves vLLM's own mask filling alone.
ENV = "PLAYGROUND_BATCH_MASKS"
_original: Callable[..., Any] | None = None


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0"


def install() -> bool:
    """Fill vLLM's masks in one batched call from now on, in this process. True if so."""
    global _original
    if not enabled():
        return False
    from vllm.v1.structured_output import StructuredOutputManager

    if _original is None:
        _original = StructuredOutputManager.grammar_bitmask
        StructuredOutputManager.grammar_bitmask = _grammar_bitmask  # type: ignore[method-assign]
        log.info("grammar masks: filled for the whole batch in one call "
                 "(xgrammar BatchGrammarMatcher)")
    return True


def _grammar_bitmask(manager: Any, requests: dict[str, Any], request_ids: list[str],
                     spec_tokens: dict[str, list[int]]) -> Any:
    grammars = [requests[request_id].structured_output_request.grammar
                for request_id in request_ids]
    if (not request_ids or manager.vllm_config.num_speculative_tokens
            or manager.reasoner_cls is not None
            or not all(hasattr(grammar, "matcher") for grammar in grammars)):
        assert _original is not None
        return _original(manager, requests, request_ids, spec_tokens)
    return batch_bitmask(manager, [requests[i] for i in request_ids], grammars)


_batch_matcher: Any = None


def batch_bitmask(manager: Any, requests: list[Any], grammars: list[Any]) -> Any:
    """The batch's masks, row i for requests[i], as vLLM's own method gives them without
    speculative decoding: the grammar's mask where the request is constrained and its
    grammar not ended, every token allowed otherwise."""
    global _batch_matcher
    import xgrammar as xgr

    if _batch_matcher is None:
        _batch_matcher = xgr.BatchGrammarMatcher()
    if manager._grammar_bitmask is None:
        manager._grammar_bitmask = manager.backend.allocate_token_bitmask(
            manager.vllm_config.scheduler_config.max_num_seqs)
    bitmask = manager._grammar_bitmask
    matchers, rows = [], []
    for row, (request, grammar) in enumerate(zip(requests, grammars, strict=True)):
        if manager.should_fill_bitmask(request) and not grammar.is_terminated():
            matchers.append(grammar.matcher)
            rows.append(row)
        else:
            bitmask[row].fill_(manager._full_mask)
    if matchers:
        _batch_matcher.batch_fill_next_token_bitmask(matchers, bitmask, rows)
    return bitmask[:len(requests)].numpy()
