"""The protocol every rollout engine implements (transformers, vLLM, a remote API, fakes)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from r1.types import Generation, SamplingParams


@runtime_checkable
class RolloutEngine(Protocol):
    def generate(self, prompt_ids: list[list[int]], n: int, params: SamplingParams) -> Generation:
        """Sample `n` completions for each prompt; rows grouped by prompt (row i*n + j).

        Deterministic for a given `params.seed` and weights."""
        ...

    def sync_weights(self, model: Any) -> None:
        """Load the trainer's current weights (called after each optimizer step)."""
        ...
