"""vLLM's grammar masks filled for the whole batch in one call (xgrammar's
BatchGrammarMatcher, llguidance's parallel fill), inside vLLM's engine core. Off unless
PLAYGROUND_BATCH_MASKS=1: measured through the app's engine it did not beat vLLM's loop.

vLLM 0.26 fills the batch's token masks one request after another
(`StructuredOutputManager.grammar_bitmask`), in Python, while the GPU runs the forward
pass; it goes to threads of 16 requests only past 128 requests (and only where
max_num_seqs is above 128). Where the masks take longer than the forward pass, the step
waits for them. The libraries fill every mask in one call, on C++ threads without the GIL
(vLLM PR #51331, open, does the same with xgrammar).

vLLM has no registry of structured-output backends to add one to, so `install` replaces
that one method of the class in the engine core process (the playground's engine-core
entry, `vllm_engine.run_engine_core`, calls it before vLLM starts; an engine core run in
the app's own process, VLLM_ENABLE_V1_MULTIPROCESSING=0, must call it itself, as
tools/gpu/mask_profile.py does). Every case this does
not cover (another backend, speculative decoding, a reasoning parser) goes to vLLM's own
method, unchanged. Nothing of vLLM's source is copied or edited.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# Read in the engine core process (which inherits the environment): "1" turns the batched
# fill on. Off by default: through the app's engine on the H200 it measured no better than
# vLLM's own loop (docs/benchmarks.md).
ENV = "PLAYGROUND_BATCH_MASKS"
_original: Callable[..., Any] | None = None


def enabled() -> bool:
    return os.environ.get(ENV, "0") == "1"


def install() -> bool:
    """Fill vLLM's masks in one batched call from now on, in this process. True if so."""
    global _original
    if not enabled():
        return False
    from vllm.v1.structured_output import StructuredOutputManager

    if _original is None:
        _original = StructuredOutputManager.grammar_bitmask
        StructuredOutputManager.grammar_bitmask = _grammar_bitmask  # type: ignore[method-assign]
        log.info("grammar masks: filled for the whole batch in one call from %d requests "
                 "(xgrammar BatchGrammarMatcher, llguidance's parallel fill)", BATCH_FROM)
    return True


# Below this many requests vLLM's own loop is faster: on the H200 at 32 JSON requests
# xgrammar's batched fill took 2.58 ms a step against 1.56 one by one; at 128, 1.71
# against 3.95 (tools/gpu/mask_profile.py, docs/benchmarks.md).
BATCH_FROM = 64


def _grammar_bitmask(manager: Any, requests: dict[str, Any], request_ids: list[str],
                     spec_tokens: dict[str, list[int]]) -> Any:
    grammars = [requests[request_id].structured_output_request.grammar
                for request_id in request_ids]
    if (len(request_ids) < BATCH_FROM or manager.vllm_config.num_speculative_tokens
            or manager.reasoner_cls is not None or _library(grammars) is None):
        assert _original is not None
        return _original(manager, requests, request_ids, spec_tokens)
    return batch_bitmask(manager, [requests[i] for i in request_ids], grammars)


def _library(grammars: list[Any]) -> str | None:
    """Whose matchers these are, if all are one library's: vLLM's XgrammarGrammar holds an
    xgrammar `matcher`, its GuidanceGrammar an llguidance `ll_matcher`."""
    for attribute, library in (("matcher", "xgrammar"), ("ll_matcher", "guidance")):
        if all(hasattr(grammar, attribute) for grammar in grammars):
            return library
    return None


_fillers: dict[str, Any] = {}


def batch_bitmask(manager: Any, requests: list[Any], grammars: list[Any]) -> Any:
    """The batch's masks, row i for requests[i], as vLLM's own method gives them without
    speculative decoding: the grammar's mask where the request is constrained and its
    grammar not ended, every token allowed otherwise; filled by the matchers' library
    in one call, on its own threads."""
    if manager._grammar_bitmask is None:
        manager._grammar_bitmask = manager.backend.allocate_token_bitmask(
            manager.vllm_config.scheduler_config.max_num_seqs)
    bitmask = manager._grammar_bitmask
    filled, rows = [], []
    for row, (request, grammar) in enumerate(zip(requests, grammars, strict=True)):
        if manager.should_fill_bitmask(request) and not grammar.is_terminated():
            filled.append(grammar)
            rows.append(row)
        else:
            bitmask[row].fill_(manager._full_mask)
    if filled:
        library = _library(filled)
        if library == "xgrammar":
            if "xgrammar" not in _fillers:
                import xgrammar as xgr

                _fillers["xgrammar"] = xgr.BatchGrammarMatcher()
            _fillers["xgrammar"].batch_fill_next_token_bitmask(
                [grammar.matcher for grammar in filled], bitmask, rows)
        else:
            import llguidance
            import llguidance.torch

            if "guidance" not in _fillers:
                _fillers["guidance"] = llguidance.LLExecutor()
            llguidance.torch.fill_next_token_bitmask_par(
                _fillers["guidance"],
                [(grammar.ll_matcher, row) for grammar, row in zip(filled, rows, strict=True)],
                bitmask)
            for grammar in filled:
                grammar.check_error()  # as vLLM's fill does: a matcher's error is logged
    return bitmask[:len(requests)].numpy()
