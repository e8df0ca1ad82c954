"""The typed records that flow through one GRPO step.

Layout convention: a step samples G completions for each of P prompts; sample j of
prompt i sits at row ``i * G + j`` (groups are contiguous), B = P * G rows in all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


# R1's sampling for evaluation and chat (the model card's recommendation): temperature 0.6,
# top-p 0.95. Every default of r1 that samples "as R1 is evaluated" reads these two.
R1_TEMPERATURE = 0.6
R1_TOP_P = 0.95


@dataclass(frozen=True)
class SamplingParams:
    """How the rollout engine samples. temperature 0 means greedy."""

    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ("</answer>",)  # generation ends once one of these is produced
    seed: int = 0
    ignore_eos: bool = False  # always produce max_new_tokens (benchmarks)
    # After a stop string, sample up to this many more tokens so that the model can end with EOS
    # itself (what it writes there is part of the completion; 0: the stop string ends it).
    stop_grace: int = 0
    # Data parallelism: these rows are rows row_offset.. of a step's total_rows (random draws
    # are made for all of them, so the shard samples exactly what one process would).
    row_offset: int = 0
    total_rows: int | None = None


@dataclass
class Generation:
    """What an engine returns for B = len(prompts) * n rows (groups contiguous)."""

    completion_ids: list[list[int]]  # [B][L_b] generated token ids (no padding), stop text included
    logprobs: list[list[float]]  # [B][L_b] log pi_sample(token) under logits / temperature
    finish_reasons: list[str]  # [B] "stop" (EOS or stop string) or "length"
    seconds: float = 0.0  # wall time of the call
    texts: list[str] = field(default_factory=list)  # [B] decoded completions (without prefill)
    # [B][L_b] 1 where the model wrote the token, 0 where it was inserted (a tool's result in a
    # multi-turn episode): the loss and the KL count only the 1s. None: every token is the model's.
    loss_masks: list[list[int]] | None = None
    # [B] per multi-turn episode: turns, tool_calls, tool_errors, calls_per_tool (None: single turns)
    episodes: list[dict] | None = None


@dataclass
class Rollout:
    """One step, from sampling to update: each stage of `GRPOTrainer.step` fills in its part
    (generate: the samples; score: rewards; advantage: advantages and keep; refill: more
    groups; select_rows: rows; ref_logprobs: ref; update: update and stepped)."""

    examples: list[Any]  # [P] task examples, one per prompt
    prompt_ids: list[list[int]]  # [P][Lp] tokenised prompts (prefill included)
    group_size: int  # G
    generation: Generation  # B = P * G completions
    completions: list[str]  # [B] prefill + generated text up to the stop string: what rewards judge
    # [B] True: the sample went on after its stop string instead of ending with EOS (with
    # `stop_grace` > 0); that text is not in `completions`, and the format reward scores 0
    ran_on: list[bool] = field(default_factory=list)
    rewards: dict[str, list[float | None]] = field(default_factory=dict)  # per reward fn: [B], None = unscored
    total_reward: list[float] = field(default_factory=list)  # [B] weighted sum
    scored: list[bool] = field(default_factory=list)  # [B] False: no reward could score it (left out)
    advantages: list[float] = field(default_factory=list)  # [B] per-sequence advantage
    failures: Any = None  # rewards.Failures: samples whose scoring raised or was not finite, per reward
    # [B] in a group that trains: scored, unequal rewards (skip_zero_variance), within the
    # step's number of groups (dynamic sampling)
    keep: list[bool] = field(default_factory=list)
    refill_rounds: int = 0  # dynamic sampling: rounds of extra prompts sampled
    rows: list[int] = field(default_factory=list)  # the rows in the loss: kept, less truncated (mask_truncated)
    ref: dict[int, Any] = field(default_factory=dict)  # row -> the reference model's log-probs [Lc] (beta > 0)
    update: dict[str, float] = field(default_factory=dict)  # the update's statistics (loss, kl, clip_frac...)
    stepped: bool = False  # the optimizer stepped (some row entered the loss)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    step: int = 0  # the step's index (0-based): seeds what the step draws at random besides sampling
    temperature: float | None = None  # what the samples were drawn at (None: the config's rollout.temperature)
    entropy_coef: float = 0.0  # the entropy bonus's coefficient in this step's loss

    @property
    def size(self) -> int:
        return len(self.completions)


@dataclass
class Sample:
    """One sampled answer as a text sampler gives it back (`rollout.sampler.Sampler`)."""

    text: str  # the whole answer: "<think>\n{reasoning}\n</think>\n{content}" when reasoning exists
    reasoning: str  # the chain of thought ("" when there is none)
    content: str  # the answer after the reasoning
    tokens: int  # completion tokens
    episode: dict | None = None  # with tools: the episode's turns, calls and errors (`rollout.episodes.EpisodeStats`)
