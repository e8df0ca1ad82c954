"""One decode step (one new token per row) for the Llama family, without transformers' forward.

A decode step of a small model on a CPU is short enough that the framework around the
arithmetic shows: transformers' forward builds a causal mask, an output dataclass and
keyword dictionaries, and goes through a dozen wrappers per layer, a fifth of a step of
SmolLM2-135M at 32 rows (docs/performance.md). This step
runs the same arithmetic as `LlamaDecoderLayer` and friends on the model's own modules and
weights, in the same order and dtypes, with q/k/v and gate/up as one prepacked oneDNN matmul
each (exact: each output column is the same dot product) and RoPE applied to q and k at once.
Same logits as the model's forward (tested), fewer and larger operations.

For model types whose layers are exactly that arithmetic: Llama, Mistral, Qwen2, Qwen3 (its
per-head q/k norms), with plain `nn.Linear` projections (not a LoRA-adapted model), full
attention (no sliding window shorter than the rollout) and the engine's preallocated cache;
`LeanDecoder.for_model` says None otherwise and the engine keeps the model's own forward.
"""

from __future__ import annotations

from typing import Any

import torch

from transformers.models.llama.modeling_llama import rotate_half

from r1.models import LLAMA_LIKE_TYPES
from r1.rollout.kernels import DECODE_ATTENTION, PACKED_MAX_ROWS
from r1.rollout.kvcache import is_preallocated

def _sliding_window(cfg: Any) -> tuple[bool, int | None]:
    """(whether some layer attends through a sliding window, its length)."""
    window = getattr(cfg, "sliding_window", None)
    types = getattr(cfg, "layer_types", None) or []
    return (cfg.model_type == "mistral" and window is not None) or "sliding_attention" in types, window


class _Linear:
    """y = x W^T + b for one or more `nn.Linear`s side by side (their outputs concatenated).
    Packed: one copy of their weights, concatenated and reordered once for oneDNN (bf16 on a
    CPU), made by `pack` and dropped by `release`. Unpacked: the modules' own weights, read at
    every call (nothing copied, always current)."""

    def __init__(self, modules: list[torch.nn.Linear], packed: bool):
        self.modules, self.packed = modules, packed
        self.weight = self.bias = None

    def pack(self) -> None:
        if not self.packed:
            return
        with torch.no_grad():
            w = torch.cat([m.weight for m in self.modules]) if len(self.modules) > 1 else self.modules[0].weight
            biases = [m.bias for m in self.modules]
            self.bias = None if biases[0] is None else torch.cat(biases) if len(biases) > 1 else biases[0]
            self.weight = torch.ops.mkldnn._reorder_linear_weight(w.detach(), 32)

    def release(self) -> None:
        self.weight = self.bias = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed and x.shape[0] <= PACKED_MAX_ROWS:  # where the packs give the plain numbers
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        outs = [torch.nn.functional.linear(x, m.weight, m.bias) for m in self.modules]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)


class _Layer:
    def __init__(self, layer: Any, packed: bool):
        attn, mlp = layer.self_attn, layer.mlp
        self.qkv = _Linear([attn.q_proj, attn.k_proj, attn.v_proj], packed)
        self.o = _Linear([attn.o_proj], packed)
        self.gate_up = _Linear([mlp.gate_proj, mlp.up_proj], packed)
        self.down = _Linear([mlp.down_proj], packed)
        self.act = mlp.act_fn
        self.ln1, self.ln2 = layer.input_layernorm, layer.post_attention_layernorm
        self.q_norm, self.k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
        self.scaling = attn.scaling

    def linears(self) -> tuple[_Linear, ...]:
        return self.qkv, self.o, self.gate_up, self.down


class LeanDecoder:
    """`step(tokens, positions, mask, cache)` -> next-token logits, as `model(...)` would give
    for one new token per row. `pack()` before sampling (after each weight change), `release()`
    to drop the packed copies."""

    def __init__(self, model: Any, packed: bool):
        base = model.model
        cfg = model.config
        self.embed, self.rotary = base.embed_tokens, base.rotary_emb
        self.norm = base.norm
        self.layers = [_Layer(layer, packed) for layer in base.layers[: cfg.num_hidden_layers]]
        self.head = _Linear([model.lm_head], packed)
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        uses_window, window = _sliding_window(cfg)
        self.window = window if uses_window else None
        self.packed_now = False

    def fits(self, length: int) -> bool:
        """Whether sequences of up to `length` tokens see full attention (no sliding window
        cuts them): the only attention this step runs."""
        return self.window is None or length <= self.window

    @classmethod
    def for_model(cls, model: Any, packed: bool = False) -> LeanDecoder | None:
        """A lean decoder for `model`, or None where its layers are not plain Llama-family
        arithmetic (see the module's docstring). `packed`: oneDNN-packed weight copies (a bf16
        model on a CPU, `hf.packed_linear_available`)."""
        cfg = getattr(model, "config", None)
        if getattr(cfg, "model_type", None) not in LLAMA_LIKE_TYPES or hasattr(model, "get_base_model"):
            return None
        # SDPA is the attention this step runs; another implementation (eager's matmuls, flex)
        # would give the model's forward other numbers
        if getattr(cfg, "_attn_implementation", None) not in ("sdpa", DECODE_ATTENTION):
            return None
        base = getattr(model, "model", None)
        if base is None or not all(hasattr(base, a) for a in ("embed_tokens", "rotary_emb", "norm", "layers")):
            return None
        if type(getattr(model, "lm_head", None)) is not torch.nn.Linear:
            return None
        uses_window, window = _sliding_window(cfg)
        if uses_window and window is None:
            return None
        for layer in base.layers:
            attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
            projections = [getattr(attn, n, None) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
            projections += [getattr(mlp, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
            if any(type(p) is not torch.nn.Linear for p in projections):
                return None
        return cls(model, packed)

    def linears(self) -> list[_Linear]:
        return [lin for layer in self.layers for lin in layer.linears()] + [self.head]

    def pack(self) -> None:
        if self.packed_now:
            return
        for lin in self.linears():
            lin.pack()
        self.packed_now = True

    def release(self) -> None:
        for lin in self.linears():
            lin.release()
        self.packed_now = False

    def step(self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None, cache: Any) -> torch.Tensor:
        """tokens, positions [b]; mask [b, L] (1 = attend, L = the cache's length after this
        token) or None for no padding; cache: the engine's preallocated cache. -> logits [b, V]."""
        self.pack()  # a no-op while the packs are current
        if not is_preallocated(cache):
            raise ValueError("the lean decoder writes into a preallocated KV cache (rollout.kvcache)")
        b, heads, kv, d = tokens.shape[0], self.heads, self.kv_heads, self.head_dim
        group = heads // kv
        x = self.embed(tokens)
        cos, sin = self.rotary(x, positions[:, None])  # [b, 1, d]
        attn_mask = None if mask is None else mask.bool()[:, None, None, :]
        for layer, kv_cache in zip(self.layers, cache.layers):
            h = layer.ln1(x)
            qkv = layer.qkv(h).view(b, heads + 2 * kv, d)
            if layer.q_norm is not None:
                q = layer.q_norm(qkv[:, :heads])
                k = layer.k_norm(qkv[:, heads : heads + kv])
                qk = torch.cat((q, k), dim=1)
            else:
                qk = qkv[:, : heads + kv]
            qk = qk * cos + rotate_half(qk) * sin
            keys, values = kv_cache.update(qk[:, heads:, None], qkv[:, heads + kv :, None])
            out = torch.nn.functional.scaled_dot_product_attention(
                qk[:, :heads].reshape(b, kv, group, d), keys, values, attn_mask=attn_mask, scale=layer.scaling,
            )
            x = x + layer.o(out.reshape(b, heads * d))
            h = layer.ln2(x)
            gate, up = layer.gate_up(h).chunk(2, dim=-1)
            x = x + layer.down(layer.act(gate) * up)
        return self.head(self.norm(x))
