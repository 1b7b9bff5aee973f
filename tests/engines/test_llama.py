"""playground's Llama module against transformers' LlamaForCausalLM on the same weights."""

import pytest

pytestmark = pytest.mark.slow

PROMPTS = ["Name a colour.", "Write a JSON object describing a cat."]


@pytest.fixture(scope="module")
def models(embedded_engine):
    import torch
    import transformers

    from playground.engines.llama import Llama

    folder = embedded_engine.folder
    ours = Llama.from_pretrained(folder)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return ours, theirs.eval(), embedded_engine.tokenizer


def _prompt_ids(tokenizer, prompt):
    import torch

    from playground.engines.base import SamplingSettings, encode_prompt

    return torch.tensor([encode_prompt(tokenizer, prompt, SamplingSettings())])


@pytest.mark.parametrize("prompt", PROMPTS)
def test_logits_match_transformers(models, prompt):
    import torch

    ours, theirs, tokenizer = models
    ids = _prompt_ids(tokenizer, prompt)
    with torch.inference_mode():
        logits, cache = ours(ids[:, :-1])
        stepped, _ = ours(ids[:, -1:], cache)  # the cached path: one token at a time
        expected = theirs(ids).logits
    assert torch.allclose(logits, expected[:, -2, :], atol=1e-3)
    assert torch.allclose(stepped, expected[:, -1, :], atol=1e-3)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_output_matches_transformers_generate(models, prompt):
    import torch

    ours, theirs, tokenizer = models
    ids = _prompt_ids(tokenizer, prompt)
    with torch.inference_mode():
        expected = theirs.generate(ids, max_new_tokens=24, do_sample=False, temperature=None,
                                   top_p=None, top_k=None)[0, ids.shape[1]:].tolist()
        logits, cache = ours(ids)
        produced: list[int] = []
        while len(produced) < len(expected):
            produced.append(int(logits.argmax()))
            logits, cache = ours(torch.tensor([produced[-1:]]), cache)
    assert produced == expected


def test_unsupported_options_are_refused():
    from playground.engines.llama import Llama

    config = {"vocab_size": 8, "hidden_size": 4, "num_hidden_layers": 1,
              "num_attention_heads": 1, "num_key_value_heads": 1, "intermediate_size": 8,
              "rms_norm_eps": 1e-5, "hidden_act": "gelu",
              "rope_parameters": {"rope_type": "default", "rope_theta": 1e4}}
    with pytest.raises(ValueError, match="hidden_act"):
        Llama(config)
