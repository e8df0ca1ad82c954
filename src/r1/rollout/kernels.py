"""The decode step's CPU fast paths on a transformers model, with the same numbers as its
own forward: grouped-query attention for one query token without repeated KV heads
(`use_decode_attention`), and linear weights prepacked once into oneDNN's bf16 layout
(`pack_linears`)."""

from __future__ import annotations

from typing import Any

import torch


def _decode_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, **kwargs: Any):
    """SDPA, except that one query token against grouped KV heads is packed as
    [b, kv_heads, group, d] (no `enable_gqa`, no repeated KV). transformers takes the
    `enable_gqa` path whenever there is no padding mask, and on a CPU that kernel is several
    times slower for a decode step (docs/performance.md)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if query.shape[2] != 1 or groups == 1 or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    b, heads, _, dim = query.shape
    packed = query.reshape(b, heads // groups, groups, dim)
    out = torch.nn.functional.scaled_dot_product_attention(
        packed, key, value, attn_mask=attention_mask, scale=kwargs.get("scaling"),
    )
    return out.reshape(b, 1, heads, value.shape[-1]), None


DECODE_ATTENTION = "r1_sdpa_decode"


def use_decode_attention(model: Any) -> None:
    """Switch a transformers model that runs SDPA to `_decode_attention` (same numbers)."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) not in ("sdpa", DECODE_ATTENTION):
        return
    ALL_ATTENTION_FUNCTIONS.register(DECODE_ATTENTION, _decode_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(DECODE_ATTENTION, sdpa_mask)
    config._attn_implementation = DECODE_ATTENTION


def cpu_packs_bf16() -> bool:
    """oneDNN packs bf16 weights only on CPUs with AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT; on
    others (AVX2 alone) the packing call raises, and bf16 linears take the plain path."""
    from r1.models import cpu_flags

    flags = cpu_flags()
    return {"avx512bw", "avx512vl", "avx512dq"} <= flags or "avx_ne_convert" in flags


def packed_linear_available(model: Any) -> bool:
    """oneDNN's prepacked bf16 linear (what torch.compile's CPU backend uses) is there."""
    p = next(model.parameters())
    return (p.device.type == "cpu" and p.dtype == torch.bfloat16 and torch.backends.mkldnn.is_available()
            and cpu_packs_bf16()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def pack_linears(model: Any) -> None:
    """Give every nn.Linear a copy of its weight reordered once into oneDNN's blocked layout.

    Plain `F.linear` in bf16 re-lays-out the weight on every call; in a decode step, which
    reads each weight once for a handful of rows, that is a large share of the step
    (identical results at up to `PACKED_MAX_ROWS` rows, the plain weights serve above).
    Re-run after each weight sync; `unpack_linears` drops the copies (the plain weights serve)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module._r1_packed = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), 32)
            if "forward" not in module.__dict__:
                module.forward = _packed_forward.__get__(module)


def unpack_linears(model: Any) -> None:
    for module in model.modules():
        if getattr(module, "_r1_packed", None) is not None:
            module._r1_packed = None


# oneDNN's packed bf16 matmul gives the plain `F.linear`'s numbers bit for bit at a decode
# step's few rows, not at a prefill's hundreds (tests/test_lean_decode.py checks the engine
# against the plain path at SmolLM2's widths): above this many rows the plain weights serve,
# so that the engine samples what the trainer's own forward computes.
PACKED_MAX_ROWS = 256


def _packed_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if self._r1_packed is None or x.numel() > PACKED_MAX_ROWS * x.shape[-1]:
        return torch.nn.functional.linear(x, self.weight, self.bias)
    return torch.ops.mkldnn._linear_pointwise(x, self._r1_packed, self.bias, "none", [], "")
