"""Text in, answers out: the sampler protocol of `r1 eval`, `r1 generate` and the pipeline.

Two layers, one protocol each:

* `RolloutEngine` (`rollout/base.py`): token ids in, token ids and log-probs out; the
  transformers engine, the colocated and served vLLM engines and the tests' fakes implement it,
  and the trainer samples through it.
* `Sampler` (here): user messages in, `Sample`s (text, reasoning, answer, tokens) out.
  `LocalSampler` puts a prompt format in front of any `RolloutEngine`; `APISampler`
  (`rollout/openai.py`) asks an OpenAI-compatible endpoint, which may be `r1 serve` itself.

`SamplingSettings` are the settings both commands share (their flags, and the base of
`EvalConfig` and `GenerateConfig`); `make_sampler` is the one place a model spec or an
endpoint becomes a sampler.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import Field

from r1.config import AS_GIVEN, EngineSettings, PromptConfig
from r1.data.prompts import PromptFormat
from r1.data.reasoning import split_reasoning
from r1.types import R1_TEMPERATURE, R1_TOP_P, Sample, SamplingParams


@runtime_checkable
class Sampler(Protocol):
    def sample(self, contents: list[str], k: int, params: SamplingParams) -> list[list[Sample]]:
        """`k` samples for each user message, in order; deterministic for `params.seed` where the
        backend allows it."""
        ...

    def user_turn(self, content: str) -> str:
        """The user turn the model is given for `content` (a prompt template filled in)."""
        ...


class SamplingSettings(EngineSettings):
    """How `r1 eval` and `r1 generate` sample: from a local model or an OpenAI-compatible
    endpoint, K per problem, R1's evaluation defaults (T 0.6, top-p 0.95), problems in fixed
    batches of `batch_size` with seed + batch."""

    model: str | None = Field(None, description="a model spec (alias, HF folder, .gguf, hub id), or the "
                              "endpoint's model name with api_base")
    api_base: str | None = Field(None, description="an OpenAI-compatible endpoint instead of a local model")
    api_model: str | None = Field(None, description="the model name the endpoint serves (default: model)")
    prompt: PromptConfig = Field(default_factory=lambda: PromptConfig(**AS_GIVEN),
                                 description="how a problem becomes a prompt")
    stop: list[str] = Field(default_factory=list, description="stop strings besides EOS, kept in the text "
                            "(a training run's own with from_run)")
    samples: int = Field(4, ge=1, description="K: samples per problem (pass@1 is their mean; pass@k, cons@K)")
    limit: int | None = Field(None, ge=1, description="only the first N problems")
    max_new_tokens: int = Field(1024, ge=1, description="new tokens per sample at most")
    temperature: float = Field(R1_TEMPERATURE, ge=0.0, description="sampling temperature (R1's evaluation setting; 0: greedy)")
    top_p: float = Field(R1_TOP_P, gt=0.0, le=1.0, description="nucleus sampling mass (R1's evaluation setting)")
    seed: int = Field(0, description="batch b samples with seed + b, so a resumed run redraws the same")
    batch_size: int = Field(16, ge=1, description="problems per generation call (and per resumable batch)")
    concurrency: int = Field(8, ge=1, description="API: requests in flight at once")
    rate_limit: float | None = Field(None, gt=0.0, description="API: requests per second at most")
    max_retries: int = Field(5, ge=0, description="API: retries of a 429, 5xx or timeout, with exponential backoff")

    def params(self, batch: int) -> SamplingParams:
        """The sampling parameters of resumable batch `batch` (its own seed)."""
        return SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                              stop=tuple(self.stop), seed=self.seed + batch * 1_000_003)


def local_engine(model: str, engine: str = "hf", *, seed: int = 0, gpu_memory_utilization: float = 0.85,
                 kv_cache_gb: float | None = None, enforce_eager: bool = False):
    """(engine, tokenizer) for a model spec: r1's transformers engine, or vLLM."""
    from r1.models import bf16_available, default_device, load_model, resolve_path

    if engine == "vllm":
        from transformers import AutoTokenizer

        from r1.rollout.vllm import VLLMEngine, require_vllm

        require_vllm()  # before the tokenizer load: a missing vLLM is the error to report
        path = resolve_path(model)
        tok = AutoTokenizer.from_pretrained(path)
        return VLLMEngine(path, tok, gpu_memory_utilization=gpu_memory_utilization, sleep=False, seed=seed,
                          kv_cache_gb=kv_cache_gb, enforce_eager=enforce_eager), tok
    from r1.rollout.hf import HFEngine

    device = default_device()
    model_, tok = load_model(model, device=device)
    return HFEngine(model_, tok, bf16=bf16_available(device)), tok


class LocalSampler:
    """A prompt format in front of a rollout engine: renders each message, samples, and gives
    back the whole answer (the forced `<think>` included) split into reasoning and content."""

    def __init__(self, engine: Any, tokenizer: Any, prompt: PromptFormat):
        self.engine, self.tokenizer, self.prompt = engine, tokenizer, prompt

    def user_turn(self, content: str) -> str:
        return self.prompt.user_turn(content)

    def sample(self, contents: list[str], k: int, params: SamplingParams) -> list[list[Sample]]:
        ids = [self.prompt.ids(c, self.tokenizer) for c in contents]
        gen = self.engine.generate(ids, k, params)
        out = []
        for i in range(len(contents)):
            row = []
            for j in range(i * k, (i + 1) * k):
                text = self.prompt.prefill + gen.texts[j]
                reasoning, content = split_reasoning(text)
                row.append(Sample(text=text, reasoning=reasoning, content=content, tokens=len(gen.completion_ids[j]),
                                  episode=gen.episodes[j] if gen.episodes else None))
            out.append(row)
        return out


def make_sampler(cfg: SamplingSettings, *, answer_hint: str = "the final answer", api_key: str | None = None) -> Sampler:
    """The sampler a sampling config asks for (`EvalConfig`, `GenerateConfig`: `model`,
    `api_base`, `api_model`, `prompt`, `stop`, the engine settings): an endpoint when
    `api_base` is set, else the local model with the prompt resolved against its tokenizer;
    with `tools` (`EvalConfig`), every sample a multi-turn episode with them."""
    tools = getattr(cfg, "tools", None)
    if cfg.api_base and tools is not None:
        from r1.errors import R1Error

        raise R1Error("tools run with a local model (--model), not through --api-base: an endpoint's tool calls "
                      "come back to the client, which runs them")
    if cfg.api_base:
        from r1.rollout.openai import APISampler

        return APISampler(cfg.api_base, cfg.api_model or cfg.model or "default", api_key,
                          concurrency=cfg.concurrency, max_retries=cfg.max_retries, rate_limit=cfg.rate_limit)
    engine, tok = local_engine(cfg.model, cfg.engine, seed=cfg.seed, gpu_memory_utilization=cfg.gpu_memory_utilization,
                               kv_cache_gb=cfg.kv_cache_gb, enforce_eager=cfg.enforce_eager)
    from r1.rollout.episodes import with_tools

    return LocalSampler(with_tools(engine, tok, tools), tok,
                        PromptFormat.resolve(cfg.prompt, tok, answer_hint, cfg.stop, tools))
