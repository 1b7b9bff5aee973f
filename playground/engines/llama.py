"""A small Llama decoder in plain torch, for the CPU model's fast start.

transformers converts the GGUF and defines the weights' layout; this module runs those
same weights. Importing transformers' Llama code takes ~3 s on a 2-core machine (it pulls
in torch._dynamo, accelerate, scipy ...), more than everything else a second start does,
so the ready model is this module, pickled. `tests/engines/test_llama.py` checks that its logits
and greedy output match transformers' `LlamaForCausalLM` on the same weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from playground.errors import UnsupportedLlama

Cache = list[tuple[Tensor, Tensor]]


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor,
                past: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        batch, length, _ = x.shape
        q = self.q_proj(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=past is None and length > 1,
                                             enable_gqa=True)
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1)), (k, v)


class MLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        hidden, eps = config["hidden_size"], config["rms_norm_eps"]
        self.input_layernorm = RMSNorm(hidden, eps)
        self.self_attn = Attention(hidden, config["num_attention_heads"],
                                   config["num_key_value_heads"], _head_dim(config))
        self.post_attention_layernorm = RMSNorm(hidden, eps)
        self.mlp = MLP(hidden, config["intermediate_size"])

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor,
                past: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        attended, cache = self.self_attn(self.input_layernorm(x), cos, sin, past)
        x = x + attended
        return x + self.mlp(self.post_attention_layernorm(x)), cache


def check_config(config: dict[str, Any]) -> None:
    unsupported = {k: v for k, v in config.items()
                   if k in ("attention_bias", "mlp_bias") and v
                   or k == "hidden_act" and v != "silu"}
    rope = _rope(config)
    if unsupported or rope.get("rope_type", "default") != "default":
        raise UnsupportedLlama(f"unsupported Llama options: {unsupported or rope}")


class Llama(nn.Module):
    """`forward(ids, cache)` gives the last position's logits and the grown cache."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        check_config(config)
        self.config = config
        self.embed_tokens = nn.Embedding(config["vocab_size"], config["hidden_size"])
        self.layers = nn.ModuleList(Layer(config) for _ in range(config["num_hidden_layers"]))
        self.norm = RMSNorm(config["hidden_size"], config["rms_norm_eps"])
        self.lm_head = nn.Linear(config["hidden_size"], config["vocab_size"], bias=False)
        if config.get("tie_word_embeddings"):
            self.lm_head.weight = self.embed_tokens.weight
        self.register_buffer("inv_freq", _inv_freq(config), persistent=False)

    @classmethod
    def from_pretrained(cls, folder: Path) -> Llama:
        """From a transformers checkpoint folder (config.json + *.safetensors, one file or
        shards). Every weight must fit: a missing or unexpected one is an error."""
        from safetensors.torch import load_file

        config = json.loads((folder / "config.json").read_text())
        with torch.device("meta"):
            model = cls(config)
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no .safetensors weights in {folder}")
        weights = {name.removeprefix("model."): tensor
                   for file in files for name, tensor in load_file(file).items()}
        tied = bool(config.get("tie_word_embeddings"))
        if tied:
            weights.pop("lm_head.weight", None)
        missing, unexpected = model.load_state_dict(weights, strict=False, assign=True)
        missing = [name for name in missing if not (tied and name == "lm_head.weight")]
        if missing or unexpected:
            raise ValueError(f"{folder.name}: weights do not fit llama.py: missing "
                             f"{missing[:5] or 'none'}, unexpected {unexpected[:5] or 'none'}")
        if tied:
            model.lm_head.weight = model.embed_tokens.weight
        # Built on the meta device, so the rotary frequencies are computed again for real.
        model.inv_freq = _inv_freq(config)
        return model.eval()

    def forward(self, ids: Tensor, cache: Cache | None = None) -> tuple[Tensor, Cache]:
        start = cache[0][0].shape[2] if cache else 0
        positions = torch.arange(start, start + ids.shape[1], dtype=torch.float32)
        angles = torch.outer(positions, self.inv_freq)
        angles = torch.cat([angles, angles], dim=-1)
        cos, sin = angles.cos(), angles.sin()
        x = self.embed_tokens(ids)
        new_cache: Cache = []
        for index, layer in enumerate(self.layers):
            x, kv = layer(x, cos, sin, cache[index] if cache else None)
            new_cache.append(kv)
        return self.lm_head(self.norm(x[:, -1:, :]))[:, -1, :].float(), new_cache


def _head_dim(config: dict[str, Any]) -> int:
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


def _rope(config: dict[str, Any]) -> dict[str, Any]:
    """transformers 5 writes `rope_parameters`; older checkpoints a bare `rope_theta`."""
    return config.get("rope_parameters") or {"rope_type": "default",
                                             "rope_theta": config.get("rope_theta")}


def _inv_freq(config: dict[str, Any]) -> Tensor:
    head_dim, theta = _head_dim(config), _rope(config)["rope_theta"]
    return 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)

