"""vLLM's masks filled in one batched call (playground.engines.vllm_masks), without vLLM:
the rows equal those each request's matcher fills alone, as vLLM's own loop fills them."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.slow

SCHEMA = json.dumps({"type": "object", "properties": {"name": {"type": "string"},
                                                      "n": {"type": "integer"}},
                     "required": ["name", "n"]})


class Grammar:
    """What vLLM's XgrammarGrammar offers the fill: its matcher and whether it ended."""

    def __init__(self, matcher) -> None:
        self.matcher = matcher

    def is_terminated(self) -> bool:
        return self.matcher.is_terminated()


def _manager(xgr, vocab: int, constrained: set[int]):
    import torch

    return SimpleNamespace(
        _grammar_bitmask=None, _full_mask=torch.tensor(-1, dtype=torch.int32),
        backend=SimpleNamespace(allocate_token_bitmask=lambda n: xgr.allocate_token_bitmask(
            n, vocab)),
        vllm_config=SimpleNamespace(num_speculative_tokens=0,
                                    scheduler_config=SimpleNamespace(max_num_seqs=8)),
        should_fill_bitmask=lambda request: request in constrained)


def test_batched_masks_equal_each_matchers_own(embedded_engine):
    import xgrammar as xgr

    from playground.core.constraints import from_text
    from playground.engines import vllm_masks

    compiled, _ = embedded_engine.compile(from_text("json", SCHEMA))
    vocab = compiled.tokenizer_info.vocab_size
    matchers = [xgr.GrammarMatcher(compiled) for _ in range(5)]
    # Each at another point of the schema; the last one at its end.
    for matcher, text in zip(matchers, ['{"name": "', '{"name": "Al', '{"name": "Al", "n": ',
                                        "", '{"name": "Al", "n": 3}'], strict=True):
        assert matcher.accept_string(text)
    matchers[4].accept_token(sorted(embedded_engine.stop_ids)[0])
    assert matchers[4].is_terminated()
    requests = list(range(5))
    constrained = {0, 1, 2, 4}  # request 3 is not constrained yet (vLLM: reasoning)
    manager = _manager(xgr, vocab, constrained)
    got = vllm_masks.batch_bitmask(manager, requests, [Grammar(m) for m in matchers])
    assert got.shape == (5, (vocab + 31) // 32)
    for row, matcher in enumerate(matchers):
        expected = xgr.allocate_token_bitmask(1, vocab)
        if row in constrained and not matcher.is_terminated():
            matcher.fill_next_token_bitmask(expected, 0)
        else:
            expected.fill_(-1)
        assert (got[row] == expected[0].numpy()).all(), row
    assert not (got[1] == -1).all()  # a real mask, not every token


def test_it_is_off_unless_asked_for(monkeypatch):
    from playground.engines import vllm_masks

    monkeypatch.delenv(vllm_masks.ENV, raising=False)
    assert vllm_masks.install() is False
    monkeypatch.setenv(vllm_masks.ENV, "0")
    assert vllm_masks.install() is False


class GuidanceGrammar:
    """What vLLM's GuidanceGrammar offers the fill."""

    def __init__(self, matcher) -> None:
        self.ll_matcher = matcher
        self.errors_checked = 0

    def is_terminated(self) -> bool:
        return self.ll_matcher.is_stopped()

    def check_error(self) -> None:
        self.errors_checked += 1


def test_batched_guidance_masks_equal_each_matchers_own(embedded_engine):
    import llguidance
    import llguidance.hf
    import llguidance.torch
    import xgrammar as xgr

    from playground.backends.guidance import guidance_grammar
    from playground.core.constraints import from_text
    from playground.engines import vllm_masks

    tokenizer = embedded_engine.tokenizer
    vocab = len(tokenizer)
    ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer, vocab)
    grammar = guidance_grammar(from_text("json", SCHEMA))
    grammars = [GuidanceGrammar(llguidance.LLMatcher(ll_tokenizer, grammar, log_level=0))
                for _ in range(3)]
    for item, text in zip(grammars, ['{"name": "', "", '{"name": "Al", "n": '], strict=True):
        item.ll_matcher.consume_tokens(tokenizer.encode(text, add_special_tokens=False))
    manager = _manager(xgr, vocab, {0, 1, 2})
    got = vllm_masks.batch_bitmask(manager, [0, 1, 2], grammars)
    for row, item in enumerate(grammars):
        expected = llguidance.torch.allocate_token_bitmask(1, vocab)
        llguidance.torch.fill_next_token_bitmask(item.ll_matcher, expected, 0)
        assert (got[row] == expected[0].numpy()).all(), row
        assert item.errors_checked == 1
    assert not (got[0] == -1).all()


def test_grammars_of_another_library_or_mixed_go_to_vllms_own_loop():
    from playground.engines import vllm_masks

    class Plain:  # a grammar of neither library (outlines, say)
        pass

    assert vllm_masks._library([Plain()]) is None
    assert vllm_masks._library([GuidanceGrammar(None)]) == "guidance"
    assert vllm_masks._library([GuidanceGrammar(None), Grammar(None)]) is None
