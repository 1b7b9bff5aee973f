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


def test_it_can_be_turned_off(monkeypatch):
    from playground.engines import vllm_masks

    monkeypatch.setenv(vllm_masks.ENV, "0")
    assert vllm_masks.install() is False
