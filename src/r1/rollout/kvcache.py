"""KV caches for r1's decode loops (the rollout engine and the serving engine): layers that
write into a buffer allocated once, the operations the serving engine's continuous batching
needs on them (stack two batches, drop leading padding), and the keyword that hands a cache
to a transformers model."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer


class PreallocatedLayer(DynamicLayer):
    """A KV-cache layer that writes into a buffer allocated once for the whole rollout
    (prompt + max_new_tokens) instead of re-concatenating the cache at every step; the
    attention reads a view of the filled part. Dropping finished rows copies only that part."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self._k = self._new(key_states.shape[0], key_states)
        self._v = self._new(value_states.shape[0], value_states)
        self.is_initialized = True

    def _new(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        return like.new_empty((batch, like.shape[1], self.capacity, like.shape[3]))

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:  # never in the engine (capacity is exact); kept correct anyway
            self.capacity = max(end, 2 * self.capacity)
            self._k, self._v = self._moved(self._k), self._moved(self._v)
        self._k[:, :, self.length : end] = key_states
        self._v[:, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]
        return self.keys, self.values

    def _moved(self, buf: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        filled = buf[:, :, : self.length] if rows is None else buf[rows, :, : self.length]
        out = self._new(filled.shape[0], filled)
        out[:, :, : self.length] = filled
        return out

    def get_seq_length(self) -> int:
        return self.length

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.length:
            rows = torch.arange(self._k.shape[0], device=self._k.device).repeat_interleave(repeats)
            self.batch_select_indices(rows)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.length:
            self._k, self._v = self._moved(self._k, indices), self._moved(self._v, indices)
            self.keys, self.values = self._k[:, :, : self.length], self._v[:, :, : self.length]


def preallocated_cache(model: Any, capacity: int) -> Any:
    """A DynamicCache whose layers write into preallocated buffers, where every layer attends
    to the whole sequence: full attention, or a sliding window no shorter than `capacity`
    (Mistral's 4,096 for a shorter rollout). Otherwise transformers' own layers."""
    cache = DynamicCache(config=model.config)

    def full(layer: Any) -> bool:
        return type(layer) is DynamicLayer or (
            type(layer) is DynamicSlidingWindowLayer and layer.sliding_window >= capacity)

    if cache.layers and all(full(layer) for layer in cache.layers):
        cache.layers = [PreallocatedLayer(capacity) for _ in cache.layers]
    return cache


def is_preallocated(cache: Any) -> bool:
    """True when every layer of `cache` writes into preallocated buffers (`preallocated_cache`)."""
    return all(isinstance(layer, PreallocatedLayer) for layer in cache.layers)


def with_cache(model: Any, cache: Any) -> dict:
    """The keyword that hands a KV cache to `model`'s forward: `cache` in transformers >= 5.2x
    (`past_key_values` is deprecated there), `past_key_values` before (vLLM's pinned one)."""
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {_cache_keyword(type(target)): cache}


@functools.cache
def _cache_keyword(cls: type) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def pad_left(x: Any, width: int) -> Any:
    """`x` left-padded with zeros to `width` columns."""
    import torch

    if x.shape[-1] == width:
        return x
    pad = x.new_zeros((*x.shape[:-1], width - x.shape[-1]))
    return torch.cat([pad, x], dim=-1)


def stack_layer(old: Any, new: Any, width: int, capacity: int) -> None:
    """Make `old` hold its rows then `new`'s, both left-padded (zeros) to `width` columns,
    in a buffer of `capacity` columns. Zeros, not garbage: a masked position still
    multiplies its (zero) weight by the value, and 0 * NaN would poison the row."""
    for name in ("_k", "_v"):
        a, b = getattr(old, name)[:, :, : old.length], getattr(new, name)[:, :, : new.length]
        buf = a.new_zeros((a.shape[0] + b.shape[0], a.shape[1], capacity, a.shape[3]))
        buf[: a.shape[0], :, width - a.shape[2] : width] = a
        buf[a.shape[0]:, :, width - b.shape[2] : width] = b
        setattr(old, name, buf)
    old.capacity, old.length = capacity, width
    old.keys, old.values = old._k[:, :, :width], old._v[:, :, :width]


def drop_front(layer: Any, start: int) -> None:
    """Drop a preallocated layer's first `start` columns (padding no row needs any more)."""
    for name in ("_k", "_v"):
        buf = getattr(layer, name)
        moved = buf.new_zeros(buf.shape)
        moved[:, :, : layer.length - start] = buf[:, :, start : layer.length]
        setattr(layer, name, moved)
    layer.length -= start
    layer.keys, layer.values = layer._k[:, :, : layer.length], layer._v[:, :, : layer.length]
