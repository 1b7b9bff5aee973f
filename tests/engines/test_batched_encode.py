"""Texts encoded together from many threads (engines/batched_encode.py), and the vLLM
engine's tokenization check through it on Qwen2.5's tokenizer (no vLLM needed)."""

from __future__ import annotations

import random
import threading

import pytest

from playground.engines.batched_encode import BatchedEncoder
from tests.support import qwen_tokenizer


def run_threads(encoder: BatchedEncoder, texts: list[str]) -> list:
    found: list = [None] * len(texts)
    start = threading.Barrier(len(texts))

    def one(index: int) -> None:
        start.wait()
        try:
            found[index] = encoder.encode(texts[index])
        except BaseException as exc:
            found[index] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "a caller still waits"
    return found


def test_texts_arriving_together_are_encoded_in_fewer_calls_each_getting_its_own():
    calls: list[int] = []

    def encode_batch(texts: list[str]) -> list[list[int]]:
        calls.append(len(texts))
        return [[len(t), ord(t[0])] for t in texts]

    texts = [chr(65 + i % 26) * (i + 1) for i in range(40)]
    found = run_threads(BatchedEncoder(encode_batch, gather_s=0.05), texts)
    assert found == [[len(t), ord(t[0])] for t in texts]
    assert sum(calls) == 40 and len(calls) < 40


def test_an_error_reaches_every_caller_of_its_batch():
    def encode_batch(texts: list[str]) -> list[list[int]]:
        raise ValueError("broken tokenizer")

    found = run_threads(BatchedEncoder(encode_batch, gather_s=0.02), ["a", "b", "c"])
    assert all(isinstance(f, ValueError) for f in found)


@pytest.mark.parametrize("answer", [KeyboardInterrupt, lambda texts: [[1]]])
def test_no_caller_waits_on_when_the_batch_fails_oddly(answer):
    """A BaseException (a Rust panic in tokenizers is one) or too few encodings: every
    caller gets an error, none hangs."""
    def encode_batch(texts: list[str]) -> list[list[int]]:
        if isinstance(answer, type):
            raise answer()
        return answer(texts)

    found = run_threads(BatchedEncoder(encode_batch, gather_s=0.05), ["a", "b", "c"])
    assert all(isinstance(f, BaseException) for f in found), found


@pytest.mark.parametrize("seed", [0, 1])
def test_the_vllm_engines_check_encodes_as_the_tokenizer_does(seed):
    from playground.engines.vllm_engine import VllmEngine

    tokenizer = qwen_tokenizer()
    engine = VllmEngine("m", {"structured_outputs_config": {
        "backend": None, "disable_any_whitespace": False}})
    engine.tokenizer = tokenizer
    rng = random.Random(seed)
    texts = [tokenizer.decode([rng.randrange(150_000) for _ in range(rng.randrange(1, 80))])
             for _ in range(24)] + ['{"name": "Ada", "tags": ["x"]}', " Strongly agree"]
    found = run_threads(engine._text_ids, texts)
    assert found == [tokenizer.encode(t, add_special_tokens=False) for t in texts]
