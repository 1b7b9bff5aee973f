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
from torch.ao.nn.quantized.dynamic import Linear as _DYNAMIC_LINEAR

from playground.errors import UnsupportedLlama


class KV:
    """One layer's keys and values for one sequence ([1, kv_heads, length, head_dim]), in
    buffers with room to grow. A new token is written in place: `torch.cat` of the whole
    cache every step and layer copied it and allocated a new one, which on 2 cores made a
    decode step 23-27 ms where the same step over a fixed cache took 17 ms, and a second
    row in the batch cost 6-9 ms more instead of 2-3."""

    __slots__ = ("keys", "values", "length")
    ROOM = 128  # positions added at a time (each sequence: 30 layers x 2 x 3 heads x 64)

    def __init__(self, keys: Tensor, values: Tensor) -> None:
        self.length = 0
        self.keys = self.values = keys.new_empty(*keys.shape[:2], 0, keys.shape[3])
        self.extend(keys, values)

    def extend(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Append positions; all keys and values so far, as views (no copy)."""
        end = self.length + keys.shape[2]
        if end > self.keys.shape[2]:
            shape = (*keys.shape[:2], end + self.ROOM, keys.shape[3])
            grown_keys, grown_values = keys.new_empty(shape), keys.new_empty(shape)
            grown_keys[:, :, :self.length] = self.keys[:, :, :self.length]
            grown_values[:, :, :self.length] = self.values[:, :, :self.length]
            self.keys, self.values = grown_keys, grown_values
        self.keys[:, :, self.length:end] = keys
        self.values[:, :, self.length:end] = values
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def copy(self) -> KV:
        """A cache of its own with the same positions (a step grows a cache in place)."""
        return KV(self.keys[:, :, :self.length], self.values[:, :, :self.length])


Cache = list[KV]  # one per layer; a step grows it in place


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
                past: KV | None) -> tuple[Tensor, KV]:
        batch, length, _ = x.shape
        q, k, v = self._qkv(x, cos, sin)
        if past is None:
            past = KV(k, v)
            keys, values = k, v
        else:
            keys, values = past.extend(k, v)
        out = F.scaled_dot_product_attention(q, keys, values,
                                             is_causal=past.length == length > 1,
                                             enable_gqa=True)
        return project(self.o_proj, out.transpose(1, 2).reshape(batch, length, -1)), past

    def step(self, x: Tensor, cos: Tensor, sin: Tensor, pasts: list[KV]
             ) -> tuple[Tensor, list[KV]]:
        """One new token for each of several sequences (x: [rows, 1, hidden]), each with
        its own cache: the projections read the weights once for all rows; attention runs
        per row over that row's own keys, so no row is padded to another's length."""
        q, k, v = self._qkv(x, cos, sin)
        outs = []
        for row, past in enumerate(pasts):
            keys, values = past.extend(k[row:row + 1], v[row:row + 1])
            outs.append(F.scaled_dot_product_attention(q[row:row + 1], keys, values,
                                                       enable_gqa=True))
        out = torch.cat(outs).transpose(1, 2).reshape(x.shape[0], 1, -1)
        return project(self.o_proj, out), pasts

    def _qkv(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch, length, _ = x.shape
        q, k, v = project_all((self.q_proj, self.k_proj, self.v_proj), x)
        q = q.view(batch, length, self.heads, self.head_dim)
        k = k.view(batch, length, self.kv_heads, self.head_dim)
        v = v.view(batch, length, self.kv_heads, self.head_dim)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        return _rotate(q, cos, sin), _rotate(k, cos, sin), v


class MLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = project_all((self.gate_proj, self.up_proj), x)
        return project(self.down_proj, F.silu(gate) * up)


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
                past: KV | None) -> tuple[Tensor, KV]:
        attended, cache = self.self_attn(self.input_layernorm(x), cos, sin, past)
        x = x + attended
        return x + self.mlp(self.post_attention_layernorm(x)), cache

    def step(self, x: Tensor, cos: Tensor, sin: Tensor, pasts: list[KV]
             ) -> tuple[Tensor, list[KV]]:
        attended, caches = self.self_attn.step(self.input_layernorm(x), cos, sin, pasts)
        x = x + attended
        return x + self.mlp(self.post_attention_layernorm(x)), caches


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
        start = cache[0].length if cache else 0
        cos, sin = self._rotary(torch.arange(start, start + ids.shape[1],
                                             dtype=torch.float32))
        x = self.embed_tokens(ids)
        new_cache: Cache = []
        for index, layer in enumerate(self.layers):
            x, kv = layer(x, cos, sin, cache[index] if cache else None)
            new_cache.append(kv)
        return project(self.lm_head, self.norm(x[:, -1:, :]))[:, -1, :].float(), new_cache

    def _rotary(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """cos and sin of the rotary angles at `positions`: [positions, head_dim]."""
        angles = torch.outer(positions, self.inv_freq)
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos(), angles.sin()

    def step(self, tokens: list[int], caches: list[Cache]) -> tuple[Tensor, list[Cache]]:
        """One decode step for several sequences at once: each row's next token and its
        own cache (of any length) in; the rows' logits ([rows, vocab]) and the caches,
        grown in place, out.
        Each row's logits are those `forward` gives it alone (tests/engines/test_llama.py):
        the linear layers see a row as they would see it by itself (`project`)."""
        positions = torch.tensor([cache[0].length for cache in caches],
                                 dtype=torch.float32)
        cos, sin = (part[:, None, None, :] for part in self._rotary(positions))  # per row
        x = self.embed_tokens(torch.tensor(tokens)[:, None])
        for index, layer in enumerate(self.layers):
            x, _ = layer.step(x, cos, sin, [cache[index] for cache in caches])
        return project(self.lm_head, self.norm(x))[:, -1, :].float(), caches


def project(linear: nn.Module, x: Tensor) -> Tensor:
    """`linear(x)`, where a dynamically quantized layer quantizes each row on its own.

    PyTorch's dynamic int8 Linear quantizes its whole input with one scale, from the
    input's minimum and maximum: in a batch, one sequence's activations would change how
    another's are rounded, so its output would depend on who else is decoding (measured:
    up to 0.3 apart on a 576-wide layer). Each row is mapped onto [0, 1] first (its own
    minimum and range), so every batch has the same scale, and mapped back after:
    W·x = range·W·x' + minimum·W·1. The int8 kernel accumulates in integers, so a row's
    result is then exactly what it is alone."""
    return project_all((linear,), x)[0]


def project_all(linears: tuple[nn.Module, ...], x: Tensor) -> list[Tensor]:
    """`project` of one input through several layers (q, k and v; gate and up), the
    input's mapping computed once for all of them: its few small ops ran for each of a
    step's 210 layers (in a cProfile of a decode on 2 cores, 16 % of the time was
    `project`'s own)."""
    if not isinstance(linears[0], _DYNAMIC_LINEAR):
        return [linear(x) for linear in linears]
    low = x.amin(-1, keepdim=True)
    span = x.amax(-1, keepdim=True) - low
    span = torch.where(span > 0, span, torch.ones_like(span))
    mapped = (x - low) / span
    return [linear(mapped) * span + low * _row_sums(linear) for linear in linears]


def _row_sums(linear: nn.Module) -> Tensor:
    """W·1 of a quantized layer's int8 weights, as its kernel sees them (kept on it)."""
    sums = getattr(linear, "_playground_row_sums", None)
    if sums is None:
        sums = linear.weight().dequantize().sum(1)
        linear._playground_row_sums = sums
    return sums


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

